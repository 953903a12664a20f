"""The scripted provider over a real loopback socket: routes, streams, errors, keep-alive."""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import trio
import trio.testing

from orchestrator.scripted import Script, ScriptedProvider, main, open_scripted_provider
from orchestrator.scripted import provider as provider_module

from .helpers import Connect, HttpClient, body_for, user

PYTHON_MAIN = "import sys; from orchestrator.scripted import main; sys.exit(main(sys.argv[1:]))"


async def test_health_and_unknown_paths(client: HttpClient) -> None:
    """`GET /health` is 200, unknown paths 404, wrong methods 405, all on one connection."""
    health = await client.request("GET", "/health")
    assert (health.status, health.body) == (200, b"ok\n")
    missing = await client.request("GET", "/v1/models")
    assert missing.status == 404
    assert "no such path" in missing.json()["error"]["message"]
    assert (await client.request("GET", "/v1/responses")).status == 405
    assert (await client.request("POST", "/health", b"{}")).status == 405


async def test_echo_streams_sse_and_records_the_request(
    provider: ScriptedProvider, client: HttpClient
) -> None:
    """A POST gets a text/event-stream of the echo reply, and its body is recorded."""
    body = body_for(user("hello world"))
    reply = await client.post_json(body)
    assert reply.status == 200
    assert reply.headers["content-type"] == "text/event-stream"
    assert reply.types()[0] == "response.created"
    assert reply.types()[-1] == "response.completed"
    deltas = reply.of_type("response.output_text.delta")
    assert "".join(d["delta"] for d in deltas) == "ECHO: hello world"
    assert list(provider.requests) == [body]
    assert provider.requests.maxlen == 200


async def test_keep_alive_serves_two_requests_on_one_connection(client: HttpClient) -> None:
    """Two requests in a row on the same connection both get answered."""
    first = await client.post_json(body_for(user("one")))
    second = await client.post_json(body_for(user("two")))
    assert first.of_type("response.output_item.done")[0]["item"]["id"] == "msg_0001"
    done = second.of_type("response.output_item.done")[0]["item"]
    assert (done["id"], done["content"][0]["text"]) == ("msg_0003", "ECHO: two")


async def test_reasoning_reply(client: HttpClient) -> None:
    """`reason:` streams a reasoning summary before the message."""
    reply = await client.post_json(body_for(user("reason: sky")))
    assert reply.types().index("response.reasoning_summary_part.added") < reply.types().index(
        "response.output_text.delta"
    )
    summary = reply.of_type("response.reasoning_summary_text.delta")
    assert "".join(d["delta"] for d in summary) == "Thinking about: sky"


async def test_shell_call_then_follow_up(client: HttpClient) -> None:
    """`shell:` yields a function call; the call with its output yields `SHELL DONE`."""
    first = await client.post_json(body_for(user("shell: echo hi")))
    (call,) = [e["item"] for e in first.of_type("response.output_item.done")]
    assert call["type"] == "function_call"
    assert json.loads(call["arguments"])["cmd"] == "echo hi"
    output = {
        "type": "function_call_output",
        "call_id": call["call_id"],
        "output": "Process exited with code 0\nOutput:\nhi\n",
    }
    call_echo = {k: call[k] for k in ("type", "name", "arguments", "call_id")}
    second = await client.post_json(body_for(user("shell: echo hi"), call_echo, output))
    (message,) = [e["item"] for e in second.of_type("response.output_item.done")]
    assert message["content"][0]["text"] == "SHELL DONE: exit=0 hi"


async def test_slow_reply_is_silent_before_each_chunk(
    autojump_clock: trio.testing.MockClock, client: HttpClient
) -> None:
    """`slow 1.5x3` leaves at least 1.5 s of silence before each of its three deltas."""
    start = trio.current_time()
    reply = await client.post_json(body_for(user("slow 1.5x3: hello there")))
    events = reply.events
    delta_at = [i for i, e in enumerate(events) if e.event == "response.output_text.delta"]
    assert len(delta_at) == 3
    for i in delta_at:
        assert events[i].at - events[i - 1].at >= 1.5
    assert 4.5 <= events[-1].at - start < 5
    text = "".join(e.data["delta"] for e in events if e.event == "response.output_text.delta")
    assert text == "SLOW: hello there"


async def test_stopping_the_provider_cancels_a_slow_reply(
    autojump_clock: trio.testing.MockClock, connect: Connect
) -> None:
    """Leaving `open_scripted_provider` mid-pause ends the stream without waiting it out."""
    start = trio.current_time()
    async with open_scripted_provider() as running:
        client = await connect(running.port)
        # Everything up to the first pause: created, in_progress, item added, part added.
        reply = await client.post_json(body_for(user("slow 100x3: zzz")), stop_after=4)
        assert reply.types()[-1] == "response.content_part.added"
    assert trio.current_time() - start < 1


