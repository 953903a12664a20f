"""The daemon: a long-running scheduler fed by a watched inbox, safe against crashes.

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
import errno
import fcntl
import json
import os
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import attrs
import structlog
import trio

from orchestrator.app.batch import open_actor_env
from orchestrator.config.model import OrchestratorConfig, load_config
from orchestrator.errors import ConfigError
from orchestrator.jobs.load import load_task_file
from orchestrator.runtime.actor import ConnectionActor
from orchestrator.runtime.scheduler import ActorPool, JobState, Scheduler
from orchestrator.store.files import (
    ensure_dir,
    read_json,
    refuse_link,
    utc_now,
    write_json_atomic,
)
from orchestrator.store.journal import JobProgress, Journals
from orchestrator.store.layout import ResultsLayout, check_job_id

log = structlog.get_logger("orchestrator.app.daemon")

POLL_INTERVAL = 0.5
STATUS_INTERVAL = 1.0
SUSPEND_TIMEOUT = 20.0  # bound on interrupting running turns at shutdown


class DaemonError(Exception):
    """The daemon cannot start (another one runs on the state dir, ...)."""


# -- one instance per state dir -----------------------------------------------------------


@contextlib.contextmanager
def daemon_lock(state_dir: Path) -> Iterator[None]:
    """Hold `<state_dir>/daemon.lock` for the daemon's life; refuse a second daemon."""
    path = ensure_dir(state_dir) / "daemon.lock"
    # Never through a link: a planted one would have us overwrite its target with our pid.
    fd = _open_nofollow(path, os.O_RDWR | os.O_CREAT)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise DaemonError(
                f"another orchestrator daemon (pid {pid}) is already running on {state_dir}"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def running_daemon_pid(state_dir: Path) -> int | None:
    """The pid of the daemon holding the state dir's lock, or None when none runs."""
    path = state_dir / "daemon.lock"
    if not path.exists():
        return None
    fd = _open_nofollow(path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.pread(fd, 32, 0).decode(errors="replace").strip()
            return int(text) if text.isdigit() else -1
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _open_nofollow(path: Path, flags: int) -> int:
    try:
        return os.open(path, flags | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            refuse_link(path)
        raise


# -- inbox ----------------------------------------------------------------------------


class Inbox:
    """The watched directory and its accepted/ and rejected/ folders."""

    def __init__(self, inbox_dir: Path) -> None:
        self.root = ensure_dir(inbox_dir)
        # Below the inbox nothing is followed: a linked accepted/ or rejected/ would move task
        # files (and write .error files) anywhere.
        self.accepted = ensure_dir(refuse_link(self.root / "accepted"))
        self.rejected = ensure_dir(refuse_link(self.root / "rejected"))

    def waiting(self) -> list[Path]:
        """Complete task files waiting, oldest first (dot-files are still being written)."""
        files = [p for p in self.root.glob("*.toml") if not p.name.startswith(".") and p.is_file()]
        return sorted(files, key=lambda p: (p.stat().st_mtime, p.name))

    def move_to_accepted(self, path: Path) -> Path:
        """Move a file into accepted/ under a unique name; returns the new path."""
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        target = self.accepted / f"{stamp}-{path.name}"
        n = 1
        while target.exists():
            n += 1
            target = self.accepted / f"{stamp}-{n}-{path.name}"
        os.replace(path, target)
        return target

    def reject(self, path: Path, problems: tuple[str, ...], name: str | None = None) -> Path:
        """Move a file into rejected/ (as `name`, default its own) with a `.error` file
        naming every problem."""
        target = self.rejected / (name or path.name)
        if target.exists():
            target = self.rejected / f"{time.strftime('%Y%m%dT%H%M%S')}-{path.name}"
        os.replace(path, target)
        error = target.with_suffix(".error")
        # The problems name the file where it was read; name it where it now is.
        lines = [problem.replace(str(path), str(target)) for problem in problems]
        fd = _open_nofollow(error, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write("\n".join(lines) + "\n")
        os.chmod(error, 0o600)
        return target


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
        self.control_dir = ensure_dir(refuse_link(self.state_dir / "control"))
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
            async with actor.slots_all():
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
        scheduler.suspending = True
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
                log.info(
                    "recovering job",
                    job=item.job_id,
                    thread=item.thread_id,
                    pending_turn=item.pending_turn,
                    turns_done=item.turns_done,
                )
                scheduler.submit(spec, item)

    def _load_accepted(self, path: Path, progress: dict[str, JobProgress]) -> dict[str, Any]:
        try:
            task = load_task_file(path, known_ids=set(progress))
        except ConfigError as exc:
            log.error("accepted task file no longer loads", file=str(path), error=str(exc))
            return {}
        return {job.id: job for job in task.jobs}

    def _fail_unloadable(self, job_id: str, error: str) -> None:
        write_json_atomic(
            self.layout.result_path(job_id),
            {"job_id": job_id, "status": "failed", "error": error, "finished_at": utc_now()},
        )
        with contextlib.closing(self.journals.open(job_id)) as journal:
            journal.append("result_written", status="failed")

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
        for request in sorted(self.control_dir.glob("cancel-*.request")):
            job_id = request.name.removeprefix("cancel-").removesuffix(".request")
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
        write_json_atomic(
            self.state_dir / "daemon.json",
            {
                "pid": os.getpid(),
                "started_at": self.started_at,
                "updated_at": utc_now(),
                "stopping": self.stopping,
                "connections": [actor.snapshot() for actor in self.actors],
                "running_jobs": {
                    job_id: _live(state)
                    for job_id, state in (scheduler.states.items() if scheduler else ())
                    if state.status in ("running", "waiting", "pending")
                },
            },
        )


def _live(state: JobState) -> dict[str, Any]:
    runner = state.runner
    return {
        "status": state.status,
        "connection": state.connection,
        "thread_id": runner.thread_id if runner else None,
        "turn_id": runner.current_turn if runner else None,
        "continuations": state.continuations,
    }


def _log_change(state: JobState) -> None:
    log.info("job " + state.status, job=state.spec.id, connection=state.connection)


# -- status and cancel, from outside ---------------------------------------------------------


def collect_status(config: OrchestratorConfig) -> dict[str, Any]:
    """Every known job and the connections' health; works whether the daemon runs or not."""
    state_dir = config.state_dir
    pid = running_daemon_pid(state_dir) if state_dir.exists() else None
    snapshot = read_json(state_dir / "daemon.json") if pid is not None else None
    live = (snapshot or {}).get("running_jobs", {}) if isinstance(snapshot, dict) else {}
    jobs = []
    for job_id, progress in sorted(Journals(state_dir).all_progress().items()):
        entry: dict[str, Any] = {
            "job_id": job_id,
            "state": progress.status,
            "connection": progress.connection,
            "thread_id": progress.thread_id,
            "turn_id": progress.pending_turn,
            "turns_done": progress.turns_done,
            "continuations": progress.continuations,
            "accepted_at": progress.accepted_at,
            "age_s": _age(progress.accepted_at),
        }
        if job_id in live and not progress.finished:
            entry.update({k: v for k, v in live[job_id].items() if v is not None})
            entry["state"] = live[job_id]["status"]
        result = read_json(ResultsLayout(config.results_dir).result_path(job_id))
        if isinstance(result, dict):
            entry["result"] = str(ResultsLayout(config.results_dir).result_path(job_id))
        jobs.append(entry)
    return {
        "daemon": {"running": pid is not None, "pid": pid},
        "connections": (snapshot or {}).get("connections", []) if snapshot else [],
        "jobs": jobs,
    }


def _age(stamp: str | None) -> float | None:
    if not stamp:
        return None
    try:
        accepted = time.mktime(time.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
    except ValueError:
        return None
    return round(time.time() - accepted, 1)


def request_cancel(config: OrchestratorConfig, job_id: str) -> Path:
    """Ask the running daemon to cancel a job (a request file in `<state_dir>/control/`)."""
    control = ensure_dir(refuse_link(ensure_dir(config.state_dir) / "control"))
    path = control / f"cancel-{check_job_id(job_id)}.request"
    write_json_atomic(path, {"job_id": job_id, "requested_at": utc_now()})
    return path


def format_status(status: dict[str, Any]) -> str:
    """The human view of `collect_status`."""
    daemon = status["daemon"]
    lines = [
        f"daemon: running (pid {daemon['pid']})" if daemon["running"] else "daemon: not running"
    ]
    for conn in status["connections"]:
        lines.append(
            f"connection {conn['name']}: {conn['state']} · threads {conn['threads_in_use']}/"
            f"{conn['max_threads']} · restarts {conn['restarts']}"
        )
    for job in status["jobs"]:
        lines.append(
            f"{job['state']:<10} {job['job_id']:<24} {job.get('connection') or '-':<10} "
            f"turn {job.get('turn_id') or '-'} · continuations {job['continuations']}"
        )
    return "\n".join(lines)


def json_dumps(data: Any) -> str:
    """Stable JSON for `status --json`."""
    return json.dumps(data, indent=2, sort_keys=True)
