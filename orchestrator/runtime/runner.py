"""Run one job: its turns on one thread of a connection actor, under the job's policies.

Every completed step and every decision (turn started, continuation, cancel, approval, retry)
is appended to the job's `steps.jsonl` as it happens; the outcome is a value (`completed`,
`failed`, `cancelled`) written to `result.json` by the scheduler. When the connection dies, a
turn the server had acknowledged is resumed on the restarted connection (`thread/resume`, then
reconciled with `thread/read`) and only started again when the server lost it; `retries` bounds
how often.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs
import structlog
import trio

from orchestrator.client import (
    ChatContinuation,
    ChatResult,
    CodexClient,
    CodexError,
    CodexProtocolError,
    CodexThreadBusyError,
    CodexTimeoutError,
    CodexTransportError,
    CodexTurnInactiveError,
    ConversationStep,
    ServerRequest,
    TurnStream,
)
from orchestrator.jobs.model import InactivityAction, JobSpec
from orchestrator.jobs.policy import answer_request, on_inactivity
from orchestrator.runtime.actor import ConnectionActor, ConnectionDown
from orchestrator.store.files import JsonlLog, utc_now
from orchestrator.store.journal import JobJournal, JobProgress

log = structlog.get_logger("orchestrator.runtime.runner")

RECORD_VERSION = 1
STOP_INTERRUPT_TIMEOUT = 10.0
# A thread another app-server process still holds ("already has an active writer") is
# released when that process exits: typically an app-server whose client just died and that
# is shutting down. Wait this long for it, backing off, before failing the turn.
THREAD_BUSY_WAIT = 30.0
THREAD_BUSY_FIRST_DELAY = 0.5
THREAD_BUSY_MAX_DELAY = 5.0
USAGE_KEYS = (
    "input_tokens",
    "cached_input_tokens",
    "output_tokens",
    "reasoning_output_tokens",
    "total_tokens",
)


@attrs.define
class TurnOutcome:
    """How one turn ended, as recorded in `result.json`."""

    turn_id: str | None
    status: str  # completed | interrupted | failed | cancelled
    final_text: str | None
    continuations: int = 0
    error: str | None = None

    def as_record(self) -> dict[str, Any]:
        """The `turns[]` entry of result.json."""
        return {
            "turn_id": self.turn_id,
            "status": self.status,
            "final_text": self.final_text,
            "continuations": self.continuations,
            "error": self.error,
        }


class JobFailed(Exception):
    """The job cannot go on (retries exhausted, the server refused): the job fails."""


class JobRunner:
    """Runs one job's turns; created per attempt of the whole job by the scheduler."""

    def __init__(
        self,
        spec: JobSpec,
        actor: ConnectionActor,
        steps: JsonlLog,
        *,
        journal: JobJournal | None = None,
        resume: JobProgress | None = None,
    ) -> None:
        self.spec = spec
        self.actor = actor
        self.steps = steps
        self.journal = journal
        self.resume = resume
        self.thread_id: str | None = resume.thread_id if resume else None
        self.attempts = 1
        self.usage: dict[str, int] = dict.fromkeys(USAGE_KEYS, 0)
        self.turns: list[TurnOutcome] = []
        self.current_turn: str | None = None
        self.continuations = 0
        self._thread_generation: int | None = None
        self._acknowledged_on: int | None = None  # generation that acknowledged the turn
        # Every turn the server acknowledged to this job (in this life or, from the journal,
        # an earlier one): a turn on the thread that is not here was started by a turn/start
        # whose answer we lost.
        self._known_turns: set[str] = set(resume.known_turns) if resume else set()

    @property
    def _log(self) -> Any:
        """A logger bound to the job (made when something is logged: rarely)."""
        return log.bind(job=self.spec.id, connection=self.actor.name, thread=self.thread_id)

    # -- records -----------------------------------------------------------------------

    def event(self, name: str, **fields: Any) -> None:
        """Record a transition in the crash-safe journal (daemon runs only)."""
        if self.journal is not None:
            self.journal.append(name, **fields)

    def record(self, kind: str, turn_id: str | None = None, **fields: Any) -> None:
        """Append one record to the step log."""
        self.steps.append(
            {
                "v": RECORD_VERSION,
                "ts": utc_now(),
                "job_id": self.spec.id,
                "thread_id": self.thread_id,
                "turn_id": turn_id if turn_id is not None else self.current_turn,
                "kind": kind,
                **fields,
            }
        )

    def record_step(self, step: ConversationStep) -> None:
        """Append one completed step."""
        self.steps.append(
            {
                "v": RECORD_VERSION,
                "ts": utc_now(),
                "job_id": self.spec.id,
                "thread_id": step.thread_id,
                "turn_id": step.turn_id,
                "kind": "step",
                "step_type": step.step_type,
                "item_type": step.item_type,
                "item_id": step.item_id,
                "index": step.index,
                "text": step.text,
                "status": step.data.get("status"),
                "exit_code": step.data.get("exitCode"),
            }
        )

    # -- the job -----------------------------------------------------------------------

    async def run(self) -> str:
        """Run every turn; returns the job status (`completed`, `failed` or `cancelled`)."""
        if self.spec.max_duration is None:
            return await self._run_turns()
        with trio.move_on_after(self.spec.max_duration):
            return await self._run_turns()
        self.record("limit", reason=f"max_duration of {self.spec.max_duration} s exceeded")
        self.turns.append(
            TurnOutcome(self.current_turn, "failed", None, error="max_duration exceeded")
        )
        return "failed"

    async def _run_turns(self) -> str:
        try:
            first = self.resume.turns_done if self.resume else 0
            for index in range(first, len(self.spec.turns)):
                outcome = await self._run_turn(self.spec.turns[index], index)
                self.turns.append(outcome)
                if outcome.status != "completed":
                    return (
                        "cancelled" if outcome.status in ("cancelled", "interrupted") else "failed"
                    )
            return "completed"
        finally:
            if self.thread_id is not None:
                self.actor.thread_handlers.pop(self.thread_id, None)

    async def _ensure_thread(self, client: CodexClient, generation: int) -> None:
        if self.thread_id is None:
            self.thread_id = await client.start_thread(self.spec.thread_options())
            self._thread_generation = generation
            self.actor.thread_handlers[self.thread_id] = self._answer
            self.event("thread_started", thread_id=self.thread_id)
            self.record("thread_started", connection=self.actor.name)
        elif self._thread_generation != generation:
            # A new app-server (or socket) does not know our thread yet.
            params = {
                "threadId": self.thread_id,
                "excludeTurns": True,
                **self.spec.thread_options().to_params(),
            }
            params.pop("cwd", None)
            await self._resume_thread(client, params)
            self._thread_generation = generation
            self.actor.thread_handlers[self.thread_id] = self._answer
            self.record("thread_resumed", connection=self.actor.name, generation=generation)

    async def _resume_thread(self, client: CodexClient, params: Mapping[str, Any]) -> None:
        """`thread/resume`, waiting (bounded) while another process still holds the thread."""
        waited, delay = 0.0, THREAD_BUSY_FIRST_DELAY
        while True:
            try:
                await client.request("thread/resume", params)
                if waited:
                    self.record("thread_released", waited=round(waited, 3))
                return
            except CodexThreadBusyError as exc:
                if waited >= THREAD_BUSY_WAIT:
                    raise CodexThreadBusyError(
                        f"{exc.message}: another app-server process still holds thread "
                        f"{self.thread_id} after {waited:.0f} s (codex releases a thread when "
                        "the process holding it exits)",
                        code=exc.code,
                        data=exc.data,
                    ) from exc
                if not waited:
                    self.record("thread_busy", error=str(exc))
                    self._log.warning("thread held by another app-server; waiting", error=str(exc))
                await trio.sleep(delay)
                waited += delay
                delay = min(THREAD_BUSY_MAX_DELAY, delay * 2)

    def _recovered_continuation(self, index: int) -> ChatContinuation | None:
        """The acknowledged turn a restarted daemon must resume rather than re-send."""
        resume = self.resume
        if resume is None or index != resume.turns_done or self.thread_id is None:
            return None
        if resume.pending_turn is not None:
            self.current_turn = resume.pending_turn
            return ChatContinuation(thread_id=self.thread_id, turn_id=resume.pending_turn)
        return None

    async def _adopt_unacknowledged_turn(self, client: CodexClient) -> ChatContinuation | None:
        """turn/start was sent but its acknowledgement never recorded (a crash in between):
        if the thread has a turn we have not seen, it is ours: adopt it, do not re-send."""
        assert self.thread_id is not None
        result = await client.request(
            "thread/read", {"threadId": self.thread_id, "includeTurns": True}
        )
        turns = ((result or {}).get("thread") or {}).get("turns") or []
        if turns and isinstance(turns[-1], dict):
            last = turns[-1].get("id")
            if isinstance(last, str) and last not in self._known_turns:
                self._known_turns.add(last)
                self.record("turn_adopted", turn_id=last)
                self.current_turn = last
                return ChatContinuation(thread_id=self.thread_id, turn_id=last)
        return None

    async def _run_turn(self, prompt: str, index: int = 0) -> TurnOutcome:
        continuation = self._recovered_continuation(index)
        adopt = (
            continuation is None
            and self.resume is not None
            and self.resume.turn_starting
            and index == self.resume.turns_done
        )
        continuations = 0
        if continuation is None:
            self.current_turn = None
        while True:
            try:
                client, generation = await self.actor.wait_client()
            except ConnectionDown as exc:
                self.record("error", error=str(exc))
                raise JobFailed(str(exc)) from None
            stream: TurnStream | None = None
            try:
                await self._ensure_thread(client, generation)
                if adopt:
                    adopt = False
                    continuation = await self._adopt_unacknowledged_turn(client)
                if continuation is not None and generation != self._acknowledged_on:
                    continuation = await self._reconcile_lost_turn(client, continuation)
                if continuation is None:
                    stream = client.chat(
                        prompt,
                        thread_id=self.thread_id,
                        inactivity_timeout=self.spec.inactivity_timeout,
                    )
                    self.event("turn_starting", turn_index=index)
                    self.current_turn = await stream.start()
                    self._known_turns.add(self.current_turn)
                    self._acknowledged_on = generation
                    self.event("turn_acknowledged", turn_index=index, turn_id=self.current_turn)
                    self.record("turn_started", prompt=prompt)
                    log.debug("turn started", job=self.spec.id, turn=self.current_turn)
                else:
                    stream = client.chat(
                        continuation=continuation, inactivity_timeout=self.spec.inactivity_timeout
                    )
                    await stream.start()
                    self._acknowledged_on = generation
                async for step in stream:
                    self.record_step(step)
                result = await stream.result()
                outcome = self._finish_turn(result, continuations)
                self.event(
                    "turn_completed", turn_index=index, turn_id=result.turn_id, status=result.status
                )
                return outcome
            except CodexTurnInactiveError as exc:
                continuation = exc.continuation
                action = on_inactivity(self.spec, continuations)
                self.record(
                    "inactive",
                    action=action.value,
                    seconds=self.spec.inactivity_timeout,
                    continuations=continuations,
                )
                if action is InactivityAction.CONTINUE:
                    continuations += 1
                    self.continuations += 1
                    self.record("continuation", number=continuations)
                    self.event("continuation", turn_id=continuation.turn_id)
                    continue
                return await self._stop_turn(client, continuation, action, continuations)
            except CodexTransportError as exc:
                if stream is not None and stream.turn_id is not None:
                    continuation = stream.continuation
                elif stream is not None and continuation is None:
                    # turn/start went out but its answer did not come back: a server that
                    # survived the drop may be running the turn. Look before sending again.
                    adopt = True
                self._consume_retry(f"connection lost: {exc.message}")
            except CodexError as exc:
                # The server refused (a JSON-RPC error), a request timed out, or the reader
                # fell too far behind: this turn fails; the job records why.
                self.record("error", error=str(exc))
                return TurnOutcome(self.current_turn, "failed", None, continuations, str(exc))
            except trio.Cancelled:
                # The run is stopping: interrupt the turn (bounded) so the thread is left
                # usable, record what arrived, then let the cancellation go on.
                with trio.CancelScope(shield=True):
                    await self._interrupt_on_stop(client, stream)
                self.turns.append(
                    TurnOutcome(self.current_turn, "cancelled", None, continuations, "stopped")
                )
                raise

    async def _interrupt_on_stop(self, client: CodexClient, stream: TurnStream | None) -> None:
        if stream is None or stream.turn_id is None or client.closed:
            self.record("cancel", reason="stopped")
            return
        self.record("cancel", reason="stopped", turn_id=stream.turn_id)
        with trio.move_on_after(STOP_INTERRUPT_TIMEOUT):
            try:
                cancelled = await client.cancel(stream.continuation)
            except (CodexProtocolError, CodexTimeoutError, CodexTransportError) as exc:
                self.record("error", error=f"interrupt on stop failed: {exc}")
                return
            for step in cancelled.steps:
                self.record_step(step)

    def _consume_retry(self, reason: str) -> None:
        if self.attempts > self.spec.retries:
            self.record("retry", allowed=False, reason=reason, attempts=self.attempts)
            raise JobFailed(f"{reason} (after {self.attempts} attempts)")
        self.attempts += 1
        self.record("retry", allowed=True, reason=reason, attempts=self.attempts)
        self._log.warning("retrying after connection loss", reason=reason)

    async def _reconcile_lost_turn(
        self, client: CodexClient, continuation: ChatContinuation
    ) -> ChatContinuation | None:
        """After a reconnection: keep reading a turn the server still has (running or
        completed); return None when the server lost it and the prompt must be sent again."""
        turn = await client.read_turn(continuation.thread_id, continuation.turn_id)
        status = turn.get("status") if turn else None
        if status == "completed" or (
            status == "inProgress" and await self._thread_active(client, continuation.thread_id)
        ):
            self.record("turn_reconciled", status=status, turn_id=continuation.turn_id)
            return continuation
        self.record("turn_lost", status=status, turn_id=continuation.turn_id)
        self.event("turn_lost", turn_id=continuation.turn_id)
        return None

    async def _thread_active(self, client: CodexClient, thread_id: str) -> bool:
        result = await client.request("thread/read", {"threadId": thread_id})
        status = ((result or {}).get("thread") or {}).get("status") or {}
        return isinstance(status, Mapping) and status.get("type") == "active"

    async def _stop_turn(
        self,
        client: CodexClient,
        continuation: ChatContinuation,
        action: InactivityAction,
        continuations: int,
    ) -> TurnOutcome:
        self.record("cancel", reason=f"inactive ({action.value})")
        try:
            cancelled = await client.cancel(continuation)
        except (CodexProtocolError, CodexTimeoutError) as exc:
            self.record("error", error=f"cancel failed: {exc}")
            return TurnOutcome(continuation.turn_id, "failed", None, continuations, str(exc))
        for step in cancelled.steps:
            self.record_step(step)
        if cancelled.was_completed:
            # It finished just as we gave up on it: take the result.
            return TurnOutcome(continuation.turn_id, "completed", None, continuations)
        status = "failed" if action is InactivityAction.FAIL else "cancelled"
        error = f"no event for {self.spec.inactivity_timeout} s"
        return TurnOutcome(continuation.turn_id, status, None, continuations, error)

    def _finish_turn(self, result: ChatResult, continuations: int) -> TurnOutcome:
        if result.usage is not None:
            for key in USAGE_KEYS:
                self.usage[key] += getattr(result.usage, key)
        self.record(
            "turn_completed",
            turn_id=result.turn_id,
            status=result.status,
            final_text=result.final_text,
            error=result.error_message,
        )
        return TurnOutcome(
            result.turn_id, result.status, result.final_text, continuations, result.error_message
        )

    async def _answer(self, request: ServerRequest) -> Mapping[str, Any] | None:
        """The job's answer to a server request on its thread, recorded."""
        answer = answer_request(self.spec.approvals, request.method, request.params)
        self.record(
            "approval",
            turn_id=request.turn_id,
            method=request.method,
            decision=answer.decision,
            subject=answer.subject,
            item_id=request.item_id,
        )
        self._log.info("server request answered", method=request.method, decision=answer.decision)
        await trio.lowlevel.checkpoint()
        return answer.result
