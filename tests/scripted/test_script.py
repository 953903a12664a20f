"""Reply selection: directives, tool follow-ups, rules and script-file errors (no I/O)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from orchestrator.scripted.script import (
    HttpError,
    ItemIds,
    Message,
    Reasoning,
    Script,
    StreamFailure,
    StreamReply,
    ToolCall,
    last_user_text,
    summarize_tool_output,
)

from .helpers import body_for, user

UNIFIED_EXEC_OUTPUT = (
    "Chunk ID: 48263c\nWall time: 0.0848 seconds\nProcess exited with code 0\n"
    "Original token count: 3\nOutput:\nhi\nthere\n"
)


def plan(prompt: str, script: Script | None = None, ids: ItemIds | None = None) -> Any:
    return (script or Script()).plan(body_for(user(prompt)), ids or ItemIds())


def stream(prompt: str, script: Script | None = None) -> StreamReply:
    reply = plan(prompt, script)
    assert isinstance(reply, StreamReply)
    return reply


def texts(reply: StreamReply) -> list[str]:
    return [o.text for o in reply.outputs if isinstance(o, Message)]


def test_default_echoes_the_last_user_message() -> None:
    """With no directive the reply is `ECHO: <prompt>`, ignoring codex's injected context."""
    reply = stream("  hello world \n")
    assert texts(reply) == ["ECHO: hello world"]
    assert reply.model == "fake-model"
    assert reply.pause == 0.0


def test_the_prompt_is_the_last_real_user_message() -> None:
    """Earlier turns, assistant replies and `<turn_aborted>` notes do not count as the prompt."""
    items = [
        user("first"),
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "x"}]},
        user("second"),
        user("<turn_aborted>\nThe user interrupted the previous turn.\n</turn_aborted>"),
    ]
    assert last_user_text(body_for(*items)["input"]) == "second"
    assert last_user_text([]) == ""
    assert last_user_text([{"role": "user", "content": "plain string"}]) == "plain string"


def test_reason_streams_a_reasoning_item_then_a_message() -> None:
    """`reason: x` gives a summary `Thinking about: x` and the message `REASONED: x`."""
    reply = stream("reason: why is the sky blue")
    thought, message = reply.outputs
    assert isinstance(thought, Reasoning)
    assert thought.summary == "Thinking about: why is the sky blue"
    assert isinstance(message, Message)
    assert message.text == "REASONED: why is the sky blue"
    assert reply.usage.reasoning_tokens > 0


def test_shell_calls_exec_command() -> None:
    """`shell: cmd` answers with an `exec_command` call whose call id matches its item id."""
    (call,) = stream("shell: echo hi").outputs
    assert isinstance(call, ToolCall)
    assert call.name == "exec_command"
    assert call.arguments == '{"cmd": "echo hi", "yield_time_ms": 10000}'
    assert call.call_id.startswith("call_")
    assert call.id == "fc_" + call.call_id.removeprefix("call_")


def test_escalate_asks_for_escalated_permissions() -> None:
    """`escalate: cmd` adds `sandbox_permissions` and a justification to the call."""
    (call,) = stream("escalate: touch x").outputs
    assert isinstance(call, ToolCall)
    assert json.loads(call.arguments) == {
        "cmd": "touch x",
        "yield_time_ms": 10000,
        "sandbox_permissions": "require_escalated",
        "justification": "scripted escalation",
    }


def test_follow_up_after_a_tool_reports_the_output() -> None:
    """When `input` ends with a `function_call_output` the reply is `SHELL DONE: ...`."""
    call = {"type": "function_call", "name": "exec_command", "call_id": "call_0001"}
    output = {"type": "function_call_output", "call_id": "call_0001", "output": UNIFIED_EXEC_OUTPUT}
    reply = Script().plan(body_for(user("shell: echo hi; echo there"), call, output), ItemIds())
    assert isinstance(reply, StreamReply)
    assert texts(reply) == ["SHELL DONE: exit=0 hi | there"]


@pytest.mark.parametrize(
    ("output", "summary"),
    [
        (UNIFIED_EXEC_OUTPUT, "exit=0 hi | there"),
        (UNIFIED_EXEC_OUTPUT.replace("code 0", "code 3").removesuffix("hi\nthere\n"), "exit=3"),
        ("rejected by user", "rejected by user"),
        ("line one\n\n  line two  \n", "line one | line two"),
        ("x" * 500, "x" * 200),
        (
            "Process exited with code 0\nOutput:\nProcess exited with code 9\n",
            "exit=0 Process exited with code 9",
        ),
    ],
)
def test_tool_output_summary(output: str, summary: str) -> None:
    """The summary is one line, at most 200 characters, with the exec header reduced to exit=N."""
    assert summarize_tool_output(output) == summary


def test_tool_output_as_content_parts() -> None:
    """Tool output sent as a list of `input_text` parts is read too."""
    parts = [{"type": "input_text", "text": "a"}, {"type": "input_text", "text": "b"}]
    output = {"type": "function_call_output", "call_id": "c", "output": parts}
    reply = Script().plan(body_for(user("shell: x"), output), ItemIds())
    assert isinstance(reply, StreamReply)
    assert texts(reply) == ["SHELL DONE: a | b"]


def test_slow_sets_chunks_and_pause() -> None:
    """`slow 1.5x3: text` streams `SLOW: text` in 3 chunks after 1.5 s pauses."""
    reply = stream("slow 1.5x3: hello there")
    assert texts(reply) == ["SLOW: hello there"]
    assert (reply.chunks, reply.pause) == (3, 1.5)


