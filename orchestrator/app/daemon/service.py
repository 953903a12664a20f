"""The daemon service: a long-running scheduler fed by a watched inbox, safe against crashes.

Layout under the config's directories:

    <inbox_dir>/*.toml              task files dropped in (write elsewhere, then rename in)
    <inbox_dir>/accepted/           accepted files, as `<stamp>-<name>.toml`
    <inbox_dir>/rejected/           rejected files, each with `<name>.error` beside it
    <state_dir>/daemon.lock         one daemon per state dir (flock; holds the pid)
    <state_dir>/daemon.json         the running daemon's status snapshot (every second)
    <state_dir>/journal/            one crash-safe journal per job (store/journal.py)
    <state_dir>/control/            requests to the running daemon (`cancel-<job>.request`)

Every transition of a job is journaled (fsync) before the daemon acts on it, so a daemon
restarted after `kill -9` finishes every accepted job exactly once: a turn the server had
acknowledged is resumed and reconciled, never re-sent blindly; a job whose result was written
is never run again. SIGTERM/SIGINT stop intake, give running turns `shutdown_grace` seconds,
then interrupt them and exit 0, leaving them to the next start. The app-servers are children
that exit when the daemon's pipes close, so none outlives it holding a thread's writer lock.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import attrs
import structlog
import trio

from orchestrator.app.daemon.control import cancel_requests, control_dir
from orchestrator.app.daemon.inbox import Inbox
from orchestrator.app.daemon.status import DaemonSnapshot, snapshot_path
from orchestrator.config.model import OrchestratorConfig, load_config
from orchestrator.errors import ConfigError
from orchestrator.jobs.load import load_task_file
from orchestrator.jobs.model import JobStatus
from orchestrator.runtime.actor import ConnectionActor
from orchestrator.runtime.environment import open_actor_env
from orchestrator.runtime.pool import ActorPool
from orchestrator.runtime.scheduler import JobState, Scheduler
from orchestrator.store.files import (
    ensure_dir,
    utc_now,
    write_json_atomic,
)
from orchestrator.store.journal import JobProgress, Journals
from orchestrator.store.layout import ResultsLayout
from orchestrator.store.records import unloadable_result

log = structlog.get_logger("orchestrator.app.daemon")

POLL_INTERVAL = 0.5
STATUS_INTERVAL = 1.0
SUSPEND_TIMEOUT = 20.0  # bound on interrupting running turns at shutdown


# -- the daemon -----------------------------------------------------------------------


class Daemon:
    """One daemon process: actors, scheduler, intake, control, status, signals."""

    def __init__(self, config: OrchestratorConfig, config_path: str | None = None) -> None:
        self.config = config
        self.config_path = config_path
        self._actor_scopes: dict[str, trio.CancelScope] = {}
        self._env: dict[str, str] = {}
        self._nursery: trio.Nursery | None = None
        self.state_dir = ensure_dir(config.state_dir)
        self.journals = Journals(self.state_dir)
        self.layout = ResultsLayout(ensure_dir(config.results_dir))
        self.inbox = Inbox(config.inbox_dir)
        self.control_dir = control_dir(self.state_dir)
        self.started_at = utc_now()
        self.actors: list[ConnectionActor] = []
        self.scheduler: Scheduler | None = None
        self.stopping = False

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until SIGTERM/SIGINT; then shut down gracefully and return."""
        async with open_actor_env(self.config) as env:
            self._env = env
            self.actors = [ConnectionActor(c, extra_env=env) for c in self.config.connections]
            self.scheduler = Scheduler(
                [],
                ActorPool(self.actors),
                self.layout,
                max_concurrent_jobs=self.config.max_concurrent_jobs,
                journals=self.journals,
                on_change=_log_change,
            )
            with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async with trio.open_nursery() as nursery:
                    self._nursery = nursery
                    for actor in self.actors:
                        await nursery.start(self._run_actor, actor)
                    await nursery.start(self.scheduler.serve)
                    nursery.start_soon(self._reload_on_sighup)
                    self.recover()
                    nursery.start_soon(self._intake_loop)
                    nursery.start_soon(self._status_loop)
                    log.info("daemon started", pid=os.getpid(), state_dir=str(self.state_dir))
                    task_status.started()
                    async for signum in signals:
                        log.info("shutting down", signal=signal.Signals(signum).name)
                        with trio.move_on_after(
                            self.config.shutdown_grace + SUSPEND_TIMEOUT
                        ) as bounded:
                            nursery.start_soon(self._second_signal, signals, bounded)
                            await self.shutdown()
                        nursery.cancel_scope.cancel()
                        break
        self._write_status()
        log.info("daemon stopped")

    async def _run_actor(
        self, actor: ConnectionActor, *, task_status: trio.TaskStatus[None]
    ) -> None:
        with trio.CancelScope() as scope:
            self._actor_scopes[actor.name] = scope
            await actor.run(task_status=task_status)

    async def _reload_on_sighup(self) -> None:
        with trio.open_signal_receiver(signal.SIGHUP) as hangups:
            async for _ in hangups:
                await self.reload()

    async def reload(self) -> None:
        """Re-read the config file: start added connections, retire removed or changed ones
        once their running jobs are done. A config that does not load is ignored (logged)."""
        if self.config_path is None:
            log.info("reload: no config file; nothing to reload")
            return
        try:
            new = load_config(self.config_path)
        except ConfigError as exc:
            log.error("reload: config rejected; keeping the running one", problems=exc.problems)
            return
        scheduler, nursery = self.scheduler, self._nursery
        assert scheduler is not None and nursery is not None
        old = {spec.name: spec for spec in self.config.connections}
        fresh = {spec.name: spec for spec in new.connections}
        for name, spec in old.items():
            if fresh.get(name) != spec:
                actor = scheduler.pool.remove(name)
                if actor is not None:
                    self.actors.remove(actor)
                    nursery.start_soon(self._retire, actor)
        for name, spec in fresh.items():
            if old.get(name) != spec:
                actor = ConnectionActor(spec, extra_env=self._env)
                self.actors.append(actor)
                await nursery.start(self._run_actor, actor)
                scheduler.pool.add(actor)
                log.info("reload: connection started", connection=name)
        self.config = attrs.evolve(
            self.config, connections=new.connections, shutdown_grace=new.shutdown_grace
        )
        log.info("reload: done", connections=sorted(fresh))

    async def _retire(self, actor: ConnectionActor) -> None:
        """Stop a removed connection once no job holds one of its threads."""
        with trio.move_on_after(self.config.shutdown_grace + 3600):
            async with actor.all_slots():
                pass
        scope = self._actor_scopes.pop(actor.name, None)
        if scope is not None:
            scope.cancel()
        log.info("reload: connection stopped", connection=actor.name)

    async def _second_signal(self, signals: AsyncIterator[int], bounded: trio.CancelScope) -> None:
        async for _ in signals:
            log.warning("second signal: stopping now")
            bounded.cancel()
            return

    async def shutdown(self) -> None:
        """Stop intake, let running turns finish for `shutdown_grace`, then interrupt them
        and leave their jobs to the next start."""
        scheduler = self.scheduler
        assert scheduler is not None
        self.stopping = True
        scheduler.suspend_waiting()  # not started: picked up again at the next start
        with trio.move_on_after(self.config.shutdown_grace):
            await scheduler.wait_until(lambda: scheduler.running == 0)
        scheduler.suspend()
        with trio.move_on_after(SUSPEND_TIMEOUT):
            await scheduler.wait_until(lambda: scheduler.active_jobs == 0)

    # -- recovery ------------------------------------------------------------------------

    def recover(self) -> None:
        """Submit every accepted job whose result is not written yet, where it stopped."""
        scheduler = self.scheduler
        assert scheduler is not None
        progress = self.journals.all_progress()
        # Files moved into accepted/ whose jobs were not journaled yet (a crash in between).
        for path in sorted(self.inbox.accepted.glob("*.toml")):
            self._accept_file(path, known=progress, only_new=True)
        progress = self.journals.all_progress()
        by_file: dict[str, list[JobProgress]] = {}
        for item in progress.values():
            if not item.finished and item.job_id not in scheduler.states:
                by_file.setdefault(item.task_file or "", []).append(item)
        for task_file, items in by_file.items():
            specs = self._load_accepted(Path(task_file), progress)
            for item in items:
                spec = specs.get(item.job_id)
                if spec is None:
                    self._fail_unloadable(item.job_id, f"task file {task_file} cannot be loaded")
                    continue
                log.info("recovering job", job=item.job_id, progress=item.summary)
                scheduler.submit(spec, item)

    def _load_accepted(self, path: Path, progress: dict[str, JobProgress]) -> dict[str, Any]:
        try:
            task = load_task_file(path, known_ids=set(progress))
        except ConfigError as exc:
            log.error("accepted task file no longer loads", file=str(path), error=str(exc))
            return {}
        return {job.id: job for job in task.jobs}

    def _fail_unloadable(self, job_id: str, error: str) -> None:
        write_json_atomic(self.layout.result_path(job_id), unloadable_result(job_id, error))
        with contextlib.closing(self.journals.open(job_id)) as journal:
            journal.append("result_written", status=JobStatus.FAILED)

    # -- intake --------------------------------------------------------------------------

    async def _intake_loop(self) -> None:
        while not self.stopping:
            for path in self.inbox.waiting():
                if self.stopping:
                    break
                self._take(path)
            self._process_control()
            await trio.sleep(POLL_INTERVAL)

    def _take(self, path: Path) -> None:
        """Validate one dropped file: accept its jobs, or reject it with its errors."""
        try:
            accepted = self.inbox.move_to_accepted(path)
        except OSError as exc:
            log.warning("cannot take task file", file=str(path), error=str(exc))
            return
        self._accept_file(
            accepted, known=self.journals.all_progress(), only_new=False, dropped_as=path.name
        )

    def _accept_file(
        self,
        path: Path,
        *,
        known: dict[str, JobProgress],
        only_new: bool,
        dropped_as: str | None = None,
    ) -> None:
        scheduler = self.scheduler
        assert scheduler is not None
        known_ids = set(known) | set(scheduler.states)
        try:
            task = load_task_file(path, known_ids=known_ids)
            duplicates = [job.id for job in task.jobs if job.id in known_ids]
            if duplicates and not only_new:
                raise ConfigError(
                    "; ".join(
                        f"{path}: job id {job_id!r} was already accepted" for job_id in duplicates
                    ),
                    problems=tuple(
                        f"{path}:{job.source.line}: {job.source.key}.id: {job.id!r} was "
                        "already accepted"
                        for job in task.jobs
                        if job.id in duplicates
                    ),
                )
        except ConfigError as exc:
            rejected = self.inbox.reject(path, exc.problems, name=dropped_as)
            log.warning("task file rejected", file=rejected.name, problems=len(exc.problems))
            return
        for job in task.jobs:
            if only_new and job.id in known_ids:
                continue
            with contextlib.closing(self.journals.open(job.id)) as journal:
                journal.append("accepted", task_file=str(path))
            log.info("job accepted", job=job.id, file=path.name)
            scheduler.submit(job, None)

    def _process_control(self) -> None:
        scheduler = self.scheduler
        assert scheduler is not None
        for job_id, request in cancel_requests(self.control_dir):
            if scheduler.cancel_job(job_id):
                with contextlib.closing(self.journals.open(job_id)) as journal:
                    journal.append("cancel_requested")
                log.info("cancel requested", job=job_id)
            else:
                log.warning("cancel of a job that is not running here", job=job_id)
            request.unlink(missing_ok=True)

    # -- status --------------------------------------------------------------------------

    async def _status_loop(self) -> None:
        while True:
            self._write_status()
            await trio.sleep(STATUS_INTERVAL)

    def _write_status(self) -> None:
        scheduler = self.scheduler
        snapshot = DaemonSnapshot.now(
            started_at=self.started_at,
            stopping=self.stopping,
            actors=self.actors,
            jobs=scheduler.states.items() if scheduler else (),
        )
        write_json_atomic(snapshot_path(self.state_dir), snapshot.as_json())


def _log_change(state: JobState) -> None:
    log.info("job " + state.status, job=state.spec.id, connection=state.connection)
