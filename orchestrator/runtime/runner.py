"""Run one job: its turns on one thread of a connection actor, under the job's policies.

Every completed step and every decision (turn started, continuation, cancel, approval, retry)
is appended to the job's `steps.jsonl` as it happens; the outcome is a value (`completed`,
`failed`, `cancelled`) written to `result.json` by the scheduler. What to do with a turn after
a lost connection or a restarted daemon (resume it, reconcile it with the server, adopt it,
send it again) is decided by `jobs/recovery.py`; the runner carries the decisions out.
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
    ServerRequest,
    TurnStatus,
    TurnStream,
)
from orchestrator.errors import ConnectionDown, JobFailed
from orchestrator.jobs import recovery
from orchestrator.jobs.model import InactivityAction, JobSpec, JobStatus
from orchestrator.jobs.policy import answer_request, on_inactivity
from orchestrator.jobs.recovery import ServerView, TurnProgress
from orchestrator.protocol import methods
from orchestrator.runtime.actor import ConnectionActor
from orchestrator.store.journal import JobJournal, JobProgress
from orchestrator.store.records import JobRun, StepLog, TurnOutcome, UsageTotals

log = structlog.get_logger("orchestrator.runtime.runner")

STOP_INTERRUPT_TIMEOUT = 10.0
# A thread another app-server process still holds ("already has an active writer") is
# released when that process exits: typically an app-server whose client just died and that
# is shutting down. Wait this long for it, backing off, before failing the turn.
THREAD_BUSY_WAIT = 30.0
THREAD_BUSY_FIRST_DELAY = 0.5
THREAD_BUSY_MAX_DELAY = 5.0


@attrs.define
class JobRunner:
    """Runs one job's turns; created per attempt of the whole job by the scheduler.

    `resume` is where the daemon's journal says the job got to in an earlier life.
    """

    spec: JobSpec
    actor: ConnectionActor
    steps: StepLog
    journal: JobJournal | None = attrs.field(default=None, kw_only=True)
    resume: JobProgress | None = attrs.field(default=None, kw_only=True)
    attempts: int = attrs.field(default=1, init=False)
    continuations: int = attrs.field(default=0, init=False)
    usage: UsageTotals = attrs.field(factory=UsageTotals, init=False)
    turns: list[TurnOutcome] = attrs.field(factory=list, init=False)
    progress: TurnProgress = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        resume = self.resume
        if resume is None:
            self.progress = TurnProgress()
        else:
            self.progress = TurnProgress.recovered(
                thread_id=resume.thread_id,
                pending_turn=resume.pending_turn,
                turn_starting=resume.turn_starting,
                known_turns=frozenset(resume.known_turns),
            )
        self.steps.thread_id = self.progress.thread_id
        self.steps.turn_id = self.progress.turn_id

    @property
    def thread_id(self) -> str | None:
        """The job's thread, once it has one."""
        return self.progress.thread_id

    @property
    def current_turn(self) -> str | None:
        """The turn the job is on (or was last on)."""
        return self.steps.turn_id

    @property
    def _log(self) -> Any:
        """A logger bound to the job (made when something is logged: rarely)."""
        return log.bind(job=self.spec.id, connection=self.actor.name, thread=self.thread_id)

    def event(self, name: str, **fields: Any) -> None:
        """Record a transition in the crash-safe journal (daemon runs only)."""
        if self.journal is not None:
            self.journal.append(name, **fields)

    def run_record(self) -> JobRun:
        """What this run leaves for result.json."""
        return JobRun(
            thread_id=self.thread_id,
            turns=tuple(self.turns),
            attempts=self.attempts,
            continuations=self.continuations,
            usage=self.usage.totals,
        )

    # -- the job -----------------------------------------------------------------------

    async def run(self) -> JobStatus:
        """Run every turn; returns the job's status (completed, failed or cancelled)."""
        if self.spec.max_duration is None:
            return await self._run_turns()
        with trio.move_on_after(self.spec.max_duration):
            return await self._run_turns()
        self.steps.decision("limit", reason=f"max_duration of {self.spec.max_duration} s exceeded")
        self.turns.append(
            TurnOutcome(self.current_turn, TurnStatus.FAILED, None, error="max_duration exceeded")
        )
        return JobStatus.FAILED

    async def _run_turns(self) -> JobStatus:
        try:
            first = self.resume.turns_done if self.resume else 0
            for index in range(first, len(self.spec.turns)):
                if index > first:
                    self.progress = self.progress.next_turn()
                    self.steps.turn_id = None
                outcome = await self._run_turn(self.spec.turns[index], index)
                self.turns.append(outcome)
                if outcome.status is not TurnStatus.COMPLETED:
                    stopped = (TurnStatus.CANCELLED, TurnStatus.INTERRUPTED)
                    return JobStatus.CANCELLED if outcome.status in stopped else JobStatus.FAILED
            return JobStatus.COMPLETED
        finally:
            if self.thread_id is not None:
                self.actor.forget_thread(self.thread_id)

    async def _run_turn(self, prompt: str, index: int) -> TurnOutcome:
        continuations = 0
        while True:
            try:
                client, generation = await self.actor.wait_client()
            except ConnectionDown as exc:
                self.steps.decision("error", error=str(exc))
                raise JobFailed(str(exc)) from None
            stream: TurnStream | None = None
            try:
                stream = await self._open_turn(client, generation, prompt, index)
                async for step in stream:
                    self.steps.step(step)
                result = await stream.result()
                outcome = self._finish_turn(result, continuations)
                self.event(
                    "turn_completed", turn_index=index, turn_id=result.turn_id, status=result.status
                )
                return outcome
            except CodexTurnInactiveError as exc:
                continuation = exc.continuation
                self.progress = self.progress.read_to(continuation.cursor)
                action = on_inactivity(self.spec, continuations)
                self.steps.decision(
                    "inactive",
                    action=action.value,
                    seconds=self.spec.inactivity_timeout,
                    continuations=continuations,
                )
                if action is InactivityAction.CONTINUE:
                    continuations += 1
                    self.continuations += 1
                    self.steps.decision("continuation", number=continuations)
                    self.event("continuation", turn_id=continuation.turn_id)
                    continue
                return await self._stop_turn(client, continuation, action, continuations)
            except CodexTransportError as exc:
                if stream is not None and stream.turn_id is not None:
                    self.progress = self.progress.read_to(stream.continuation.cursor)
                self._retry_or_fail(f"connection lost: {exc.message}")
            except CodexError as exc:
                # The server refused (a JSON-RPC error), a request timed out, or the reader
                # fell too far behind: this turn fails; the job records why.
                self.steps.decision("error", error=str(exc))
                return TurnOutcome(
                    self.current_turn, TurnStatus.FAILED, None, continuations, str(exc)
                )
            except trio.Cancelled:
                # The run is stopping: interrupt the turn (bounded) so the thread is left
                # usable, record what arrived, then let the cancellation go on.
                with trio.CancelScope(shield=True):
                    await self._interrupt_on_stop(client, stream)
                self.turns.append(
                    TurnOutcome(
                        self.current_turn, TurnStatus.CANCELLED, None, continuations, "stopped"
                    )
                )
                raise

    async def _open_turn(
        self, client: CodexClient, generation: int, prompt: str, index: int
    ) -> TurnStream:
        """Carry out `next_action` until the turn is being read: started, or resumed."""
        view: ServerView | None = None
        while True:
            action = recovery.next_action(self.progress, generation=generation, view=view)
            seen, view = view, None
            if isinstance(action, recovery.StartThread):
                await self._start_thread(client, generation)
            elif isinstance(action, recovery.ResumeThread):
                await self._resume_thread(client, generation)
            elif isinstance(action, recovery.Adopt):
                view = ServerView(newest_turn=await self._newest_turn(client))
            elif isinstance(action, recovery.Adopted):
                self.progress = self.progress.adopted(action.turn_id)
                self.steps.turn_id = action.turn_id
                self.steps.decision("turn_adopted", turn_id=action.turn_id)
            elif isinstance(action, recovery.Reconcile):
                view = await self._look_up_turn(client, action.turn_id)
            elif isinstance(action, recovery.Resume):
                if action.reconciled:
                    status = seen.turn_status if seen is not None else None
                    self.steps.decision("turn_reconciled", status=status, turn_id=action.turn_id)
                return await self._resume_turn(client, generation, action.turn_id)
            else:
                if action.lost is not None:
                    status = seen.turn_status if seen is not None else None
                    self.steps.decision("turn_lost", status=status, turn_id=action.lost)
                    self.event("turn_lost", turn_id=action.lost)
                return await self._start_turn(client, generation, prompt, index)

    # -- the actions -------------------------------------------------------------------

    async def _start_thread(self, client: CodexClient, generation: int) -> None:
        thread_id = await client.start_thread(self.spec.thread_options())
        self.progress = self.progress.on_thread(thread_id, generation)
        self.steps.thread_id = thread_id
        self.actor.register_thread(thread_id, self._answer)
        self.event("thread_started", thread_id=thread_id)
        self.steps.decision("thread_started", connection=self.actor.name)

    async def _resume_thread(self, client: CodexClient, generation: int) -> None:
        """`thread/resume` on a new connection (another app-server, or socket, does not know
        our thread yet), waiting (bounded) while another process still holds the thread."""
        thread_id = self.progress.thread_id
        assert thread_id is not None
        params = methods.thread_resume_params(thread_id, self.spec.thread_options())
        waited, delay = 0.0, THREAD_BUSY_FIRST_DELAY
        while True:
            try:
                await client.request(methods.THREAD_RESUME, params)
                break
            except CodexThreadBusyError as exc:
                if waited >= THREAD_BUSY_WAIT:
                    raise CodexThreadBusyError(
                        f"{exc.message}: another app-server process still holds thread "
                        f"{thread_id} after {waited:.0f} s (codex releases a thread when "
                        "the process holding it exits)",
                        code=exc.code,
                        data=exc.data,
                    ) from exc
                if not waited:
                    self.steps.decision("thread_busy", error=str(exc))
                    self._log.warning("thread held by another app-server; waiting", error=str(exc))
                await trio.sleep(delay)
                waited += delay
                delay = min(THREAD_BUSY_MAX_DELAY, delay * 2)
        if waited:
            self.steps.decision("thread_released", waited=round(waited, 3))
        self.progress = self.progress.on_thread(thread_id, generation)
        self.actor.register_thread(thread_id, self._answer)
        self.steps.decision("thread_resumed", connection=self.actor.name, generation=generation)

    async def _newest_turn(self, client: CodexClient) -> str | None:
        """The thread's last turn (for `Adopt`)."""
        assert self.thread_id is not None
        result = await client.request(
            methods.THREAD_READ, methods.thread_read_params(self.thread_id, include_turns=True)
        )
        return methods.newest_turn_id(result)

    async def _look_up_turn(self, client: CodexClient, turn_id: str) -> ServerView:
        """The turn's status on the server, and whether its thread runs (for `Reconcile`)."""
        assert self.thread_id is not None
        turn = await client.read_turn(self.thread_id, turn_id)
        status = TurnStatus.of(turn.get("status")) if turn else None
        active = False
        if status is TurnStatus.IN_PROGRESS:
            result = await client.request(
                methods.THREAD_READ,
                methods.thread_read_params(self.thread_id, include_turns=False),
            )
            active = methods.thread_is_active(result)
        return ServerView(turn_status=status, thread_active=active)

    async def _start_turn(
        self, client: CodexClient, generation: int, prompt: str, index: int
    ) -> TurnStream:
        stream = client.chat(
            prompt, thread_id=self.thread_id, inactivity_timeout=self.spec.inactivity_timeout
        )
        self.event("turn_starting", turn_index=index)
        self.progress = self.progress.starting()
        turn_id = await stream.start()
        self.progress = self.progress.acknowledged(turn_id, generation)
        self.steps.turn_id = turn_id
        self.event("turn_acknowledged", turn_index=index, turn_id=turn_id)
        self.steps.decision("turn_started", prompt=prompt)
        log.debug("turn started", job=self.spec.id, turn=turn_id)
        return stream

    async def _resume_turn(self, client: CodexClient, generation: int, turn_id: str) -> TurnStream:
        assert self.thread_id is not None
        continuation = ChatContinuation(
            thread_id=self.thread_id, turn_id=turn_id, cursor=self.progress.cursor
        )
        stream = client.chat(
            continuation=continuation, inactivity_timeout=self.spec.inactivity_timeout
        )
        await stream.start()
        self.progress = self.progress.confirmed(generation)
        return stream

    def _retry_or_fail(self, reason: str) -> None:
        decision = recovery.on_connection_lost(
            reason, attempts=self.attempts, retries=self.spec.retries
        )
        if isinstance(decision, recovery.Fail):
            self.steps.decision("retry", allowed=False, reason=reason, attempts=self.attempts)
            raise JobFailed(decision.reason)
        self.attempts += 1
        self.steps.decision("retry", allowed=True, reason=reason, attempts=self.attempts)
        self._log.warning("retrying after connection loss", reason=reason)

    async def _interrupt_on_stop(self, client: CodexClient, stream: TurnStream | None) -> None:
        if stream is None or stream.turn_id is None or client.closed:
            self.steps.decision("cancel", reason="stopped")
            return
        self.steps.decision("cancel", reason="stopped", turn_id=stream.turn_id)
        with trio.move_on_after(STOP_INTERRUPT_TIMEOUT):
            try:
                cancelled = await client.cancel(stream.continuation)
            except (CodexProtocolError, CodexTimeoutError, CodexTransportError) as exc:
                self.steps.decision("error", error=f"interrupt on stop failed: {exc}")
                return
            for step in cancelled.steps:
                self.steps.step(step)

    async def _stop_turn(
        self,
        client: CodexClient,
        continuation: ChatContinuation,
        action: InactivityAction,
        continuations: int,
    ) -> TurnOutcome:
        self.steps.decision("cancel", reason=f"inactive ({action.value})")
        try:
            cancelled = await client.cancel(continuation)
        except (CodexProtocolError, CodexTimeoutError) as exc:
            self.steps.decision("error", error=f"cancel failed: {exc}")
            return TurnOutcome(
                continuation.turn_id, TurnStatus.FAILED, None, continuations, str(exc)
            )
        for step in cancelled.steps:
            self.steps.step(step)
        if cancelled.was_completed:
            # It finished just as we gave up on it: take the result.
            return TurnOutcome(continuation.turn_id, TurnStatus.COMPLETED, None, continuations)
        status = TurnStatus.FAILED if action is InactivityAction.FAIL else TurnStatus.CANCELLED
        error = f"no event for {self.spec.inactivity_timeout} s"
        return TurnOutcome(continuation.turn_id, status, None, continuations, error)

    def _finish_turn(self, result: ChatResult, continuations: int) -> TurnOutcome:
        self.usage.add(result.usage)
        self.steps.turn_completed(result)
        return TurnOutcome(
            result.turn_id, result.status, result.final_text, continuations, result.error_message
        )

    async def _answer(self, request: ServerRequest) -> Mapping[str, Any] | None:
        """The job's answer to a server request on its thread, recorded."""
        answer = answer_request(self.spec.approvals, request.method, request.params)
        self.steps.approval(request, decision=answer.decision, subject=answer.subject)
        self._log.info("server request answered", method=request.method, decision=answer.decision)
        await trio.lowlevel.checkpoint()
        return answer.result