def test_error_is_an_http_error() -> None:
    """`error 503: msg` plans an HTTP 503 with that message."""
    assert plan("error 503: overloaded now") == HttpError(status=503, message="overloaded now")


def test_error_with_an_impossible_status_is_echoed() -> None:
    """Statuses outside 200-599 are not directives."""
    assert texts(stream("error 123: x")) == ["ECHO: error 123: x"]


def test_fail_is_a_stream_failure() -> None:
    """`fail: msg` plans a stream that ends in `response.failed`."""
    reply = plan("fail: scripted meltdown")
    assert isinstance(reply, StreamFailure)
    assert reply.message == "scripted meltdown"


def test_final_gives_commentary_then_final_answer() -> None:
    """`final: a | b` gives two messages with phases commentary and final_answer."""
    reply = stream("final: looking around | all done")
    assert [(o.text, o.phase) for o in reply.outputs if isinstance(o, Message)] == [
        ("looking around", "commentary"),
        ("all done", "final_answer"),
    ]


def test_tokens_overrides_output_tokens_of_any_directive() -> None:
    """`tokens N: rest` answers `rest` and reports N output tokens."""
    reply = stream("tokens 1234: reason: count me")
    assert texts(reply) == ["REASONED: count me"]
    assert reply.usage.output_tokens == 1234
    assert reply.usage.total_tokens == reply.usage.input_tokens + 1234


def test_think_delays_any_directive() -> None:
    """`think S: rest` answers `rest` with S seconds of thinking first."""
    reply = stream("think 2.5: shell: ls")
    assert reply.think == 2.5
    assert isinstance(reply.outputs[0], ToolCall)
    assert isinstance(plan("think 1: error 503: busy"), HttpError)


def test_directives_are_case_sensitive_prefixes() -> None:
    """`Shell:` or a directive in the middle of the prompt is plain text."""
    assert texts(stream("Shell: ls")) == ["ECHO: Shell: ls"]
    assert texts(stream("please shell: ls")) == ["ECHO: please shell: ls"]
    assert isinstance(stream("  shell: ls").outputs[0], ToolCall)


def test_usage_is_small_and_consistent() -> None:
    """Usage numbers are positive, and input tokens grow with the conversation."""
    short, longer = stream("hi"), Script().plan(body_for(user("a"), user("hi")), ItemIds())
    assert isinstance(longer, StreamReply)
    assert 0 < short.usage.input_tokens < longer.usage.input_tokens < 1000
    assert short.usage.total_tokens == short.usage.input_tokens + short.usage.output_tokens
    assert short.usage.cached_tokens == 0


def test_ids_share_one_counter() -> None:
    """Ids count up across prefixes: rs_0001, msg_0002, resp_0003, then msg_0004..."""
    ids = ItemIds()
    first = stream_with(ids, "reason: x")
    second = stream_with(ids, "y")
    assert [o.id for o in first.outputs] == ["rs_0001", "msg_0002"]
    assert first.response_id == "resp_0003"
    assert [o.id for o in second.outputs] == ["msg_0004"]


def stream_with(ids: ItemIds, prompt: str) -> StreamReply:
    reply = plan(prompt, ids=ids)
    assert isinstance(reply, StreamReply)
    return reply


def test_rules_map_prompts_onto_directives(tmp_path: Path) -> None:
    """The first rule whose regex is found in the prompt decides; otherwise the prompt does."""
    path = tmp_path / "script.toml"
    path.write_text(
        '[[rules]]\nmatch = "deploy"\nreply = "shell: echo deployed"\n\n'
        '[[rules]]\nmatch = "^dep"\nreply = "never used"\n\n'
        '[[rules]]\nmatch = "(?i)think"\nreply = "reason: hard"\n'
    )
    script = Script.from_toml(path)
    assert len(script.rules) == 3
    (call,) = stream("deploy the app", script).outputs
    assert isinstance(call, ToolCall)
    assert json.loads(call.arguments)["cmd"] == "echo deployed"
    assert texts(stream("THINK about it", script)) == ["REASONED: hard"]
    assert isinstance(plan("fail: not matched", script), StreamFailure)


def test_an_empty_script_file_has_no_rules(tmp_path: Path) -> None:
    """A script file without rules is valid and answers by directives."""
    path = tmp_path / "empty.toml"
    path.write_text("")
    assert Script.from_toml(path) == Script()


@pytest.mark.parametrize(
    ("content", "where"),
    [
        ('[[rules]]\nmatch = "("\nreply = "x"\n', "rules[0].match: invalid regular expression"),
        (
            '[[rules]]\nmatch = "a"\nreply = "x"\n[[rules]]\nmatch = "b"\n',
            "rules[1].reply: missing",
        ),
        ('[[rules]]\nmatch = 3\nreply = "x"\n', "rules[0].match: must be a string"),
        ('[[rules]]\nmatch = "a"\nreply = "x"\nextra = 1\n', "rules[0].extra: unknown key"),
        ('rules = "nope"\n', "rules: must be an array"),
        ("rules = [1]\n", "rules[0]: must be a table"),
        ('other = "x"\n', "other: unknown key"),
        ("[[rules]\n", "not a valid TOML file"),
    ],
)
def test_bad_script_files_name_file_rule_and_key(tmp_path: Path, content: str, where: str) -> None:
    """Every script-file error is a ValueError naming the file, the rule index and the key."""
    path = tmp_path / "bad.toml"
    path.write_text(content)
    with pytest.raises(ValueError, match="bad") as info:
        Script.from_toml(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    assert where in message
