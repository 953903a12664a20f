"""The validation kit task and config files share: places, problems, typed readers.

- `Where`: a place in a TOML file (file, line map, key path); `Problems` collects what is
  wrong at such places and ends in one `ConfigError` naming them all as
  `file:line: key.path: what is wrong`; `collect` runs a reader with its own collector.
- `read_toml` reads and parses one file, turning every way that can fail into a problem.
- `Fields` reads the keys of a table (or of layered tables: a job over its file's
  `[defaults]`), one typed method per kind of value; a wrong value is reported and read as
  absent instead of raising on the first one. The `read_*` functions are the same checks for
  a value already in hand (items of a list, keys of a map).
No I/O except `read_toml`'s one read, and checking that a directory exists where asked.
"""

from __future__ import annotations

import datetime
import difflib
import enum
import json
import math
import os
import re
import tomllib
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

import attrs

from orchestrator._util.frozen import FrozenMap as FrozenMap
from orchestrator.config._toml_lines import KeyPath, TomlSource, format_path
from orchestrator.errors import ConfigError

E = TypeVar("E", bound=enum.Enum)
T = TypeVar("T")

SECONDS_CAP = 7 * 24 * 3600.0  # no timeout or grace period may exceed a week


# --- problems -------------------------------------------------------------------------------


@attrs.frozen
class Where:
    """A place in a TOML file: the file as the caller named it, and a key path in it."""

    file: str
    source: TomlSource = attrs.field(eq=False, repr=False)
    path: KeyPath = ()

    def at(self, *keys: str | int) -> Where:
        """The place of a key (or array index) below this one."""
        return Where(self.file, self.source, self.path + keys)

    @classmethod
    def detached(cls, file: str = "<mapping>") -> Where:
        """A place for data that did not come from a TOML text (every line is 1)."""
        return cls(file, TomlSource(""))

    @property
    def line(self) -> int:
        """The line of this key, or of its nearest enclosing table."""
        return self.source.line_of(self.path)

    @property
    def key(self) -> str:
        """The key path as text, such as `jobs[2].approvals.commands`."""
        return format_path(self.path)


@attrs.frozen
class Problem:
    """One thing wrong with a file: `file:line: key: message`."""

    file: str
    line: int
    key: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.key}: {self.message}"


@attrs.define
class Problems:
    """Collects problems (once each, in order) and raises them together as one ConfigError."""

    items: list[Problem] = attrs.field(factory=list)
    reported: int = 0  # every report, repeats included: a reader compares it to see if it failed
    _seen: set[Problem] = attrs.field(factory=set, repr=False)

    def add(self, where: Where, message: str) -> None:
        """Record a problem at `where`."""
        self.add_problem(Problem(where.file, where.line, where.key, message))

    def add_problem(self, problem: Problem) -> None:
        """Record a problem, unless the very same one was recorded already."""
        self.reported += 1
        if problem not in self._seen:
            self._seen.add(problem)
            self.items.append(problem)

    def __bool__(self) -> bool:
        return bool(self.items)

    def raise_if_any(self, *, order: Sequence[str] = ()) -> None:
        """Raise one ConfigError holding every problem, sorted by file (in `order`) and line."""
        if not self.items:
            return
        rank = {name: i for i, name in reversed(list(enumerate(order)))}
        items = sorted(self.items, key=lambda p: (rank.get(p.file, len(rank)), p.line))
        raise config_error(items)


def config_error(items: Sequence[Problem]) -> ConfigError:
    """A ConfigError whose message is the problem lines joined by newlines."""
    lines = tuple(str(problem) for problem in items)
    return ConfigError("\n".join(lines), problems=lines)


# --- reading a file -------------------------------------------------------------------------


@attrs.frozen
class TomlDocument:
    """One parsed TOML file: its top-level table and the line map of its text."""

    file: str
    data: Mapping[str, object] = attrs.field(repr=False)
    source: TomlSource = attrs.field(repr=False)

    @property
    def where(self) -> Where:
        """The top of the document."""
        return Where(self.file, self.source)


_AT_LINE = re.compile(r"at line (\d+)")


