"""The websocket side of the hostile app-server (see `hostile_server`): one JSON text frame per
message, and the ways a websocket connection can end badly."""

from __future__ import annotations

import functools
import json
import os
import signal
import socket
import struct
import urllib.parse
from typing import Any

import trio
import trio_websocket

from tests.faults.hostile_server import GONE, HostileAppServer, Plan


class WebsocketWire:
    """The server's side of one websocket connection."""

    def __init__(self, ws: trio_websocket.WebSocketConnection) -> None:
        self.ws = ws

    async def send(self, text: str) -> None:
        await self.ws.send_message(text)

    async def send_bytes(self, data: bytes) -> None:
        await self.ws.send_message(data)

    async def receive(self) -> str:
        try:
            message = await self.ws.get_message()
        except trio_websocket.ConnectionClosed:
            raise trio.EndOfChannel from None
        return message if isinstance(message, str) else message.decode()

    async def aclose(self) -> None:
        await self.ws.aclose()

    async def die(self, how: str, *args: Any) -> None:
        stream = self.ws._stream  # the TCP stream under the websocket
        if how == "close":
            await self.ws.aclose(code=int(args[0]), reason=args[1] if len(args) > 1 else None)
        elif how == "reset":
            # Linger on, timeout 0: close() sends RST instead of FIN.
            stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            await stream.aclose()
        elif how == "drop":
            await stream.aclose()
        elif how == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        else:
            raise ValueError(f"a websocket cannot die by {how!r}")


async def serve_websocket(plan: Plan) -> None:
    """Serve every connection on 127.0.0.1 (the URL goes to stdout) until stdin closes."""

    async def handler(request: trio_websocket.WebSocketRequest) -> None:
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(request.path).query)
        own_plan = json.loads(query["plan"][0]) if "plan" in query else plan
        ws = await request.accept()
        try:
            await HostileAppServer(WebsocketWire(ws), own_plan).serve()
        except* (*GONE, trio_websocket.ConnectionClosed):
            pass

    async with trio.open_nursery() as nursery:
        server = await nursery.start(
            functools.partial(trio_websocket.serve_websocket, handler, "127.0.0.1", 0, None)
        )
        print(f"ws://127.0.0.1:{server.port}", flush=True)
        # Serve until stdin closes: that is how the test stops us.
        stdin = trio.lowlevel.FdStream(os.dup(0))
        while await stdin.receive_some(1024):
            pass
        nursery.cancel_scope.cancel()
