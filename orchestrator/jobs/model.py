"""What a job is: frozen, validated specs built from task-file tables.

`JobSpec.from_mapping` turns one `[[jobs]]` table (plus the file's `[defaults]`) into a spec
or raises one `ConfigError` naming every problem as `file:line: key.path: what is wrong`.
Cross-job checks (unique ids, known dependencies, cycles) belong to `jobs/load.py`. Pure: no
I/O except checking that a `cwd` is an existing directory; never imports trio.
"""

from __future__ import annotations

import enum
import re
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import attrs

from orchestrator._util.frozen import FrozenMap, freeze_str_map
from orchestrator.config.readers import (
    Fields,
    Layer,
    Problems,
    Where,
    check_keys,
    collect,
    describe,
    pick,
    read_str,
    read_str_list,
    read_str_map,
    read_table,
    resolve_dir,
)
from orchestrator.protocol.values import ThreadOptions

JOB_ID_PATTERN = re.compile(r"[A-Za-z0-9._-]+\Z")
JOB_ID_MAX_LENGTH = 128
APPROVAL_POLICIES = ("never", "on-request", "on-failure", "untrusted")
SANDBOXES = ("read-only", "workspace-write", "danger-full-access")
MAX_RETRIES = 100
MAX_CONTINUATIONS = 10_000
DEFAULT_INACTIVITY_TIMEOUT = 120.0
DEFAULT_MAX_CONTINUATIONS = 3
DEFAULT_RETRIES = 1

APPROVAL_KEYS = frozenset(
    {"commands", "file_changes", "allow_commands", "deny_commands", "user_input", "default_answer"}
)
DEFAULTS_KEYS = frozenset(
    {
        "prompt",
        "turns",
        "cwd",
        "approval_policy",
        "sandbox",
        "inactivity_timeout",
        "on_inactivity",
        "max_continuations",
        "retries",
        "max_duration",
        "model",
        "connection",
        "approvals",
    }
)
JOB_KEYS = DEFAULTS_KEYS | {"id", "depends_on"}


class JobStatus(enum.StrEnum):
    """Where a job stands. The last three are final: the job's result is written."""

    ACCEPTED = "accepted"  # the daemon journaled it; not scheduled yet
    PENDING = "pending"  # known to the scheduler, waiting for its dependencies
    WAITING = "waiting"  # ready, waiting for a slot
    RUNNING = "running"  # holds a connection slot
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        """The job ended (completed, failed or cancelled)."""
        return self in _FINISHED


_FINISHED = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED})


class Decision(enum.StrEnum):
    """How to answer an approval request."""

    ACCEPT = "accept"
    DECLINE = "decline"
    CANCEL = "cancel"


class InactivityAction(enum.StrEnum):
    """What to do when a turn has been silent for `inactivity_timeout` seconds."""

    CONTINUE = "continue"  # keep waiting (counts against max_continuations)
    CANCEL = "cancel"  # interrupt the turn; the job ends cancelled
    FAIL = "fail"  # interrupt the turn; the job ends failed


def _argv_prefixes(value: Sequence[Sequence[str]]) -> tuple[tuple[str, ...], ...]:
    return tuple(tuple(prefix) for prefix in value)


@attrs.frozen(kw_only=True)
class SourceLocation:
    """Where a job was defined: the task file as the caller named it, and its `[[jobs]]` line.

    `key` is the job's key path (`jobs[2]`); `origins` has, for each setting given in the file,
    the line and key path it came from (the job's own table, or `[defaults]`).
    """

    file: Path
    line: int
    key: str = ""
    origins: tuple[tuple[str, int, str], ...] = ()

    def locate(self, field: str) -> tuple[int, str]:
        """The line and key path a setting came from (the job's header if not given)."""
        for name, line, key in self.origins:
            if name == field:
                return line, key
        return self.line, f"{self.key}.{field}" if self.key else field

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


