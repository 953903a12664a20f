"""Where each key sits in a TOML text: the line map behind every located error.

`tomllib` gives values but no positions, so `TomlSource` scans the text once and maps each key
path (`("jobs", 2, "approvals", "commands")`) to the line it starts on: `[table]` and
`[[array]]` headers (with their occurrence index), dotted keys, inline tables and array
elements, multi-line arrays and strings included. A path that is not in the text (a missing
key) maps to its nearest enclosing table, so an error can always name a line. The scanner only
runs on text `tomllib` accepted, but never raises on anything. Private to config/: callers use
`readers.Where`.
"""

from __future__ import annotations

import bisect
import json
import re
from collections.abc import Iterator

KeyPath = tuple[str | int, ...]

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

    def elements(self, close: str) -> Iterator[int]:
        """Step into a bracketed value at the cursor: yield at the start of each element
        (the caller reads it), skipping blanks, comments and commas, until `close`."""
        self.pos += 1
        while True:
            self.skip_blank(newlines=True)
            char = self.peek()
            if not char:
                return
            if char == close:
                self.pos += 1
                return
            if char == ",":
                self.pos += 1
                continue
            yield self.pos

    def inline_table(self, path: KeyPath, depth: int) -> None:
        for start in self.elements("}"):
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
        for index, start in enumerate(self.elements("]")):
            self.found.setdefault((*path, index), start)
            self.value((*path, index), depth + 1)
            if self.pos == start:
                self.pos += 1

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
