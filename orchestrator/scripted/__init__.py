"""A scripted model provider: real `codex app-server` turns with no network and no credentials.

`ScriptedProvider` imitates the OpenAI Responses API on 127.0.0.1, answering each prompt as its
directives say (see `orchestrator.scripted.script`), and `write_codex_home` writes a throwaway
CODEX_HOME that points codex at it. Used by the test suite and the offline demo.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from orchestrator.scripted.home import (
    SCRIPTED_API_KEY_ENV,
    SCRIPTED_APP_SERVER_ARGS,
    write_codex_home,
)
from orchestrator.scripted.script import (
    HttpError,
    ItemIds,
    Message,
    Reasoning,
    Reply,
    Rule,
    Script,
    StreamFailure,
    StreamReply,
    ToolCall,
    Usage,
)
from orchestrator.scripted.sse import SseStep, stream_steps

if TYPE_CHECKING:
    from orchestrator.scripted.provider import ScriptedProvider, main, open_scripted_provider

_PROVIDER_NAMES = frozenset({"ScriptedProvider", "main", "open_scripted_provider"})


def __getattr__(name: str) -> Any:
    # The server imports trio; load it only when asked, so that the pure modules of this
    # package (script, sse, home) stay importable without it.
    if name in _PROVIDER_NAMES:
        from orchestrator.scripted import provider

        return getattr(provider, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "SCRIPTED_API_KEY_ENV",
    "SCRIPTED_APP_SERVER_ARGS",
    "HttpError",
    "ItemIds",
    "Message",
    "Reasoning",
    "Reply",
    "Rule",
    "Script",
    "ScriptedProvider",
    "SseStep",
    "StreamFailure",
    "StreamReply",
    "ToolCall",
    "Usage",
    "main",
    "open_scripted_provider",
    "stream_steps",
    "write_codex_home",
]