def read_toml(path: str | os.PathLike[str], problems: Problems) -> TomlDocument | None:
    """Read and parse one TOML file; on failure record why (with a line) and return None."""
    file = os.fspath(path)

    def fail(line: int, key: str, message: str) -> None:
        problems.add_problem(Problem(file, line, key, message))

    try:
        raw = Path(file).read_bytes()
    except FileNotFoundError:
        fail(1, "file", "does not exist")
        return None
    except IsADirectoryError:
        fail(1, "file", "is a directory, not a file")
        return None
    except PermissionError:
        fail(1, "file", "is not readable (permission denied)")
        return None
    except (OSError, ValueError) as exc:
        fail(1, "file", f"cannot be read ({getattr(exc, 'strerror', None) or exc})")
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        fail(
            line, "file", f"is not valid UTF-8 (byte 0x{raw[exc.start]:02x} at offset {exc.start})"
        )
        return None
    text = text.removeprefix("\ufeff")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        match = _AT_LINE.search(message)
        line = int(match.group(1)) if match else text.count("\n") + 1
        fail(line, "syntax", message)
        return None
    except RecursionError:
        fail(1, "syntax", "values are nested too deeply")
        return None
    except ValueError as exc:  # tomllib lets int() complain about integers of 4300+ digits
        fail(1, "syntax", f"invalid value ({exc})")
        return None
    return TomlDocument(file=file, data=data, source=TomlSource(text))


# --- typed readers --------------------------------------------------------------------------


@attrs.frozen
class Layer:
    """A table of settings and where it is; later layers override earlier ones key by key."""

    data: Mapping[str, object]
    where: Where


def pick(key: str, layers: Sequence[Layer]) -> tuple[object, Where] | None:
    """The value of `key` from the last layer that has it, with its place."""
    for layer in reversed(layers):
        if key in layer.data:
            return layer.data[key], layer.where.at(key)
    return None


def describe(value: object) -> str:
    """A short TOML-ish rendering of a value for messages: `"maybe"`, `true`, `3`, `a table`."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        text = value if len(value) <= 60 else value[:57] + "..."
        return json.dumps(text, ensure_ascii=False)
    if isinstance(value, int):
        return str(value) if value.bit_length() < 128 else "a very large integer"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, datetime.date | datetime.time):
        return f"a date/time ({value.isoformat()})"
    return type(value).__name__


def check_keys(
    data: Mapping[str, object],
    allowed: Collection[str],
    where: Where,
    problems: Problems,
    *,
    hints: Mapping[str, str] | None = None,
) -> None:
    """Report every key of `data` that is not in `allowed`, naming the allowed ones."""
    for key in data:
        if key in allowed:
            continue
        hint = (hints or {}).get(key)
        if hint is None:
            hint = f"unknown key; allowed keys are {', '.join(sorted(allowed))}"
            close = difflib.get_close_matches(key, list(allowed), n=1)
            if close:
                hint += f' (did you mean "{close[0]}"?)'
        problems.add(where.at(key), hint)


def read_table(value: object, where: Where, problems: Problems) -> Mapping[str, object] | None:
    """A table, or None after reporting what it is instead."""
    if isinstance(value, dict):
        return value
    problems.add(where, f"must be a table (got {describe(value)})")
    return None


def read_str(value: object, where: Where, problems: Problems, *, empty: bool = False) -> str | None:
    """A string (non-blank unless `empty`), or None after reporting."""
    if not isinstance(value, str):
        problems.add(where, f"must be a string (got {describe(value)})")
        return None
    if not empty and not value.strip():
        problems.add(where, "must not be empty")
        return None
    return value


def read_int(
    value: object, where: Where, problems: Problems, *, minimum: int, maximum: int
) -> int | None:
    """An integer in [minimum, maximum] (a bool is not an integer), or None after reporting."""
    if isinstance(value, bool) or not isinstance(value, int):
        problems.add(where, f"must be an integer (got {describe(value)})")
        return None
    if value < minimum:
        problems.add(where, f"must be at least {minimum} (got {describe(value)})")
        return None
    if value > maximum:
        problems.add(where, f"must be at most {maximum} (got {describe(value)})")
        return None
    return value


def read_seconds(
    value: object,
    where: Where,
    problems: Problems,
    *,
    allow_zero: bool = False,
) -> float | None:
    """A finite number of seconds, > 0 (or >= 0), at most a week; None after reporting."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        problems.add(where, f"must be a number of seconds (got {describe(value)})")
        return None
    if isinstance(value, float) and not math.isfinite(value):
        problems.add(where, f"must be a finite number (got {describe(value)})")
        return None
    if value < 0 or (value == 0 and not allow_zero):
        bound = "must not be negative" if allow_zero else "must be greater than 0"
        problems.add(where, f"{bound} (got {describe(value)})")
        return None
    if value > SECONDS_CAP:
        problems.add(where, f"must be at most {SECONDS_CAP:g} seconds (got {describe(value)})")
        return None
    return float(value)