async def test_a_client_hanging_up_mid_stream_does_not_hurt_the_server(
    autojump_clock: trio.testing.MockClock,
    provider: ScriptedProvider,
    connect: Connect,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A client that disconnects during a slow reply is forgotten quietly."""
    quitter = await connect(provider.port)
    await quitter.post_json(body_for(user("slow 2x3: bye")), stop_after=4)
    await quitter.stream.aclose()
    await trio.sleep(10)  # virtual: the provider's next write hits the closed socket
    fresh = await connect(provider.port)
    assert (await fresh.request("GET", "/health")).status == 200
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_http_error_directive(client: HttpClient) -> None:
    """`error 500: boom` is an HTTP 500 with an OpenAI-shaped JSON error body."""
    reply = await client.post_json(body_for(user("error 500: boom")))
    assert reply.status == 500
    assert reply.headers["content-type"] == "application/json"
    assert reply.json() == {"error": {"message": "boom", "type": "scripted_error"}}
    assert (await client.request("GET", "/health")).status == 200


async def test_fail_directive_sends_response_failed(client: HttpClient) -> None:
    """`fail: msg` starts a 200 stream that ends with `response.failed` and no completion."""
    reply = await client.post_json(body_for(user("fail: meltdown")))
    assert reply.status == 200
    assert reply.types()[-1] == "response.failed"
    assert "response.completed" not in reply.types()
    assert reply.of_type("response.failed")[0]["response"]["error"]["message"] == "meltdown"


async def test_script_rules_from_a_toml_file(tmp_path: Path, connect: Connect) -> None:
    """A provider built with a TOML script answers by its rules."""
    path = tmp_path / "rules.toml"
    path.write_text('[[rules]]\nmatch = "weather"\nreply = "reason: clouds"\n')
    async with open_scripted_provider(Script.from_toml(path)) as running:
        client = await connect(running.port)
        reply = await client.post_json(body_for(user("what's the weather?")))
    done = [e["item"] for e in reply.of_type("response.output_item.done")]
    assert [d["type"] for d in done] == ["reasoning", "message"]
    assert done[1]["content"][0]["text"] == "REASONED: clouds"


async def test_bad_json_gets_400_and_the_connection_stays_usable(
    provider: ScriptedProvider, client: HttpClient
) -> None:
    """A body that is not a JSON object is refused with 400; the next request still works."""
    assert (await client.request("POST", "/v1/responses", b"{not json")).status == 400
    assert (await client.request("POST", "/v1/responses", b"[1, 2]")).status == 400
    assert (await client.post_json(body_for(user("ok")))).status == 200
    assert len(provider.requests) == 1


async def test_garbage_gets_400_and_the_server_keeps_serving(
    provider: ScriptedProvider, connect: Connect
) -> None:
    """Bytes that are not HTTP get a 400 and a closed connection; other clients are unaffected."""
    stream = await trio.open_tcp_stream("127.0.0.1", provider.port)
    async with stream:
        await stream.send_all(b"NOT HTTP AT ALL\r\n\r\n")
        answer = b""
        while chunk := await stream.receive_some(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 400 ")
    client = await connect(provider.port)
    assert (await client.request("GET", "/health")).status == 200


async def test_oversized_body_gets_413(
    monkeypatch: pytest.MonkeyPatch, provider: ScriptedProvider, connect: Connect
) -> None:
    """A body over the size limit is refused with 413 and nothing is recorded."""
    monkeypatch.setattr(provider_module, "MAX_BODY_BYTES", 100)
    client = await connect(provider.port)
    reply = await client.post_json(body_for(user("x" * 200)))
    assert reply.status == 413
    assert not provider.requests


async def test_serve_reports_its_port_and_refuses_other_hosts() -> None:
    """`serve` hands its port to `nursery.start`; only 127.0.0.1 may be bound."""
    provider = ScriptedProvider()
    with pytest.raises(RuntimeError):
        _ = provider.base_url
    async with trio.open_nursery() as nursery:
        port = await nursery.start(provider.serve)
        assert port == provider.port > 0
        assert provider.base_url == f"http://127.0.0.1:{port}/v1"
        nursery.cancel_scope.cancel()
    with pytest.raises(ValueError, match=r"127\.0\.0\.1"):
        await ScriptedProvider().serve(host="0.0.0.0")


def test_main_rejects_a_bad_script(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`main --script` with a broken file exits 2 and says what is wrong."""
    path = tmp_path / "broken.toml"
    path.write_text('[[rules]]\nmatch = "("\nreply = "x"\n')
    assert main(["--script", str(path)]) == 2
    assert "rules[0].match" in capsys.readouterr().err


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
async def test_main_serves_until_signalled(signum: signal.Signals, connect: Connect) -> None:
    """The standalone entry prints its URL, serves, and exits 0 on SIGINT or SIGTERM."""
    proc = await trio.lowlevel.open_process(
        [sys.executable, "-c", PYTHON_MAIN, "--port", "0"], stdout=subprocess.PIPE
    )
    try:
        with trio.fail_after(30):
            assert proc.stdout is not None
            line = b""
            while not line.endswith(b"\n"):
                line += await proc.stdout.receive_some(1024)
            prefix = "scripted provider listening on http://127.0.0.1:"
            text = line.decode().strip()
            assert text.startswith(prefix)
            port = int(text.removeprefix(prefix).removesuffix("/v1"))
            client = await connect(port)
            assert (await client.request("GET", "/health")).status == 200
            proc.send_signal(signum)
            assert await proc.wait() == 0
    finally:
        proc.kill()  # a no-op once it has exited
        with trio.CancelScope(shield=True):
            await proc.wait()
            if proc.stdout is not None:
                await proc.stdout.aclose()