@attrs.frozen(kw_only=True)
class ApprovalRules:
    """How a job answers the server's approval requests and questions; pure decisions.

    Commands matching a `deny_commands` prefix are declined; else those matching an
    `allow_commands` prefix are accepted; else `commands` decides. Questions are answered from
    `user_input` by question id, else with `default_answer`, else declined.
    """

    commands: Decision = Decision.DECLINE
    file_changes: Decision = Decision.DECLINE
    allow_commands: tuple[tuple[str, ...], ...] = attrs.field(default=(), converter=_argv_prefixes)
    deny_commands: tuple[tuple[str, ...], ...] = attrs.field(default=(), converter=_argv_prefixes)
    user_input: Mapping[str, str] = attrs.field(factory=FrozenMap, converter=freeze_str_map)
    default_answer: str | None = None

    @classmethod
    def from_mapping(
        cls,
        data: Mapping[str, object],
        *,
        where: Where,
        defaults: Layer | None = None,
    ) -> ApprovalRules:
        """Rules from an `approvals` table, merged key by key over `defaults` (its `approvals`).

        Raises:
            ConfigError: naming every problem found.
        """
        return collect(
            lambda problems: _read_approvals(_layers(defaults, Layer(data, where)), problems)
        )

    def decide_command(self, argv: Sequence[str] | str) -> Decision:
        """The decision for running `argv` (a string is split like a POSIX shell would)."""
        words = _split_command(argv)
        if any(_has_prefix(words, prefix) for prefix in self.deny_commands):
            return Decision.DECLINE
        if any(_has_prefix(words, prefix) for prefix in self.allow_commands):
            return Decision.ACCEPT
        return self.commands

    def answer_questions(self, questions: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
        """The `item/tool/requestUserInput` result answering `questions`, or None to decline.

        Each question (a mapping with an `id`) is answered from `user_input`, else with
        `default_answer`; if any question is left without an answer, the whole request is
        declined (None). The result has the server's shape:
        `{"answers": {question_id: {"answers": [text]}}}`.
        """
        answers: dict[str, Any] = {}
        for question in questions:
            question_id = question.get("id") if isinstance(question, Mapping) else None
            if not isinstance(question_id, str):
                return None
            answer = self.user_input.get(question_id, self.default_answer)
            if answer is None:
                return None
            answers[question_id] = {"answers": [answer]}
        return {"answers": answers}


def _split_command(argv: Sequence[str] | str) -> tuple[str, ...]:
    if not isinstance(argv, str):
        return tuple(argv)
    try:
        return tuple(shlex.split(argv))
    except ValueError:  # unbalanced quotes: still match deny rules on the plain words
        return tuple(argv.split())


def _has_prefix(words: tuple[str, ...], prefix: tuple[str, ...]) -> bool:
    return len(words) >= len(prefix) and words[: len(prefix)] == prefix


@attrs.frozen(kw_only=True)
class JobSpec:
    """One job, validated: turns to run on one thread, where, and under which policies."""

    id: str
    turns: tuple[str, ...]
    cwd: Path
    model: str | None = None
    sandbox: str | None = None  # read-only | workspace-write | danger-full-access
    approval_policy: str | None = None  # never | on-request | on-failure | untrusted
    inactivity_timeout: float = DEFAULT_INACTIVITY_TIMEOUT
    on_inactivity: InactivityAction = InactivityAction.CONTINUE
    max_continuations: int = DEFAULT_MAX_CONTINUATIONS
    retries: int = DEFAULT_RETRIES
    max_duration: float | None = None
    connection: str | None = None
    depends_on: tuple[str, ...] = ()
    approvals: ApprovalRules = ApprovalRules()
    source: SourceLocation = SourceLocation(file=Path("<unknown>"), line=0)

    @classmethod
    def from_mapping(
        cls,
        data: Mapping[str, object],
        *,
        where: Where,
        base_dir: Path,
        defaults: Layer | None = None,
    ) -> JobSpec:
        """A job from its `[[jobs]]` table, over the file's `[defaults]`.

        Args:
            data: the job's table.
            where: its place (`jobs[2]` in some file).
            base_dir: the directory relative `cwd` values are resolved against.
            defaults: the file's `[defaults]` table and its place, if any.

        Raises:
            ConfigError: naming every problem found, each as `file:line: key: what`.
        """
        return collect(
            lambda problems: read_job(
                data, where=where, base_dir=base_dir, defaults=defaults, problems=problems
            )
        )

    def thread_options(self) -> ThreadOptions:
        """The `thread/start` options of this job."""
        return ThreadOptions(
            cwd=str(self.cwd),
            model=self.model,
            sandbox=self.sandbox,
            approval_policy=self.approval_policy,
        )

    @property
    def prompt(self) -> str:
        """The first turn's text."""
        return self.turns[0]


@attrs.frozen(kw_only=True)
class TaskFile:
    """The jobs of one task file, in file order."""

    path: Path
    jobs: tuple[JobSpec, ...]


# --- reading --------------------------------------------------------------------------------


def _layers(*layers: Layer | None) -> tuple[Layer, ...]:
    return tuple(layer for layer in layers if layer is not None)


@attrs.frozen
class _Common:
    """The settings a job shares with `[defaults]`, validated (None: not given or invalid)."""

    turns: tuple[str, ...] | None
    cwd: Path | None
    model: str | None
    sandbox: str | None
    approval_policy: str | None
    inactivity_timeout: float | None
    on_inactivity: InactivityAction | None
    max_continuations: int | None
    retries: int | None
    max_duration: float | None
    connection: str | None
    approvals: ApprovalRules | None
    origins: tuple[tuple[str, int, str], ...]


def check_defaults(
    data: Mapping[str, object], *, where: Where, base_dir: Path, problems: Problems
) -> None:
    """Report everything wrong with a `[defaults]` table, even settings every job overrides."""
    for key in ("id", "depends_on"):
        if key in data:
            problems.add(where.at(key), f"cannot be given in [defaults]; set {key} on each job")
    check_keys(
        {k: v for k, v in data.items() if k not in ("id", "depends_on")},
        DEFAULTS_KEYS,
        where,
        problems,
    )
    _read_common((Layer(data, where),), where, base_dir, problems, require_turns=False)


def read_job(
    data: Mapping[str, object],
    *,
    where: Where,
    base_dir: Path,
    defaults: Layer | None,
    problems: Problems,
) -> JobSpec | None:
    """Like `JobSpec.from_mapping`, but records problems in `problems` and returns None."""
    before = problems.reported
    check_keys(data, JOB_KEYS, where, problems)
    job_id = read_job_id(data, where, problems)
    depends_on = read_depends_on(data, where, problems)
    common = _read_common(
        _layers(defaults, Layer(data, where)), where, base_dir, problems, require_turns=True
    )
    if problems.reported > before or job_id is None or depends_on is None:
        return None
    assert common.turns is not None and common.cwd is not None and common.approvals is not None
    return JobSpec(
        id=job_id,
        turns=common.turns,
        cwd=common.cwd,
        model=common.model,
        sandbox=common.sandbox,
        approval_policy=common.approval_policy,
        inactivity_timeout=_or(common.inactivity_timeout, DEFAULT_INACTIVITY_TIMEOUT),
        on_inactivity=_or(common.on_inactivity, InactivityAction.CONTINUE),
        max_continuations=_or(common.max_continuations, DEFAULT_MAX_CONTINUATIONS),
        retries=_or(common.retries, DEFAULT_RETRIES),
        max_duration=common.max_duration,
        connection=common.connection,
        depends_on=depends_on,
        approvals=common.approvals,
        source=SourceLocation(
            file=Path(where.file), line=where.line, key=where.key, origins=common.origins
        ),
    )


T = TypeVar("T")


def _or(value: T | None, default: T) -> T:
    return default if value is None else value


def read_job_id(data: Mapping[str, object], where: Where, problems: Problems) -> str | None:
    """The job's `id`, checked: present, a safe name, not too long."""
    if "id" not in data:
        problems.add(where.at("id"), "missing: every job needs an id")
        return None
    here = where.at("id")
    value = data["id"]
    if not isinstance(value, str):
        problems.add(here, f"must be a string (got {describe(value)})")
        return None
    if not value:
        problems.add(here, "must not be empty")
    elif value in (".", ".."):
        problems.add(here, f'must not be "." or ".." (got {describe(value)})')
    elif not JOB_ID_PATTERN.match(value):
        problems.add(
            here,
            f"may only contain letters, digits, '.', '_' and '-' (got {describe(value)})",
        )
    elif len(value) > JOB_ID_MAX_LENGTH:
        problems.add(here, f"must be at most {JOB_ID_MAX_LENGTH} characters (got {len(value)})")
    else:
        return value
    return None


def read_depends_on(
    data: Mapping[str, object], where: Where, problems: Problems
) -> tuple[str, ...] | None:
    """The job's `depends_on` ids as written (type-checked only; duplicates dropped)."""
    if "depends_on" not in data:
        return ()
    ids = read_str_list(data["depends_on"], where.at("depends_on"), problems, nonempty=False)
    return None if ids is None else tuple(dict.fromkeys(ids))


def _read_common(
    layers: Sequence[Layer],
    where: Where,
    base_dir: Path,
    problems: Problems,
    *,
    require_turns: bool,
) -> _Common:
    fields = Fields(layers, problems)
    turns = _read_turns(layers, where, problems, require=require_turns)
    if pick("cwd", layers) is None:
        # Not given: the task file's directory (reported, if ever, at the job's header).
        cwd = resolve_dir(".", base_dir, where, problems, must_exist=True)
    else:
        cwd = fields.directory("cwd", base_dir, must_exist=True)
    approval_layers: list[Layer] = []
    for layer in layers:
        if "approvals" in layer.data:
            here = layer.where.at("approvals")
            table = read_table(layer.data["approvals"], here, problems)
            if table is not None:
                approval_layers.append(Layer(table, here))
    return _Common(
        turns=turns,
        cwd=cwd,
        model=fields.text("model"),
        sandbox=fields.choice("sandbox", SANDBOXES),
        approval_policy=fields.choice("approval_policy", APPROVAL_POLICIES),
        inactivity_timeout=fields.seconds("inactivity_timeout"),
        on_inactivity=fields.member("on_inactivity", InactivityAction),
        max_continuations=fields.integer("max_continuations", minimum=0, maximum=MAX_CONTINUATIONS),
        retries=fields.integer("retries", minimum=0, maximum=MAX_RETRIES),
        max_duration=fields.seconds("max_duration"),
        connection=fields.text("connection"),
        approvals=_read_approvals(approval_layers, problems),
        origins=tuple(fields.origins),
    )


def _read_turns(
    layers: Sequence[Layer], where: Where, problems: Problems, *, require: bool
) -> tuple[str, ...] | None:
    """`prompt` or `turns` from the last layer that gives either (a job's own win as a pair)."""
    for layer in reversed(layers):
        has_prompt, has_turns = "prompt" in layer.data, "turns" in layer.data
        if has_prompt and has_turns:
            problems.add(layer.where.at("turns"), "give either prompt or turns, not both")
            return None
        if has_prompt:
            prompt = read_str(layer.data["prompt"], layer.where.at("prompt"), problems)
            return None if prompt is None else (prompt,)
        if has_turns:
            return read_str_list(layer.data["turns"], layer.where.at("turns"), problems)
    if require:
        problems.add(where, "needs a prompt (one turn) or turns (a list of turns)")
    return None


def _read_approvals(layers: Sequence[Layer], problems: Problems) -> ApprovalRules | None:
    before = problems.reported
    fields = Fields(layers, problems)
    fields.check_keys(APPROVAL_KEYS)
    answers: dict[str, str] = {}
    for layer in layers:  # questions merge across layers; the job's answer wins
        if "user_input" in layer.data:
            pairs = read_str_map(layer.data["user_input"], layer.where.at("user_input"), problems)
            answers.update(pairs or ())
    rules = ApprovalRules(
        commands=fields.member("commands", Decision, Decision.DECLINE) or Decision.DECLINE,
        file_changes=fields.member("file_changes", Decision, Decision.DECLINE) or Decision.DECLINE,
        allow_commands=_read_prefixes(fields, "allow_commands"),
        deny_commands=_read_prefixes(fields, "deny_commands"),
        user_input=FrozenMap(sorted(answers.items())),
        default_answer=fields.text("default_answer", empty=True),
    )
    return None if problems.reported > before else rules


def _read_prefixes(fields: Fields, key: str) -> tuple[tuple[str, ...], ...]:
    """An array of argv prefixes, such as `[["git", "status"], ["ls"]]`."""
    found = fields.get(key)
    if found is None:
        return ()
    value, here = found
    if not isinstance(value, list):
        fields.problems.add(here, f"must be an array of commands (got {describe(value)})")
        return ()
    out: list[tuple[str, ...]] = []
    for index, item in enumerate(value):
        if isinstance(item, list):
            argv = read_str_list(item, here.at(index), fields.problems, empty_items=True)
            if argv is not None:
                out.append(argv)
        else:
            fields.problems.add(
                here.at(index),
                f'must be an argv prefix such as ["git", "status"] (got {describe(item)})',
            )
    return tuple(out)
