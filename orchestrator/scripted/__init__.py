"""A scripted model provider: real `codex app-server` turns with no network and no credentials.

`ScriptedProvider` imitates the OpenAI Responses API on 127.0.0.1, answering each prompt as its
directives say (see `orchestrator.scripted.script`), and `write_codex_home` writes a throwaway
CODEX_HOME that points codex at it. Used by the test suite and the offline demo.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

# Re-exported names are imported `as` themselves (no __all__ to repeat them in).
from orchestrator.scripted.home import SCRIPTED_API_KEY_ENV as SCRIPTED_API_KEY_ENV
from orchestrator.scripted.home import SCRIPTED_APP_SERVER_ARGS as SCRIPTED_APP_SERVER_ARGS
from orchestrator.scripted.home import write_codex_home as write_codex_home
from orchestrator.scripted.script import HttpError as HttpError
from orchestrator.scripted.script import ItemIds as ItemIds
from orchestrator.scripted.script import Message as Message
from orchestrator.scripted.script import Reasoning as Reasoning
from orchestrator.scripted.script import Reply as Reply
from orchestrator.scripted.script import Rule as Rule
from orchestrator.scripted.script import Script as Script
from orchestrator.scripted.script import StreamFailure as StreamFailure
from orchestrator.scripted.script import StreamReply as StreamReply
from orchestrator.scripted.script import ToolCall as ToolCall
from orchestrator.scripted.script import Usage as Usage
from orchestrator.scripted.sse import SseStep as SseStep
from orchestrator.scripted.sse import stream_steps as stream_steps

if TYPE_CHECKING:
    from orchestrator.scripted.provider import ScriptedProvider as ScriptedProvider
    from orchestrator.scripted.provider import main as main
    from orchestrator.scripted.provider import open_scripted_provider as open_scripted_provider

_PROVIDER_NAMES = frozenset({"ScriptedProvider", "main", "open_scripted_provider"})


def __getattr__(name: str) -> Any:
    # The server imports trio; load it only when asked, so that the pure modules of this
    # package (script, sse, home) stay importable without it.
    if name in _PROVIDER_NAMES:
        from orchestrator.scripted import provider

        return getattr(provider, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
