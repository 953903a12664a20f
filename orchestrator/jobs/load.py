"""Load task files into `JobSpec`s, rejecting anything wrong before a single job runs.

Every file of one load is read, parsed and validated, then the jobs are checked together:
ids unique across all files, every `depends_on` id known, no job depending on itself, no
dependency cycles. All problems of all files are gathered and raised as one `ConfigError`
(one `file:line: key.path: what is wrong` per problem, sorted by file and line), so a user
fixes everything in one round. `file` is the path exactly as the caller gave it.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Collection, Iterable, Mapping, Sequence
from pathlib import Path

import attrs

from orchestrator.config.model import OrchestratorConfig, load_config
from orchestrator.config.readers import (
    Layer,
    Problem,
    Problems,
    TomlDocument,
    Where,
    check_keys,
    describe,
    read_toml,
)
from orchestrator.errors import ConfigError
from orchestrator.jobs.model import (
    JobSpec,
    TaskFile,
    check_defaults,
    read_job,
    read_job_id,
)

TOP_LEVEL_KEYS = ("defaults", "jobs")

StrPath = str | os.PathLike[str]


def load_task_file(path: StrPath, *, known_ids: Collection[str] = ()) -> TaskFile:
    """Load and validate one task file on its own.

    Args:
        path: the task file; messages name it as given.
        known_ids: ids of jobs loaded earlier that `depends_on` may name too.

    Raises:
        ConfigError: naming every problem found.
    """
    return _load([path], known_ids)[0]


def load_task_files(
    paths: Iterable[StrPath], *, known_ids: Collection[str] = ()
) -> tuple[JobSpec, ...]:
    """Load and validate task files together; `depends_on` may cross files.

    Returns:
        every job of every file, in the order given.

    Raises:
        ConfigError: naming every problem of every file at once.
    """
    return tuple(job for task_file in _load(list(paths), known_ids) for job in task_file.jobs)


@attrs.frozen
class _Entry:
    """A job as the cross-job checks see it, even when its own table had problems."""

    id: str | None
    depends_on: tuple[tuple[int, str], ...]  # (index in the file's array, id)
    where: Where


def _load(paths: Sequence[StrPath], known_ids: Collection[str]) -> tuple[TaskFile, ...]:
    problems = Problems()
    files: list[TaskFile] = []
    entries: list[_Entry] = []
    for path in paths:
        document = read_toml(path, problems)
        if document is None:
            continue
        jobs = _read_file(document, problems, entries)
        files.append(TaskFile(path=Path(document.file), jobs=jobs))
    _check_graph(entries, known_ids, problems)
    problems.raise_if_any(order=[os.fspath(path) for path in paths])
    return tuple(files)


def _read_file(
    document: TomlDocument, problems: Problems, entries: list[_Entry]
) -> tuple[JobSpec, ...]:
    top = document.where
    data = document.data
    base_dir = Path(os.path.abspath(document.file)).parent
    check_keys(data, TOP_LEVEL_KEYS, top, problems)
    defaults: Layer | None = None
    if "defaults" in data:
        raw = data["defaults"]
        if isinstance(raw, dict):
            defaults = Layer(raw, top.at("defaults"))
            check_defaults(raw, where=defaults.where, base_dir=base_dir, problems=problems)
        else:
            problems.add(top.at("defaults"), f"must be a table [defaults] (got {describe(raw)})")
    tables = _job_tables(data, top, problems)
    jobs: list[JobSpec] = []
    for index, table in enumerate(tables):
        here = top.at("jobs", index)
        job_id = read_job_id(table, here, Problems())  # read_job reports its problems
        raw = table.get("depends_on")
        depends_on = tuple(
            (i, item)
            for i, item in enumerate(raw if isinstance(raw, list) else ())
            if isinstance(item, str)
        )
        entries.append(_Entry(job_id, depends_on, here))
        spec = read_job(table, where=here, base_dir=base_dir, defaults=defaults, problems=problems)
        if spec is not None:
            jobs.append(spec)
    return tuple(jobs)


def _job_tables(
    data: Mapping[str, object], top: Where, problems: Problems
) -> list[Mapping[str, object]]:
    if "jobs" not in data:
        problems.add(top.at("jobs"), "no jobs in this file: add at least one [[jobs]] table")
        return []
    raw = data["jobs"]
    if not isinstance(raw, list) or not all(isinstance(item, dict) for item in raw):
        problems.add(
            top.at("jobs"), f"must be an array of tables, one [[jobs]] per job (got {_kind(raw)})"
        )
        return []
    if not raw:
        problems.add(top.at("jobs"), "no jobs in this file: add at least one [[jobs]] table")
    return raw


def _kind(value: object) -> str:
    if isinstance(value, list):
        return "an array of other values"
    return describe(value)


def _check_graph(entries: Sequence[_Entry], known_ids: Collection[str], problems: Problems) -> None:
    """Unique ids, known and non-self dependencies, and no cycles, across every file."""
    first: dict[str, _Entry] = {}
    for entry in entries:
        if entry.id is None:
            continue
        seen = first.get(entry.id)
        if seen is None:
            first[entry.id] = entry
            continue
        other = seen.where.at("id")
        problems.add(
            entry.where.at("id"),
            f'duplicate id "{entry.id}" (first defined at {other.file}:{other.line})',
        )
    graph: dict[str, tuple[str, ...]] = {}
    for entry in entries:
        edges: list[str] = []
        for index, dependency in entry.depends_on:
            here = entry.where.at("depends_on", index)
            if dependency == entry.id:
                problems.add(here, f'job "{entry.id}" cannot depend on itself')
            elif dependency in first:
                edges.append(dependency)
            elif dependency not in known_ids:
                problems.add(here, f'unknown job id "{dependency}"{_suggest(dependency, first)}')
        if entry.id is not None and first[entry.id] is entry:
            graph[entry.id] = tuple(dict.fromkeys(edges))
    for cycle in find_cycles(graph):
        entry = first[cycle[0]]
        problems.add_problem(
            Problem(
                entry.where.file,
                entry.where.at("depends_on").line,
                entry.where.at("depends_on").key,
                "dependency cycle: " + " -> ".join(cycle),
            )
        )


def _suggest(name: str, ids: Collection[str]) -> str:
    close = difflib.get_close_matches(name, list(ids), n=1)
    return f' (did you mean "{close[0]}"?)' if close else ""


def find_cycles(graph: Mapping[str, Sequence[str]]) -> list[tuple[str, ...]]:
    """One cycle per strongly connected component that has one, as `(a, b, ..., a)`.

    Each cycle starts at the smallest id of its component and is a shortest way back to it.
    Self-loops are ignored (reported separately). Iterative: deep chains cannot overflow.
    """
    components = _strongly_connected(graph)
    cycles: list[tuple[str, ...]] = []
    for component in components:
        if len(component) < 2:
            continue
        members = set(component)
        start = min(component)
        parents: dict[str, str] = {}
        frontier = [start]
        found: str | None = None
        while frontier and found is None:
            following: list[str] = []
            for node in frontier:
                for target in graph.get(node, ()):
                    if target == start:
                        found = node
                        break
                    if target in members and target not in parents and target != start:
                        parents[target] = node
                        following.append(target)
                if found is not None:
                    break
            frontier = following
        if found is None:  # cannot happen for a component of two or more; stay safe
            continue
        path = [found]
        while path[-1] != start:
            path.append(parents[path[-1]])
        cycles.append((*reversed(path), start))
    cycles.sort()
    return cycles


def _strongly_connected(graph: Mapping[str, Sequence[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iteratively."""
    index_of: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    for root in graph:
        if root in index_of:
            continue
        work: list[tuple[str, int]] = [(root, 0)]
        while work:
            node, position = work.pop()
            if position == 0:
                index_of[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack.add(node)
            targets = [t for t in graph.get(node, ()) if t in graph]
            recursed = False
            while position < len(targets):
                target = targets[position]
                position += 1
                if target not in index_of:
                    work.append((node, position))
                    work.append((target, 0))
                    recursed = True
                    break
                if target in on_stack:
                    low[node] = min(low[node], index_of[target])
            if recursed:
                continue
            if low[node] == index_of[node]:
                component: list[str] = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(component)
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    return components


def validate_jobs_against_config(jobs: Iterable[JobSpec], config: OrchestratorConfig) -> None:
    """Check that every job's `connection` names a configured connection.

    Raises:
        ConfigError: one problem per job naming an unknown connection, at the job's line.
    """
    configured = [spec.name for spec in config.connections]
    problems = Problems()
    for job in jobs:
        if job.connection is None or job.connection in configured:
            continue
        line, key = job.source.locate("connection")
        where_from = f" in {config.source}" if config.source is not None else ""
        problems.add_problem(
            Problem(
                str(job.source.file),
                line,
                key,
                f'unknown connection "{job.connection}"; configured{where_from}: '
                + ", ".join(configured),
            )
        )
    problems.raise_if_any()


def load_jobs_and_config(
    config_path: StrPath | None, task_files: Sequence[StrPath]
) -> tuple[OrchestratorConfig, tuple[JobSpec, ...]]:
    """The config and the jobs of the task files, validated together.

    Raises:
        ConfigError: naming every problem of the config and of every task file at once.
    """
    problems: list[str] = []
    config: OrchestratorConfig | None = None
    jobs: tuple[JobSpec, ...] = ()
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        problems.extend(exc.problems)
    try:
        jobs = load_task_files(task_files)
    except ConfigError as exc:
        problems.extend(exc.problems)
    if config is not None and jobs:
        try:
            validate_jobs_against_config(jobs, config)
        except ConfigError as exc:
            problems.extend(exc.problems)
    if problems:
        raise ConfigError("\n".join(problems), problems=tuple(problems))
    assert config is not None
    return config, jobs
