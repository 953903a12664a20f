"""Invalid task files are rejected before anything runs, each problem as `file:line: key: what`."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from orchestrator.errors import ConfigError
from orchestrator.jobs import load_task_file, load_task_files
from tests.jobs.conftest import WriteFile, assert_problems_start_with

JOB = '[[jobs]]\nid = "ok"\nprompt = "p"\n'

# (case id, {file name: text}, the exact start of every problem, in order)
CASES: list[tuple[str, dict[str, str], list[str]]] = [
    (
        "syntax-error",
        {"t.toml": '[[jobs]]\nid = "a"\nprompt = "unterminated\n'},
        ["t.toml:3: syntax: Illegal character '\\n' (at line 3, column 23)"],
    ),
    (
        "unknown-top-level-key",
        {"t.toml": 'title = "x"\n' + JOB},
        ["t.toml:1: title: unknown key; allowed keys are defaults, jobs"],
    ),
    (
        "unknown-job-key",
        {"t.toml": JOB + 'promt = "typo"\n'},
        ["t.toml:4: jobs[0].promt: unknown key; allowed keys are approval_policy, approvals"],
    ),
    (
        "unknown-defaults-key",
        {"t.toml": "[defaults]\nsandbx = 'read-only'\n" + JOB},
        ["t.toml:2: defaults.sandbx: unknown key; allowed keys are approval_policy,"],
    ),
    (
        "unknown-approvals-key",
        {"t.toml": JOB + 'approvals = { commandz = "accept" }\n'},
        ["t.toml:4: jobs[0].approvals.commandz: unknown key; allowed keys are allow_commands,"],
    ),
    (
        "string-for-integer",
        {"t.toml": JOB + 'retries = "3"\n'},
        ['t.toml:4: jobs[0].retries: must be an integer (got "3")'],
    ),
    (
        "bool-is-not-an-integer",
        {"t.toml": JOB + "max_continuations = true\n"},
        ["t.toml:4: jobs[0].max_continuations: must be an integer (got true)"],
    ),
    (
        "bool-is-not-a-number-of-seconds",
        {"t.toml": JOB + "inactivity_timeout = false\n"},
        ["t.toml:4: jobs[0].inactivity_timeout: must be a number of seconds (got false)"],
    ),
    (
        "bad-approval-decision",
        {
            "t.toml": JOB
            + "\n"
            + JOB.replace('"ok"', '"b"')
            + JOB.replace('"ok"', '"c"')
            + '[jobs.approvals]\ncommands = "maybe"\n'
        },
        [
            "t.toml:12: jobs[2].approvals.commands: must be one of accept, decline, cancel "
            '(got "maybe")'
        ],
    ),
    (
        "bad-enum-values",
        {"t.toml": JOB + 'sandbox = "yolo"\napproval_policy = 3\non_inactivity = "explode"\n'},
        [
            "t.toml:4: jobs[0].sandbox: must be one of read-only, workspace-write, "
            'danger-full-access (got "yolo")',
            "t.toml:5: jobs[0].approval_policy: must be one of never, on-request, on-failure, "
            "untrusted (got 3)",
            "t.toml:6: jobs[0].on_inactivity: must be one of continue, cancel, fail "
            '(got "explode")',
        ],
    ),
    (
        "zero-and-negative",
        {"t.toml": JOB + "inactivity_timeout = 0\nmax_duration = -1.5\nretries = -1\n"},
        [
            "t.toml:4: jobs[0].inactivity_timeout: must be greater than 0 (got 0)",
            "t.toml:5: jobs[0].max_duration: must be greater than 0 (got -1.5)",
            "t.toml:6: jobs[0].retries: must be at least 0 (got -1)",
        ],
    ),
    (
        "huge-values",
        {
            "t.toml": JOB
            + "inactivity_timeout = 1e9\nretries = 101\nmax_continuations = 10001\n"
            + "max_duration = inf\n"
        },
        [
            "t.toml:4: jobs[0].inactivity_timeout: must be at most 604800 seconds",
            "t.toml:5: jobs[0].retries: must be at most 100 (got 101)",
            "t.toml:6: jobs[0].max_continuations: must be at most 10000 (got 10001)",
            "t.toml:7: jobs[0].max_duration: must be a finite number (got inf)",
        ],
    ),
    (
        "missing-id",
        {"t.toml": JOB + '\n[[jobs]]\nprompt = "no id"\n'},
        ["t.toml:5: jobs[1].id: missing: every job needs an id"],
    ),
    (
        "path-traversal-id",
        {"t.toml": '[[jobs]]\nid = "../x"\nprompt = "p"\n'},
        ["t.toml:2: jobs[0].id: may only contain letters, digits, '.', '_' and '-' (got \"../x\")"],
    ),
    (
        "slash-id",
        {"t.toml": '[[jobs]]\nid = "a/b"\nprompt = "p"\n'},
        ["t.toml:2: jobs[0].id: may only contain letters"],
    ),
    (
        "dot-dot-id",
        {"t.toml": '[[jobs]]\nid = ".."\nprompt = "p"\n'},
        ['t.toml:2: jobs[0].id: must not be "." or ".."'],
    ),
    (
        "empty-and-long-and-non-string-ids",
        {
            "t.toml": '[[jobs]]\nid = ""\nprompt = "p"\n'
            f'[[jobs]]\nid = "{"x" * 129}"\nprompt = "p"\n'
            "[[jobs]]\nid = 7\nprompt = 'p'\n"
        },
        [
            "t.toml:2: jobs[0].id: must not be empty",
            "t.toml:5: jobs[1].id: must be at most 128 characters (got 129)",
            "t.toml:8: jobs[2].id: must be a string (got 7)",
        ],
    ),
    (
        "duplicate-ids-across-files",
        {"a.toml": JOB, "b.toml": "# second\n" + JOB},
        ['b.toml:3: jobs[0].id: duplicate id "ok" (first defined at a.toml:2)'],
    ),
    (
        "both-prompt-and-turns",
        {"t.toml": JOB + 'turns = ["a"]\n'},
        ["t.toml:4: jobs[0].turns: give either prompt or turns, not both"],
    ),
    (
        "neither-prompt-nor-turns",
        {"t.toml": '[[jobs]]\nid = "a"\n'},
        ["t.toml:1: jobs[0]: needs a prompt (one turn) or turns"],
    ),
    (
        "empty-turns-and-empty-turn",
        {
            "t.toml": '[[jobs]]\nid = "a"\nturns = []\n'
            '[[jobs]]\nid = "b"\nturns = [\n  "fine",\n  "",\n]\n'
            '[[jobs]]\nid = "c"\nprompt = ""\n'
        },
        [
            "t.toml:3: jobs[0].turns: must not be empty",
            "t.toml:8: jobs[1].turns[1]: must not be empty",
            "t.toml:12: jobs[2].prompt: must not be empty",
        ],
    ),
    (
        "unknown-depends-on",
        {"t.toml": JOB + 'depends_on = ["ok2", "nope"]\n'},
        [
            't.toml:4: jobs[0].depends_on[0]: unknown job id "ok2"',
            't.toml:4: jobs[0].depends_on[1]: unknown job id "nope"',
        ],
    ),
    (
        "depends-on-wrong-type",
        {"t.toml": JOB + 'depends_on = "other"\n'},
        ['t.toml:4: jobs[0].depends_on: must be an array of strings (got "other")'],
    ),
    (
        "dependency-cycle-across-files",
        {
            "a.toml": '[[jobs]]\nid = "a"\nprompt = "p"\ndepends_on = ["b"]\n',
            "b.toml": '[[jobs]]\nid = "b"\nprompt = "p"\ndepends_on = ["c"]\n'
            '[[jobs]]\nid = "c"\nprompt = "p"\ndepends_on = ["a"]\n',
        },
        ["a.toml:4: jobs[0].depends_on: dependency cycle: a -> b -> c -> a"],
    ),
    (
        "self-dependency",
        {"t.toml": JOB + 'depends_on = ["ok"]\n'},
        ['t.toml:4: jobs[0].depends_on[0]: job "ok" cannot depend on itself'],
    ),
    (
        "missing-cwd",
        {"t.toml": "[defaults]\ncwd = 'missing'\n" + JOB},
        ["t.toml:2: defaults.cwd: directory does not exist: "],
    ),
    (
        "cwd-is-a-file",
        {"t.toml": JOB + 'cwd = "t.toml"\n'},
        ["t.toml:4: jobs[0].cwd: is not a directory: "],
    ),
    (
        "no-jobs",
        {"t.toml": "# nothing\n[defaults]\nretries = 2\n"},
        ["t.toml:1: jobs: no jobs in this file: add at least one [[jobs]] table"],
    ),
    (
        "jobs-is-not-an-array-of-tables",
        {"t.toml": "[jobs]\nid = 'x'\n"},
        ["t.toml:1: jobs: must be an array of tables, one [[jobs]] per job (got a table)"],
    ),
    (
        "id-in-defaults",
        {"t.toml": "[defaults]\nid = 'x'\ndepends_on = []\n" + JOB},
        [
            "t.toml:2: defaults.id: cannot be given in [defaults]",
            "t.toml:3: defaults.depends_on: cannot be given in [defaults]",
        ],
    ),
    (
        "bad-allow-commands",
        {
            "t.toml": JOB
            + 'approvals = { allow_commands = [["git"], "ls", [], [1]], user_input = { q = 2 } }\n'
        },
        [
            "t.toml:4: jobs[0].approvals.user_input.q: must be a string (got 2)",
            "t.toml:4: jobs[0].approvals.allow_commands[1]: must be an argv prefix",
            "t.toml:4: jobs[0].approvals.allow_commands[2]: must not be empty",
            "t.toml:4: jobs[0].approvals.allow_commands[3][0]: must be a string (got 1)",
        ],
    ),
    (
        "approvals-not-a-table",
        {"t.toml": "[defaults]\napprovals = 'accept'\n" + JOB},
        ['t.toml:2: defaults.approvals: must be a table (got "accept")'],
    ),
]


@pytest.mark.parametrize(("files", "expected"), [pytest.param(f, e, id=i) for i, f, e in CASES])
@pytest.mark.fault(
    "config",
    "an invalid task file (unknown keys, wrong types, duplicate ids, cycles, path traversal in a "
    "job id ...)",
    "a ConfigError naming file:line: key: what is wrong, before anything runs",
)
def test_invalid_task_files(write: WriteFile, files: dict[str, str], expected: list[str]) -> None:
    """Each kind of mistake is reported with its file, line and key path."""
    names = [write(name, text) for name, text in files.items()]
    with pytest.raises(ConfigError) as caught:
        load_task_files(names)
    assert_problems_start_with(caught.value, expected)
    assert str(caught.value) == "\n".join(caught.value.problems)


def test_at_least_fourteen_kinds() -> None:
    """The table above covers many distinct mistakes."""
    assert len(CASES) >= 14


def test_many_problems_in_many_files_are_reported_at_once(write: WriteFile) -> None:
    """One ConfigError lists every problem of every file, sorted by file then line."""
    first = write(
        "first.toml",
        """
        [defaults]
        retries = -1

        [[jobs]]
        id = "a"
        prompt = "p"
        sandbox = "nope"

        [[jobs]]
        id = "a"
        turns = ["x"]
        depends_on = ["ghost"]
        """,
    )
    second = write("second.toml", 'oops = [\n[[jobs]]\nid = "c"\n')
    third = write("third.toml", '[[jobs]]\nid = "d"\nprompt = "p"\nfrob = 1\n')
    with pytest.raises(ConfigError) as caught:
        load_task_files([first, second, "missing.toml", third])
    heads = [
        problem.split(": ", 2)[0] + ": " + problem.split(": ", 2)[1]
        for problem in caught.value.problems
    ]
    assert heads == [
        "first.toml:2: defaults.retries",
        "first.toml:7: jobs[0].sandbox",
        "first.toml:10: jobs[1].id",
        "first.toml:12: jobs[1].depends_on[0]",
        "second.toml:2: syntax",
        "missing.toml:1: file",
        "third.toml:4: jobs[0].frob",
    ]


@pytest.mark.fault(
    "config",
    "a task file that is not UTF-8",
    "a ConfigError naming the line of the bad byte",
)
def test_not_utf8(write: WriteFile, tmp_path: Path) -> None:
    """A file that is not UTF-8 is named with the line of the bad byte."""
    (tmp_path / "bad.toml").write_bytes(b'[[jobs]]\nid = "a"\nprompt = "caf\xe9"\n')
    with pytest.raises(ConfigError, match=r"^bad\.toml:3: file: is not valid UTF-8 \(byte 0xe9"):
        load_task_file("bad.toml")


@pytest.mark.fault(
    "config",
    "a task file path that does not exist, or is a directory",
    "a ConfigError per path, not an OSError",
)
def test_missing_file_and_directory(write: WriteFile, tmp_path: Path) -> None:
    """A path that does not exist, or is a directory, is reported, not raised as OSError."""
    (tmp_path / "adir").mkdir()
    with pytest.raises(ConfigError) as caught:
        load_task_files(["nope.toml", "adir"])
    assert caught.value.problems == (
        "nope.toml:1: file: does not exist",
        "adir:1: file: is a directory, not a file",
    )


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root can read anything"
)
def test_unreadable_file(write: WriteFile, tmp_path: Path) -> None:
    """A file without read permission is reported as such."""
    name = write("locked.toml", JOB)
    (tmp_path / name).chmod(0)
    try:
        with pytest.raises(ConfigError, match=r"^locked\.toml:1: file: is not readable"):
            load_task_file(name)
    finally:
        (tmp_path / name).chmod(0o644)


def test_syntax_error_at_end_of_document(write: WriteFile) -> None:
    """A syntax error at the very end still names a line (the last one)."""
    name = write("t.toml", JOB + "x =")
    with pytest.raises(
        ConfigError, match=r"^t\.toml:4: syntax: Invalid value \(at end of document\)"
    ):
        load_task_file(name)


def test_the_file_is_named_as_given(write: WriteFile, tmp_path: Path) -> None:
    """Messages use the caller's spelling of the path (relative stays relative)."""
    write("sub/t.toml", '[[jobs]]\nid = "a/b"\nprompt = "p"\n')
    with pytest.raises(ConfigError, match=r"^sub/\.\./sub/t\.toml:2: jobs\[0\]\.id"):
        load_task_file("sub/../sub/t.toml")
    absolute = str(tmp_path / "sub" / "t.toml")
    with pytest.raises(ConfigError) as caught:
        load_task_file(Path(absolute))
    assert caught.value.problems[0].startswith(f"{absolute}:2: ")


