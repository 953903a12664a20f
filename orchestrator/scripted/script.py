"""Decide what the scripted model answers: a parsed Responses API request in, a reply plan out.

Pure: no trio, no sockets, no clock. `provider.py` owns the I/O and `sse.py` the wire encoding.

codex sends the whole conversation in `input` on every call, with its own developer messages and
an `<environment_context>` user message in front, so the reply is chosen from the text of the
*last* user message not wrapped in one tag like those (the prompt), and from whether `input`
ends with a `function_call_output` (the follow-up call after a tool ran: `SHELL DONE: ...`).

Directives are case-sensitive prefixes of the stripped prompt:

* (none)                      message `ECHO: <prompt>`, streamed in three deltas.
* `reason: <text>`            a reasoning item with summary `Thinking about: <text>`, then the
                              message `REASONED: <text>`.
* `shell: <cmd>`              an `exec_command` function call running <cmd>; the follow-up call
                              is answered `SHELL DONE: exit=<code> <output lines joined by
                              " | ">`, cut at 200 characters (`summarize_tool_output`).
* `escalate: <cmd>`           the same, asking for `sandbox_permissions: require_escalated`
                              (codex asks for approval under approvalPolicy `on-request`).
* `slow <pause>x<count>: <text>`  message `SLOW: <text>` in <count> deltas, each preceded by
                              <pause> seconds of silence (e.g. `slow 1.5x3: hello`).
* `error <status>: <message>` HTTP <status> (200-599) with body
                              `{"error": {"message": <message>, "type": "scripted_error"}}`.
* `fail: <message>`           the stream starts, then a `response.failed` event with <message>.
* `final: <a> | <b>`          two messages: <a> with phase `commentary`, <b> with `final_answer`.
* `tokens <n>: <rest>`        <rest> is answered as above, reporting `output_tokens = n`.
* `think <seconds>: <rest>`   <rest> is answered as above after <seconds> of silence between
                              the response's start and its first output (a model thinking
                              before it writes: no item is open meanwhile).

A `Script` adds rules loaded from TOML (first match wins; no match means the prompt itself is
read for directives)::

    [[rules]]
    match = "deploy"            # regex searched in the prompt
    reply = "shell: echo deployed"
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path

import attrs

__all__ = [
    "HttpError",
    "ItemIds",
    "Message",
    "Reasoning",
    "Reply",
    "Rule",
    "Script",
    "StreamFailure",
    "StreamReply",
    "ToolCall",
    "Usage",
    "last_user_text",
    "summarize_tool_output",
    "trailing_tool_output",
]

SHELL_TOOL = "exec_command"
SHELL_YIELD_TIME_MS = 10_000
SHELL_DONE_LIMIT = 200
DEFAULT_CHUNKS = 3

_SLOW = re.compile(r"slow (\d+(?:\.\d+)?)x(\d+):(.*)", re.DOTALL)
_ERROR = re.compile(r"error ([2-5]\d\d):(.*)", re.DOTALL)
_TOKENS = re.compile(r"tokens (\d+):(.*)", re.DOTALL)
_THINK = re.compile(r"think (\d+(?:\.\d+)?):(.*)", re.DOTALL)
# codex wraps the context it injects as user messages in one XML-ish tag
# (`<environment_context>…</environment_context>`, `<turn_aborted>…`); those are not prompts.
_INJECTED = re.compile(r"<([A-Za-z_][\w-]*)>.*</\1>", re.DOTALL)
_EXIT_CODE = re.compile(r"^Process exited with code (-?\d+)$", re.MULTILINE)
_OUTPUT_MARKER = re.compile(r"^Output:\n", re.MULTILINE)
_RULE_KEYS = frozenset({"match", "reply"})


@attrs.define
class ItemIds:
    """Hands out `msg_0001`, `rs_0002`, `call_0003`…: one counter shared by every prefix."""

    last: int = 0

    def next(self, prefix: str) -> str:
        self.last += 1
        return f"{prefix}_{self.last:04d}"


@attrs.frozen
class Message:
    """An assistant output message; `phase` is the Responses API `phase` field, if any."""

    id: str
    text: str
    phase: str | None = None


@attrs.frozen
class Reasoning:
    """A reasoning output item with one summary part."""

    id: str
    summary: str


@attrs.frozen
class ToolCall:
    """A `function_call` output item; `arguments` is the JSON text the model would produce."""

    id: str
    call_id: str
    name: str
    arguments: str


Output = Message | Reasoning | ToolCall


@attrs.frozen
class Usage:
    """The token counts reported in `response.completed`."""

    input_tokens: int
    output_tokens: int
    cached_tokens: int = 0
    reasoning_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@attrs.frozen
class StreamReply:
    """A successful streamed response.

    Each text (message or reasoning summary) is streamed as `chunks` deltas, and `pause`
    seconds of silence precede every message delta; `think` seconds precede the first output.
    """

    response_id: str
    model: str
    outputs: tuple[Output, ...]
    usage: Usage
    chunks: int = DEFAULT_CHUNKS
    pause: float = 0.0
    think: float = 0.0


@attrs.frozen
class StreamFailure:
    """The stream starts, then ends with `response.failed` carrying `message`."""

    response_id: str
    model: str
    message: str


@attrs.frozen
class HttpError:
    """No stream at all: an HTTP error status with a JSON error body."""

    status: int
    message: str


Reply = StreamReply | StreamFailure | HttpError


@attrs.frozen
class Rule:
    """Answer prompts in which `pattern` is found as if the prompt were `reply`."""

    pattern: re.Pattern[str]
    reply: str


@attrs.frozen
class Script:
    """Rules mapping prompts onto directives, and the planner that applies them."""

    rules: tuple[Rule, ...] = ()

    @classmethod
    def from_toml(cls, path: str | Path) -> Script:
        """Load `[[rules]]` from a TOML file.

        Raises:
            ValueError: the file is not TOML or a rule is malformed; the message names the
                file, the rule index and the key (`script.toml: rules[1].match: ...`).
            OSError: the file cannot be read.
        """
        raw = Path(path).read_bytes()
        try:
            data = tomllib.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ValueError(f"{path}: not a valid TOML file: {exc}") from None
        return cls.from_mapping(data, where=str(path))

    @classmethod
    def from_mapping(cls, data: Mapping[str, object], *, where: str = "<script>") -> Script:
        """Build a script from already-parsed TOML; `where` prefixes every error message."""
        unknown = sorted(set(data) - {"rules"})
        if unknown:
            raise ValueError(f"{where}: {unknown[0]}: unknown key (expected only 'rules')")
        raw_rules = data.get("rules", [])
        if not isinstance(raw_rules, list):
            raise ValueError(f"{where}: rules: must be an array of tables ([[rules]])")
        return cls(
            tuple(_parse_rule(raw, where=f"{where}: rules[{i}]") for i, raw in enumerate(raw_rules))
        )

    def directive_for(self, prompt: str) -> str:
        """The directive prompt that `prompt` is answered as: the first matching rule's reply."""
        for rule in self.rules:
            if rule.pattern.search(prompt):
                return rule.reply
        return prompt

    def plan(self, body: Mapping[str, object], ids: ItemIds) -> Reply:
        """Choose the reply to one `POST /v1/responses` body; ids come from `ids`."""
        model = body.get("model")
        model = model if isinstance(model, str) else "scripted"
        items = body.get("input")
        items = items if isinstance(items, list) else []
        input_tokens = _estimate_input_tokens(items)

        tool_output = trailing_tool_output(items)
        if tool_output is not None:
            text = "SHELL DONE: " + summarize_tool_output(tool_output)
            return _messages(ids, model, input_tokens, [(text, None)])
        prompt = self.directive_for(last_user_text(items))
        return _plan_directive(prompt, ids=ids, model=model, input_tokens=input_tokens)


