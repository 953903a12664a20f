"""Where a key sits in a TOML text, and problems reported as `file:line: key.path: what`.

`tomllib` gives values but no positions, so `TomlSource` scans the text once and maps each key
path (`("jobs", 2, "approvals", "commands")`) to the line it starts on: `[table]` and
`[[array]]` headers (with their occurrence index), dotted keys, inline tables and array
elements, multi-line arrays and strings included. A path that is not in the text (a missing
key) maps to its nearest enclosing table, so an error can always name a line. The scanner only
runs on text `tomllib` accepted, but never raises on anything.

The rest are the small, pure building blocks the task-file and config loaders share: a
`Where` (file, source, key path), a `Problems` collector that ends in one `ConfigError`, and
typed readers that report a wrong value instead of raising on the first one. No I/O here
except `read_toml`, which reads one file and turns every way that can fail into a problem.
"""

from __future__ import annotations

import bisect
import datetime
import difflib
import enum
import json
import math
import os
import re
import tomllib
from collections.abc import Collection, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Generic, TypeVar

import attrs

from orchestrator.errors import ConfigError

KeyPath = tuple[str | int, ...]
E = TypeVar("E", bound=enum.Enum)
K = TypeVar("K")
V = TypeVar("V")

SECONDS_CAP = 7 * 24 * 3600.0  # no timeout or grace period may exceed a week

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+\Z")
_BARE_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
_MAX_DEPTH = 64  # deeper values are skipped (iteratively) instead of mapped
_ESCAPES = {"b": "\b", "t": "\t", "n": "\n", "f": "\f", "r": "\r", "e": "\x1b", '"': '"'}