def read_enum(value: object, kind: type[E], where: Where, problems: Problems) -> E | None:
    """A member of a string-valued enum, by value; None after listing the allowed values."""
    for member in kind:
        if isinstance(value, str) and member.value == value:
            return member
    allowed = ", ".join(str(member.value) for member in kind)
    problems.add(where, f"must be one of {allowed} (got {describe(value)})")
    return None


def read_choice(
    value: object, choices: Sequence[str], where: Where, problems: Problems
) -> str | None:
    """One of a fixed set of strings; None after listing them."""
    if isinstance(value, str) and value in choices:
        return value
    problems.add(where, f"must be one of {', '.join(choices)} (got {describe(value)})")
    return None


def read_str_list(
    value: object,
    where: Where,
    problems: Problems,
    *,
    nonempty: bool = True,
    empty_items: bool = False,
) -> tuple[str, ...] | None:
    """An array of strings (non-empty unless told otherwise); None after reporting."""
    if not isinstance(value, list):
        problems.add(where, f"must be an array of strings (got {describe(value)})")
        return None
    if nonempty and not value:
        problems.add(where, "must not be empty")
        return None
    items: list[str] = []
    ok = True
    for index, item in enumerate(value):
        text = read_str(item, where.at(index), problems, empty=empty_items)
        if text is None:
            ok = False
        else:
            items.append(text)
    return tuple(items) if ok else None


def read_str_map(
    value: object, where: Where, problems: Problems
) -> tuple[tuple[str, str], ...] | None:
    """A table of string to string, as sorted pairs; None after reporting."""
    table = read_table(value, where, problems)
    if table is None:
        return None
    pairs: list[tuple[str, str]] = []
    ok = True
    for key, item in table.items():
        text = read_str(item, where.at(key), problems, empty=True)
        if text is None:
            ok = False
        else:
            pairs.append((key, text))
    return tuple(sorted(pairs)) if ok else None


# The longest file name (one path component) Linux file systems take, in bytes.
NAME_MAX = 255


def resolve_dir(
    value: object, base_dir: Path, where: Where, problems: Problems, *, must_exist: bool
) -> Path | None:
    """A directory path relative to `base_dir`, made absolute; None after reporting."""
    text = read_str(value, where, problems)
    if text is None:
        return None
    if "\0" in text:
        problems.add(where, "must not contain a NUL character")
        return None
    path = Path(os.path.abspath(base_dir / os.path.expanduser(text)))
    too_long = [part for part in path.parts if len(os.fsencode(part)) > NAME_MAX]
    if too_long:
        problems.add(
            where,
            f"has a name longer than {NAME_MAX} bytes, more than file systems allow "
            f"({describe(too_long[0][:40] + '...')})",
        )
        return None
    if must_exist:
        try:
            exists, is_dir = path.exists(), path.is_dir()
        except (OSError, ValueError) as exc:
            problems.add(where, f"cannot be checked ({exc})")
            return None
        if not exists:
            problems.add(where, f"directory does not exist: {path}")
            return None
        if not is_dir:
            problems.add(where, f"is not a directory: {path}")
            return None
    return path


def collect(read: Callable[[Problems], T | None]) -> T:
    """Run a reader that reports into a `Problems`; what it read, or every problem at once.

    Raises:
        ConfigError: naming every problem the reader found.
    """
    problems = Problems()
    value = read(problems)
    problems.raise_if_any()
    assert value is not None, "a reader returned None without reporting a problem"
    return value