def _parse_rule(raw: object, *, where: str) -> Rule:
    if not isinstance(raw, Mapping):
        raise ValueError(f"{where}: must be a table with 'match' and 'reply'")
    unknown = sorted(set(raw) - _RULE_KEYS)
    if unknown:
        raise ValueError(f"{where}.{unknown[0]}: unknown key (expected 'match' and 'reply')")
    values: dict[str, str] = {}
    for key in sorted(_RULE_KEYS):
        value = raw.get(key)
        if not isinstance(value, str):
            problem = "missing" if value is None else "must be a string"
            raise ValueError(f"{where}.{key}: {problem}")
        values[key] = value
    try:
        pattern = re.compile(values["match"])
    except re.error as exc:
        raise ValueError(f"{where}.match: invalid regular expression: {exc}") from None
    return Rule(pattern=pattern, reply=values["reply"])


def _plan_directive(prompt: str, *, ids: ItemIds, model: str, input_tokens: int) -> Reply:
    prompt = prompt.strip()
    if m := _THINK.fullmatch(prompt):
        inner = _plan_directive(m[2], ids=ids, model=model, input_tokens=input_tokens)
        return attrs.evolve(inner, think=float(m[1])) if isinstance(inner, StreamReply) else inner
    if m := _TOKENS.fullmatch(prompt):
        inner = _plan_directive(m[2], ids=ids, model=model, input_tokens=input_tokens)
        if isinstance(inner, StreamReply):
            n = int(m[1])
            usage = attrs.evolve(
                inner.usage, output_tokens=n, reasoning_tokens=min(n, inner.usage.reasoning_tokens)
            )
            return attrs.evolve(inner, usage=usage)
        return inner
    if prompt.startswith("reason:"):
        text = prompt.removeprefix("reason:").strip()
        thought = Reasoning(id=ids.next("rs"), summary=f"Thinking about: {text}")
        return _stream(
            ids,
            model,
            input_tokens,
            [thought, Message(id=ids.next("msg"), text=f"REASONED: {text}")],
        )
    for prefix, escalate in (("shell:", False), ("escalate:", True)):
        if prompt.startswith(prefix):
            return _shell_call(
                prompt.removeprefix(prefix).strip(), escalate, ids, model, input_tokens
            )
    if m := _SLOW.fullmatch(prompt):
        pause, count, text = float(m[1]), max(1, int(m[2])), m[3].strip()
        reply = _messages(ids, model, input_tokens, [(f"SLOW: {text}", None)])
        return attrs.evolve(reply, chunks=count, pause=pause)
    if m := _ERROR.fullmatch(prompt):
        return HttpError(status=int(m[1]), message=m[2].strip())
    if prompt.startswith("fail:"):
        message = prompt.removeprefix("fail:").strip()
        return StreamFailure(response_id=ids.next("resp"), model=model, message=message)
    if prompt.startswith("final:"):
        commentary, _, answer = prompt.removeprefix("final:").partition("|")
        pairs = [(commentary.strip(), "commentary"), (answer.strip(), "final_answer")]
        return _messages(ids, model, input_tokens, pairs)
    return _messages(ids, model, input_tokens, [(f"ECHO: {prompt}", None)])


