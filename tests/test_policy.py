"""Pure policy decisions: inactivity actions and answers to server requests."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.jobs.model import ApprovalRules, Decision, InactivityAction, JobSpec
from orchestrator.jobs.policy import answer_request, command_segments, decide_command, on_inactivity

ALLOW_GIT = ApprovalRules(
    commands=Decision.DECLINE,
    allow_commands=(("git", "status"), ("ls",)),
    deny_commands=(("git", "push"),),
)


def test_login_shell_wrapper_is_unwrapped_and_split_at_operators() -> None:
    """`bash -lc '...'` is looked into, and each simple command is a segment."""
    assert command_segments("/bin/bash -lc 'ls -a && git status | wc -l; echo \"a && b\"'") == [
        ["ls", "-a"],
        ["git", "status"],
        ["wc", "-l"],
        ["echo", "a && b"],
    ]


@pytest.mark.parametrize(
    ("command", "decision"),
    [
        ("ls -la", Decision.ACCEPT),
        ("/bin/bash -lc 'git status --short'", Decision.ACCEPT),
        ("ls && git status", Decision.ACCEPT),
        ("ls && rm -rf /", Decision.DECLINE),  # every part must be allowed
        ("git push origin main", Decision.DECLINE),
        ("ls $(rm -rf /)", Decision.DECLINE),  # substitution: no allow rule can vouch for it
        ("ls `whoami`", Decision.DECLINE),
        ("", Decision.DECLINE),
    ],
)
def test_command_decisions(command: str, decision: Decision) -> None:
    """Allow prefixes accept, deny prefixes and unknown commands decline, strictest wins."""
    assert decide_command(ALLOW_GIT, command) is decision


def test_deny_wins_even_when_commands_are_accepted() -> None:
    """With `commands = accept`, a denied prefix is still declined."""
    rules = ApprovalRules(commands=Decision.ACCEPT, deny_commands=(("rm",),))
    assert decide_command(rules, "echo hi") is Decision.ACCEPT
    assert decide_command(rules, "echo hi; rm x") is Decision.DECLINE


def test_answers_have_the_shape_of_each_method() -> None:
    """Command, legacy, file-change and user-input requests get answers of their own shape."""
    command = answer_request(ALLOW_GIT, "item/commandExecution/requestApproval", {"command": "ls"})
    assert command.result == {"decision": "accept"} and command.subject == "ls"
    legacy = answer_request(ALLOW_GIT, "execCommandApproval", {"command": ["rm", "-rf", "/"]})
    assert legacy.result == {"decision": "denied"}
    files = answer_request(ALLOW_GIT, "item/fileChange/requestApproval", {"itemId": "f"})
    assert files.result == {"decision": "decline"}
    rules = ApprovalRules(user_input={"q1": "yes"})
    answered = answer_request(rules, "item/tool/requestUserInput", {"questions": [{"id": "q1"}]})
    assert answered.result == {"answers": {"q1": {"answers": ["yes"]}}}
    unanswered = answer_request(rules, "item/tool/requestUserInput", {"questions": [{"id": "q2"}]})
    assert unanswered.result == {"answers": {}} and unanswered.decision == "decline"
    other = answer_request(rules, "item/permissions/requestApproval", {})
    assert other.result is None  # the client's own refusal applies


@pytest.mark.parametrize(
    ("policy", "done", "expected"),
    [
        (InactivityAction.CONTINUE, 0, InactivityAction.CONTINUE),
        (InactivityAction.CONTINUE, 2, InactivityAction.CONTINUE),
        (InactivityAction.CONTINUE, 3, InactivityAction.CANCEL),
        (InactivityAction.CANCEL, 0, InactivityAction.CANCEL),
        (InactivityAction.FAIL, 0, InactivityAction.FAIL),
    ],
)
def test_inactivity_action(policy: InactivityAction, done: int, expected: InactivityAction) -> None:
    """`continue` keeps waiting up to max_continuations, then cancels."""
    spec = JobSpec(id="j", turns=("x",), cwd=Path("."), on_inactivity=policy, max_continuations=3)
    assert on_inactivity(spec, done) is expected