class Fields:
    """Typed reads of a table's keys; with several layers, the last that has a key wins.

    Each read reports a wrong value to `problems` and returns `default` instead (absent keys
    return `default` silently). `origins` lists, for every key read, the line and key path it
    came from, so later checks (a job's connection against the config) can point there too.
    """

    def __init__(self, layers: Sequence[Layer], problems: Problems) -> None:
        self.layers = tuple(layers)
        self.problems = problems
        self.origins: list[tuple[str, int, str]] = []

    @classmethod
    def of(cls, data: Mapping[str, object], where: Where, problems: Problems) -> Fields:
        """The fields of one table."""
        return cls((Layer(data, where),), problems)

    def get(self, key: str) -> tuple[object, Where] | None:
        """The raw value of `key` and its place, from the last layer that has it."""
        found = pick(key, self.layers)
        if found is not None:
            self.origins.append((key, found[1].line, found[1].key))
        return found

    def check_keys(
        self, allowed: Collection[str], *, hints: Mapping[str, str] | None = None
    ) -> None:
        """Report every key of every layer that is not in `allowed`."""
        for layer in self.layers:
            check_keys(layer.data, allowed, layer.where, self.problems, hints=hints)

    def _read(
        self, key: str, default: T | None, read: Callable[[object, Where], T | None]
    ) -> T | None:
        """`read(value, place)` of the key's value; `default` when absent or wrong."""
        found = self.get(key)
        if found is None:
            return default
        value = read(*found)
        return default if value is None else value

    def text(self, key: str, default: str | None = None, *, empty: bool = False) -> str | None:
        """A string (non-blank unless `empty`)."""
        return self._read(key, default, lambda v, w: read_str(v, w, self.problems, empty=empty))

    def integer(
        self, key: str, default: int | None = None, *, minimum: int, maximum: int
    ) -> int | None:
        """An integer in [minimum, maximum]."""
        return self._read(
            key,
            default,
            lambda v, w: read_int(v, w, self.problems, minimum=minimum, maximum=maximum),
        )

    def seconds(
        self, key: str, default: float | None = None, *, allow_zero: bool = False
    ) -> float | None:
        """A number of seconds, > 0 (or >= 0), at most a week."""
        return self._read(
            key, default, lambda v, w: read_seconds(v, w, self.problems, allow_zero=allow_zero)
        )

    def member(self, key: str, kind: type[E], default: E | None = None) -> E | None:
        """A member of a string-valued enum, by value."""
        return self._read(key, default, lambda v, w: read_enum(v, kind, w, self.problems))

    def choice(self, key: str, choices: Sequence[str]) -> str | None:
        """One of a fixed set of strings."""
        return self._read(key, None, lambda v, w: read_choice(v, choices, w, self.problems))

    def flag(self, key: str, default: bool = False) -> bool:
        """true or false."""
        found = self.get(key)
        if found is None:
            return default
        value, where = found
        if isinstance(value, bool):
            return value
        self.problems.add(where, f"must be true or false (got {describe(value)})")
        return default

    def texts(
        self, key: str, default: tuple[str, ...] | None = None, *, nonempty: bool = True
    ) -> tuple[str, ...] | None:
        """An array of strings."""
        return self._read(
            key, default, lambda v, w: read_str_list(v, w, self.problems, nonempty=nonempty)
        )

    def text_map(self, key: str) -> tuple[tuple[str, str], ...] | None:
        """A table of string to string, as sorted pairs."""
        return self._read(key, None, lambda v, w: read_str_map(v, w, self.problems))

    def directory(
        self, key: str, base_dir: Path, *, default: str | None = None, must_exist: bool
    ) -> Path | None:
        """A directory path relative to `base_dir`, made absolute (`default` when absent,
        reported at the table's place)."""
        found = self.get(key)
        if found is None:
            if default is None:
                return None
            found = (default, self.layers[-1].where.at(key))
        return resolve_dir(found[0], base_dir, found[1], self.problems, must_exist=must_exist)

    def place(self, key: str) -> Where:
        """Where `key` is (or would be: in the last layer)."""
        found = pick(key, self.layers)
        return found[1] if found is not None else self.layers[-1].where.at(key)
