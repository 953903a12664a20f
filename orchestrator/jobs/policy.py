"""Per-job policy decisions, pure: what to do on inactivity, how to answer a server request.

No I/O and no trio: the runner asks, this module answers, and every answer is recorded.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from typing import Any

import attrs

from orchestrator.jobs.model import ApprovalRules, Decision, InactivityAction, JobSpec
from orchestrator.protocol.server_requests import (
    COMMAND_APPROVAL,
    FILE_CHANGE_APPROVAL,
    LEGACY_EXEC_APPROVAL,
    LEGACY_PATCH_APPROVAL,
    USER_INPUT,
    decision_result,
    decline_result,
)

_SEVERITY = {Decision.ACCEPT: 0, Decision.DECLINE: 1, Decision.CANCEL: 2}
# Shell control operators that separate commands: each part must pass the rules on its own.
_OPERATORS = frozenset({"&&", "||", ";", "|", "&", "|&", ";;", "(", ")", "\n"})
_SUBSTITUTIONS = ("$(", "`", "<(", ">(")
_LOGIN_SHELL = re.compile(r"^(?:/usr)?(?:/bin/)?(?:ba|z|)sh$")


def on_inactivity(spec: JobSpec, continuations_so_far: int) -> InactivityAction:
    """What to do with a turn that went quiet: `continue` until `max_continuations`, then
    cancel; or the job's `cancel`/`fail` at once."""
    if spec.on_inactivity is InactivityAction.CONTINUE:
        if continuations_so_far < spec.max_continuations:
            return InactivityAction.CONTINUE
        return InactivityAction.CANCEL
    return spec.on_inactivity


@attrs.frozen
class Answer:
    """A decision on a server request: the JSON-RPC result and what to record."""

    result: dict[str, Any] | None  # None: let the client send its refusal/error
    decision: str
    subject: str  # what was decided on (a command, a file change, questions)


def command_segments(command: str) -> list[list[str]]:
    """The simple commands of a shell command line, unwrapping `bash -lc '...'`."""
    try:
        lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        words = list(lexer)
    except ValueError:
        words = command.split()
    if len(words) == 3 and _LOGIN_SHELL.match(words[0]) and words[1] in ("-c", "-lc", "-l"):
        return command_segments(words[2])
    segments: list[list[str]] = [[]]
    for word in words:
        if word in _OPERATORS:
            segments.append([])
        else:
            segments[-1].append(word)
    return [segment for segment in segments if segment]


def decide_command(rules: ApprovalRules, command: str) -> Decision:
    """Every simple command must pass; the strictest decision of the parts wins.

    A command with substitutions (`$(...)`, backticks, process substitution) runs code no
    prefix rule can see, so an allow rule cannot accept it: the job's `commands` decides.
    """
    segments = command_segments(command) or [[]]
    decisions = [rules.decide_command(segment) for segment in segments]
    if any(marker in command for marker in _SUBSTITUTIONS):
        decisions.append(rules.commands)
    return max(decisions, key=lambda decision: _SEVERITY[decision])


def answer_request(rules: ApprovalRules, method: str, params: Mapping[str, Any]) -> Answer:
    """How this job answers one server request."""
    if method in (COMMAND_APPROVAL, LEGACY_EXEC_APPROVAL):
        command = _command_text(params)
        decision = decide_command(rules, command)
        return Answer(decision_result(method, decision.value), decision.value, command)
    if method in (FILE_CHANGE_APPROVAL, LEGACY_PATCH_APPROVAL):
        decision = rules.file_changes
        subject = str(params.get("reason") or params.get("itemId") or "file change")
        return Answer(decision_result(method, decision.value), decision.value, subject)
    if method == USER_INPUT:
        questions = params.get("questions")
        answered = rules.answer_questions(questions if isinstance(questions, list) else [])
        subject = (
            ", ".join(str(q.get("id")) for q in questions or [] if isinstance(q, Mapping))
            or "questions"
        )
        if answered is None:
            return Answer(decline_result(method), "decline", subject)
        return Answer(answered, "answer", subject)
    return Answer(None, "decline", method)


def _command_text(params: Mapping[str, Any]) -> str:
    command = params.get("command")
    if isinstance(command, list):
        return shlex.join(str(word) for word in command)
    return str(command or "")