def _shell_call(
    cmd: str, escalate: bool, ids: ItemIds, model: str, input_tokens: int
) -> StreamReply:
    args: dict[str, object] = {"cmd": cmd, "yield_time_ms": SHELL_YIELD_TIME_MS}
    if escalate:
        args["sandbox_permissions"] = "require_escalated"
        args["justification"] = "scripted escalation"
    n = ids.next("call").removeprefix("call_")
    call = ToolCall(id=f"fc_{n}", call_id=f"call_{n}", name=SHELL_TOOL, arguments=json.dumps(args))
    return _stream(ids, model, input_tokens, [call])


def _messages(
    ids: ItemIds, model: str, input_tokens: int, texts: Sequence[tuple[str, str | None]]
) -> StreamReply:
    outputs = [Message(id=ids.next("msg"), text=text, phase=phase) for text, phase in texts]
    return _stream(ids, model, input_tokens, outputs)


def _stream(ids: ItemIds, model: str, input_tokens: int, outputs: Sequence[Output]) -> StreamReply:
    reasoning = sum(_tokens(o.summary) for o in outputs if isinstance(o, Reasoning))
    visible = sum(
        _tokens(o.text) if isinstance(o, Message) else _tokens(o.arguments)
        for o in outputs
        if not isinstance(o, Reasoning)
    )
    usage = Usage(
        input_tokens=input_tokens,
        output_tokens=visible + reasoning,
        reasoning_tokens=reasoning,
    )
    return StreamReply(
        response_id=ids.next("resp"), model=model, outputs=tuple(outputs), usage=usage
    )


def _tokens(text: str) -> int:
    # Roughly four characters a token, like the real tokenizers on English text.
    return max(1, (len(text) + 3) // 4)


def _estimate_input_tokens(items: Sequence[object]) -> int:
    # Plausible and deterministic, not a tokenizer: grows with the conversation.
    return 100 + 10 * len(items)


def summarize_tool_output(output: str) -> str:
    """One line of at most 200 characters saying what a shell call produced.

    codex reports an `exec_command` result as plain text with a header (`Chunk ID`, `Wall
    time`, `Process exited with code N`, `Original token count`) and then `Output:` and the
    output. The chunk id and wall time differ on every run, so the header is reduced to
    `exit=N`, leaving `exit=0 hi | there` for `echo hi; echo there`. Other text (a refusal,
    for example) is kept whole, its lines joined with ` | `.
    """
    marker = _OUTPUT_MARKER.search(output)
    header, body = (output[: marker.start()], output[marker.end() :]) if marker else ("", output)
    exit_code = _EXIT_CODE.search(header)
    text = _one_line(body)
    if exit_code is not None:
        text = f"exit={exit_code[1]} {text}".rstrip()
    return text[:SHELL_DONE_LIMIT]


def _one_line(text: str) -> str:
    return " | ".join(line.strip() for line in text.splitlines() if line.strip())


def _text_of(content: object) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    parts = [
        part["text"]
        for part in content
        if isinstance(part, Mapping) and isinstance(part.get("text"), str)
    ]
    return "\n".join(parts)


def last_user_text(items: Sequence[object]) -> str:
    """The text of the last user message in `input` that codex did not inject itself."""
    for item in reversed(items):
        if not isinstance(item, Mapping) or item.get("role") != "user":
            continue
        if item.get("type", "message") != "message":
            continue
        text = _text_of(item.get("content"))
        if _INJECTED.fullmatch(text.strip()):
            continue
        return text
    return ""


def trailing_tool_output(items: Sequence[object]) -> str | None:
    """The output text when `input` ends with a `function_call_output`, else None.

    codex sends the output either as a plain string or as a list of content parts.
    """
    if not items:
        return None
    last = items[-1]
    if not isinstance(last, Mapping) or last.get("type") != "function_call_output":
        return None
    output = last.get("output")
    if isinstance(output, Mapping):
        output = output.get("content", "")
    return _text_of(output)