def format_path(path: KeyPath) -> str:
    """`("jobs", 2, "approvals", "x y")` → `jobs[2].approvals."x y"`."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
            continue
        text = part if _BARE_KEY.match(part) else json.dumps(part, ensure_ascii=False)
        out += f".{text}" if out else text
    return out


class TomlSource:
    """The line of every key path in one TOML text (1-based lines)."""

    def __init__(self, text: str) -> None:
        scanner = _Scanner(text)
        scanner.run()
        newlines = [i for i, char in enumerate(text) if char == "\n"]
        self._lines: dict[KeyPath, int] = {
            path: bisect.bisect_left(newlines, pos) + 1 for path, pos in scanner.found.items()
        }

    def line_of(self, path: KeyPath) -> int:
        """The line of `path`, else of its nearest enclosing key or table, else 1."""
        for end in range(len(path), 0, -1):
            line = self._lines.get(path[:end])
            if line is not None:
                return line
        return 1

    def has(self, path: KeyPath) -> bool:
        """Whether `path` itself appears in the text."""
        return path in self._lines


class _Scanner:
    """A forgiving single pass over TOML text that records where each key path starts."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.n = len(text)
        self.pos = 0
        self.found: dict[KeyPath, int] = {}  # key path -> character offset
        self.arrays: dict[KeyPath, int] = {}  # array-of-tables path -> index of its last table

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < self.n else ""

    def run(self) -> None:
        table: KeyPath = ()
        while True:
            self.skip_blank(newlines=True)
            if self.pos >= self.n:
                return
            start = self.pos
            if self.peek() == "[":
                table = self.header(start)
            else:
                keys = self.key()
                self.skip_blank(newlines=False)
                if keys and self.peek() == "=":
                    self.pos += 1
                    self.mark(table, keys, start)
                    self.skip_blank(newlines=False)
                    self.value(table + keys, depth=0)
            self.skip_line()

    def header(self, start: int) -> KeyPath:
        is_array = self.text.startswith("[[", self.pos)
        self.pos += 2 if is_array else 1
        self.skip_blank(newlines=False)
        keys = self.key()
        resolved: KeyPath = ()
        for i, key in enumerate(keys):
            resolved += (key,)
            last = i == len(keys) - 1
            if last and is_array:
                index = self.arrays.get(resolved, -1) + 1
                self.arrays[resolved] = index
                self.found.setdefault(resolved, start)
                resolved += (index,)
                self.found[resolved] = start
            elif resolved in self.arrays:
                resolved += (self.arrays[resolved],)
            elif last:
                self.found[resolved] = start
            else:
                self.found.setdefault(resolved, start)
        return resolved

    def mark(self, table: KeyPath, keys: KeyPath, start: int) -> None:
        for end in range(1, len(keys) + 1):
            self.found.setdefault(table + keys[:end], start)

    def key(self) -> KeyPath:
        """A (dotted) key at the cursor; empty when there is none."""
        keys: list[str] = []
        while self.pos < self.n:
            self.skip_blank(newlines=False)
            char = self.peek()
            if char == '"':
                keys.append(self.read_basic())
            elif char == "'":
                keys.append(self.read_literal())
            elif char in _BARE_CHARS and char:
                begin = self.pos
                while self.pos < self.n and self.text[self.pos] in _BARE_CHARS:
                    self.pos += 1
                keys.append(self.text[begin : self.pos])
            else:
                break
            self.skip_blank(newlines=False)
            if self.peek() != ".":
                break
            self.pos += 1
        return tuple(keys)

    def read_basic(self) -> str:
        self.pos += 1
        out: list[str] = []
        while self.pos < self.n:
            char = self.text[self.pos]
            if char == '"' or char == "\n":
                self.pos += char == '"'
                break
            if char != "\\":
                out.append(char)
                self.pos += 1
                continue
            code = self.text[self.pos + 1 : self.pos + 2]
            width = {"u": 4, "U": 8, "x": 2}.get(code, 0)
            if width:
                digits = self.text[self.pos + 2 : self.pos + 2 + width]
                try:
                    out.append(chr(int(digits, 16)))
                except ValueError:
                    out.append(digits)
                self.pos += 2 + width
            else:
                out.append(_ESCAPES.get(code, code))
                self.pos += 2
        return "".join(out)

    def read_literal(self) -> str:
        self.pos += 1
        end = self.pos
        while end < self.n and self.text[end] not in "'\n":
            end += 1
        value = self.text[self.pos : end]
        self.pos = end + (end < self.n and self.text[end] == "'")
        return value

    def skip_blank(self, *, newlines: bool) -> None:
        while self.pos < self.n:
            char = self.text[self.pos]
            if char in " \t" or (newlines and char in "\r\n"):
                self.pos += 1
            elif char == "#":
                while self.pos < self.n and self.text[self.pos] != "\n":
                    self.pos += 1
            else:
                return

    def skip_line(self) -> None:
        while self.pos < self.n and self.text[self.pos] != "\n":
            char = self.text[self.pos]
            if char == "#":
                self.skip_blank(newlines=False)
            elif char in "\"'":
                self.skip_string()
            else:
                self.pos += 1
        self.pos += 1

    def skip_string(self) -> None:
        quote = self.text[self.pos]
        if self.text.startswith(quote * 3, self.pos):
            self.pos += 3
            while self.pos < self.n:
                if quote == '"' and self.text[self.pos] == "\\":
                    self.pos += 2
                elif self.text.startswith(quote * 3, self.pos):
                    self.pos += 3
                    # Up to two more quotes belong to the content: `"""a""""` is `a"`.
                    for _ in range(2):
                        if self.peek() == quote:
                            self.pos += 1
                    return
                else:
                    self.pos += 1
            return
        self.pos += 1
        while self.pos < self.n:
            char = self.text[self.pos]
            if quote == '"' and char == "\\":
                self.pos += 2
                continue
            if char == "\n":
                return
            self.pos += 1
            if char == quote:
                return

    def value(self, path: KeyPath, depth: int) -> None:
        char = self.peek()
        if char in ("{", "[") and depth >= _MAX_DEPTH:
            self.skip_nested()
        elif char == "{":
            self.inline_table(path, depth)
        elif char == "[":
            self.array(path, depth)
        elif char in ("'", '"'):
            self.skip_string()
        else:
            while self.pos < self.n and self.text[self.pos] not in ",]}#\n":
                self.pos += 1

    def inline_table(self, path: KeyPath, depth: int) -> None:
        self.pos += 1
        while True:
            self.skip_blank(newlines=True)
            char = self.peek()
            if not char:
                return
            if char == "}":
                self.pos += 1
                return
            if char == ",":
                self.pos += 1
                continue
            start = self.pos
            keys = self.key()
            if not keys:
                self.pos += 1
                continue
            self.mark(path, keys, start)
            self.skip_blank(newlines=False)
            if self.peek() == "=":
                self.pos += 1
                self.skip_blank(newlines=False)
                self.value(path + keys, depth + 1)

    def array(self, path: KeyPath, depth: int) -> None:
        self.pos += 1
        index = 0
        while True:
            self.skip_blank(newlines=True)
            char = self.peek()
            if not char:
                return
            if char == "]":
                self.pos += 1
                return
            if char == ",":
                self.pos += 1
                continue
            self.found.setdefault((*path, index), self.pos)
            before = self.pos
            self.value((*path, index), depth + 1)
            if self.pos == before:
                self.pos += 1
            index += 1

    def skip_nested(self) -> None:
        """Skip one bracketed value without recursion (too deep to be worth mapping)."""
        level = 0
        while self.pos < self.n:
            char = self.text[self.pos]
            if char in "\"'":
                self.skip_string()
                continue
            if char == "#":
                self.skip_blank(newlines=False)
                continue
            self.pos += 1
            if char in "[{":
                level += 1
            elif char in "]}":
                level -= 1
                if level <= 0:
                    return


class FrozenMap(Mapping[K, V], Generic[K, V]):
    """An immutable, hashable mapping (so specs holding one stay hashable)."""

    __slots__ = ("_data", "_hash")

    def __init__(self, items: Mapping[K, V] | Sequence[tuple[K, V]] = ()) -> None:
        pairs = items.items() if isinstance(items, Mapping) else items
        self._data: dict[K, V] = dict(pairs)
        self._hash: int | None = None

    def __getitem__(self, key: K) -> V:
        return self._data[key]

    def __iter__(self) -> Iterator[K]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = hash(frozenset(self._data.items()))
        return self._hash

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Mapping):
            return self._data == dict(other.items())
        return NotImplemented

    def __repr__(self) -> str:
        return f"FrozenMap({self._data!r})"


def freeze_str_map(items: Mapping[str, str] | Sequence[tuple[str, str]]) -> FrozenMap[str, str]:
    """A FrozenMap of strings from a mapping or pairs (an attrs converter)."""
    return items if isinstance(items, FrozenMap) else FrozenMap(items)


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
    maximum: float = SECONDS_CAP,
) -> float | None:
    """A finite number of seconds, > 0 (or >= 0), at most `maximum`; None after reporting."""
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
    if value > maximum:
        problems.add(where, f"must be at most {maximum:g} seconds (got {describe(value)})")
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