@pytest.mark.fault(
    "config",
    "an integer literal of 5,000 digits",
    "a ConfigError, not tomllib's ValueError",
)
def test_huge_integer_literal_is_a_config_error(write: WriteFile) -> None:
    """tomllib's ValueError on 4300+ digit integers becomes a ConfigError."""
    name = write("t.toml", JOB + "retries = " + "9" * 5000 + "\n")
    with pytest.raises(ConfigError, match=r"^t\.toml:1: syntax: invalid value"):
        load_task_file(name)


@pytest.mark.fault(
    "config",
    "arrays nested 5,000 deep",
    "a ConfigError, not a RecursionError",
)
def test_deep_nesting_is_a_config_error(write: WriteFile) -> None:
    """Nesting deep enough to exhaust recursion becomes a ConfigError."""
    name = write("t.toml", JOB + "x = " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(ConfigError, match=r"^t\.toml:1: syntax: values are nested too deeply"):
        load_task_file(name)


def test_defaults_problem_is_reported_once(write: WriteFile) -> None:
    """A bad [defaults] value used by many jobs is one problem, at its own line."""
    body = "[defaults]\ninactivity_timeout = 'soon'\n" + "".join(
        f'[[jobs]]\nid = "j{i}"\nprompt = "p"\n' for i in range(5)
    )
    name = write("t.toml", body)
    with pytest.raises(ConfigError) as caught:
        load_task_file(name)
    assert caught.value.problems == (
        't.toml:2: defaults.inactivity_timeout: must be a number of seconds (got "soon")',
    )


def test_dedent_helper_keeps_lines(write: WriteFile, tmp_path: Path) -> None:
    """The test helper writes the text it is given, first line first."""
    name = write("t.toml", textwrap.dedent("\n    a = 1\n"))
    assert (tmp_path / name).read_text() == "a = 1\n"
