"""Valid task files load into frozen JobSpecs: defaults merge, paths resolve, rules decide."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.config.readers import Where
from orchestrator.errors import ConfigError
from orchestrator.jobs import (
    ApprovalRules,
    Decision,
    InactivityAction,
    JobSpec,
    find_cycles,
    load_task_file,
    load_task_files,
)
from orchestrator.protocol.values import ThreadOptions
from tests.jobs.conftest import WriteFile


def test_defaults_merge_into_every_job(write: WriteFile, tmp_path: Path) -> None:
    """Each job takes [defaults] for what it does not set, and its own value otherwise."""
    (tmp_path / "work").mkdir()
    name = write(
        "jobs/a.toml",
        """
        [defaults]
        cwd = "../work"
        approval_policy = "never"
        sandbox = "read-only"
        inactivity_timeout = 60
        on_inactivity = "cancel"
        max_continuations = 5
        retries = 0
        max_duration = 3600
        model = "gpt-5"
        connection = "local"

        [[jobs]]
        id = "hello"
        prompt = "Say hello"

        [[jobs]]
        id = "two"
        prompt = "Say two"
        sandbox = "workspace-write"
        inactivity_timeout = 1.5
        retries = 2
        """,
    )
    task_file = load_task_file(name)
    assert task_file.path == Path("jobs/a.toml")
    hello, two = task_file.jobs
    assert hello.id == "hello"
    assert hello.turns == ("Say hello",)
    assert hello.cwd == tmp_path.resolve() / "work"
    assert hello.cwd.is_absolute()
    assert hello.approval_policy == "never"
    assert hello.sandbox == "read-only"
    assert hello.inactivity_timeout == 60.0
    assert hello.on_inactivity is InactivityAction.CANCEL
    assert hello.max_continuations == 5
    assert hello.retries == 0
    assert hello.max_duration == 3600.0
    assert hello.model == "gpt-5"
    assert hello.connection == "local"
    assert hello.source.file == Path("jobs/a.toml")
    assert hello.source.line == 13
    assert two.sandbox == "workspace-write"
    assert two.inactivity_timeout == 1.5
    assert two.retries == 2
    assert two.model == "gpt-5"
    assert two.source.line == 17


def test_builtin_defaults(write: WriteFile, tmp_path: Path) -> None:
    """Without [defaults], a job gets the documented defaults and the file's directory as cwd."""
    (job,) = load_task_files([write("sub/t.toml", '[[jobs]]\nid = "a"\nprompt = "p"\n')])
    assert job.cwd == tmp_path.resolve() / "sub"
    assert job.inactivity_timeout == 120.0
    assert job.on_inactivity is InactivityAction.CONTINUE
    assert job.max_continuations == 3
    assert job.retries == 1
    assert job.max_duration is None
    assert job.model is None and job.sandbox is None and job.approval_policy is None
    assert job.connection is None
    assert job.depends_on == ()
    assert job.approvals == ApprovalRules()
    assert job.approvals.commands is Decision.DECLINE
    assert job.approvals.file_changes is Decision.DECLINE


def test_relative_cwd_is_resolved_against_the_task_file(write: WriteFile, tmp_path: Path) -> None:
    """A relative cwd is relative to the task file's directory, not to the process's CWD."""
    (tmp_path / "deep" / "dir" / "src").mkdir(parents=True)
    name = write("deep/dir/t.toml", '[[jobs]]\nid = "a"\nprompt = "p"\ncwd = "src"\n')
    (job,) = load_task_files([name])
    assert job.cwd == tmp_path.resolve() / "deep" / "dir" / "src"


def test_turns_versus_prompt(write: WriteFile) -> None:
    """`prompt` is one turn; `turns` are several on one thread; a job's choice beats defaults."""
    name = write(
        "t.toml",
        """
        [defaults]
        prompt = "default prompt"

        [[jobs]]
        id = "single"
        prompt = "only one"

        [[jobs]]
        id = "multi"
        turns = ["first", "second", "third"]

        [[jobs]]
        id = "inherits"
        """,
    )
    single, multi, inherits = load_task_files([name])
    assert single.turns == ("only one",)
    assert single.prompt == "only one"
    assert multi.turns == ("first", "second", "third")
    assert inherits.turns == ("default prompt",)


def test_approvals_merge_key_by_key(write: WriteFile) -> None:
    """A job's approvals override [defaults] per key; user_input answers merge per question."""
    name = write(
        "t.toml",
        """
        [defaults.approvals]
        commands = "accept"
        deny_commands = [["rm"]]
        user_input = { a = "1", b = "2" }
        default_answer = "fallback"

        [[jobs]]
        id = "j"
        prompt = "p"

        [jobs.approvals]
        file_changes = "accept"
        allow_commands = [["git", "status"]]
        user_input.b = "B"
        """,
    )
    (job,) = load_task_files([name])
    rules = job.approvals
    assert rules.commands is Decision.ACCEPT
    assert rules.file_changes is Decision.ACCEPT
    assert rules.deny_commands == (("rm",),)
    assert rules.allow_commands == (("git", "status"),)
    assert dict(rules.user_input) == {"a": "1", "b": "B"}
    assert rules.default_answer == "fallback"
    assert hash(job) == hash(job)  # specs stay hashable


def test_decide_command_prefixes() -> None:
    """Deny prefixes decline, allow prefixes accept, deny wins, else `commands` decides."""
    rules = ApprovalRules(
        commands=Decision.DECLINE,
        allow_commands=[["git", "status"], ["ls"], ["git", "push"]],
        deny_commands=[["git", "push", "--force"], ["rm"]],
    )
    assert rules.decide_command(["git", "status", "-s"]) is Decision.ACCEPT
    assert rules.decide_command(["ls"]) is Decision.ACCEPT
    assert rules.decide_command(["git", "push"]) is Decision.ACCEPT
    assert rules.decide_command(["git", "push", "--force", "origin"]) is Decision.DECLINE
    assert rules.decide_command(["git"]) is Decision.DECLINE  # shorter than the prefix
    assert rules.decide_command(["gitk"]) is Decision.DECLINE
    assert rules.decide_command("git status --short") is Decision.ACCEPT
    assert rules.decide_command("rm -rf '/tmp/x") is Decision.DECLINE  # unbalanced quote
    accepting = ApprovalRules(commands=Decision.ACCEPT, deny_commands=[["rm"]])
    assert accepting.decide_command(["rm", "-rf", "/"]) is Decision.DECLINE
    assert accepting.decide_command(["echo"]) is Decision.ACCEPT
    both = ApprovalRules(allow_commands=[["make"]], deny_commands=[["make"]])
    assert both.decide_command(["make", "all"]) is Decision.DECLINE


def test_answer_questions() -> None:
    """Questions are answered by id, else with the default answer, else declined (None)."""
    rules = ApprovalRules(user_input={"q1": "yes"})
    assert rules.answer_questions([{"id": "q1", "question": "?"}]) == {
        "answers": {"q1": {"answers": ["yes"]}}
    }
    assert rules.answer_questions([{"id": "q1"}, {"id": "q2"}]) is None
    assert rules.answer_questions([{"question": "no id"}]) is None
    with_default = ApprovalRules(user_input={"q1": "yes"}, default_answer="no")
    assert with_default.answer_questions([{"id": "q1"}, {"id": "q2"}]) == {
        "answers": {"q1": {"answers": ["yes"]}, "q2": {"answers": ["no"]}}
    }


def test_thread_options(write: WriteFile) -> None:
    """A job's thread options carry its cwd, model, sandbox and approval policy."""
    name = write(
        "t.toml",
        '[[jobs]]\nid = "a"\nprompt = "p"\nmodel = "m"\nsandbox = "workspace-write"\n'
        'approval_policy = "on-request"\n',
    )
    (job,) = load_task_files([name])
    assert job.thread_options() == ThreadOptions(
        cwd=str(job.cwd), model="m", sandbox="workspace-write", approval_policy="on-request"
    )


def test_cross_file_depends_on(write: WriteFile) -> None:
    """depends_on may name a job of another file loaded at the same time."""
    first = write("a.toml", '[[jobs]]\nid = "build"\nprompt = "p"\n')
    second = write(
        "b.toml",
        '[[jobs]]\nid = "test"\nprompt = "p"\ndepends_on = ["build"]\n'
        '[[jobs]]\nid = "ship"\nprompt = "p"\ndepends_on = ["test", "build", "test"]\n',
    )
    jobs = load_task_files([first, second])
    assert [job.id for job in jobs] == ["build", "test", "ship"]
    assert jobs[2].depends_on == ("test", "build")
    assert all(isinstance(job, JobSpec) for job in jobs)
    with pytest.raises(ConfigError, match=r"^b\.toml:4: jobs\[0\]\.depends_on\[0\]: unknown"):
        load_task_files([second])
    (test, _ship) = load_task_file(second, known_ids={"build"}).jobs
    assert test.depends_on == ("build",)


def test_find_cycles_reports_one_cycle_per_component() -> None:
    """Each strongly connected group yields one shortest cycle from its smallest id."""
    graph = {"a": ["b"], "b": ["c"], "c": ["a"], "d": ["e"], "e": ["d"], "f": ["a"]}
    assert find_cycles(graph) == [("a", "b", "c", "a"), ("d", "e", "d")]
    chain = {str(i): [str(i + 1)] for i in range(5000)}
    assert find_cycles(chain) == []


def test_from_mapping_without_a_file(tmp_path: Path) -> None:
    """Specs build from plain mappings too; problems still name the key path."""
    where = Where.detached("<api>").at("jobs", 0)
    job = JobSpec.from_mapping(
        {"id": "x", "turns": ["a", "b"], "retries": 5}, where=where, base_dir=tmp_path
    )
    assert job.turns == ("a", "b") and job.retries == 5 and job.cwd == tmp_path
    assert job.source.key == "jobs[0]"
    with pytest.raises(ConfigError) as caught:
        ApprovalRules.from_mapping({"commands": "yes", "deny_commands": "rm"}, where=where)
    assert caught.value.problems == (
        '<api>:1: jobs[0].commands: must be one of accept, decline, cancel (got "yes")',
        '<api>:1: jobs[0].deny_commands: must be an array of commands (got "rm")',
    )
