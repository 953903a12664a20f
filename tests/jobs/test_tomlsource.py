"""TomlSource maps key paths to the line they start on, without a TOML parser's help."""

from __future__ import annotations

import textwrap
import tomllib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.config.readers import KeyPath, TomlSource, format_path

TEXT = textwrap.dedent(
    '''\
    # [[jobs]] in a comment is not a header; neither is "x = 1"
    title = "a [[jobs]] string with = and # inside"
    [defaults]
    cwd = "."
    approvals.commands = "accept"

    [[jobs]]
    id = "first"
    prompt = """
    [[jobs]]
    id = "fake"
    """

    [[jobs]]   # the second job
    id = 'second'
    turns = [
      "one",   # comment
      'two, with a comma',
      """three
    lines""",
      "four",
    ]
    approvals = { commands = "no", allow_commands = [["git"], ["ls"]], user_input = {"q 1" = "y"} }

    [jobs.extra]
    key = 1

    [[jobs]]
    "quoted.key" = 2
    a.b . c = 3
    nested = [[1, 2], [3,
      4]]
    '''
)


def test_the_text_is_valid_toml() -> None:
    """The sample is real TOML, so the mapping is checked against what tomllib sees."""
    data = tomllib.loads(TEXT)
    assert [job.get("id") for job in data["jobs"]] == ["first", "second", None]


def test_table_headers_and_their_keys() -> None:
    """A `[table]` header and the keys under it map to their own lines."""
    source = TomlSource(TEXT)
    assert source.line_of(("defaults",)) == 3
    assert source.line_of(("defaults", "cwd")) == 4
    assert source.line_of(("defaults", "approvals", "commands")) == 5
    assert source.line_of(("title",)) == 2


def test_nth_array_of_tables_header() -> None:
    """Each `[[jobs]]` is counted; headers inside strings and comments are not."""
    source = TomlSource(TEXT)
    assert source.line_of(("jobs", 0)) == 7
    assert source.line_of(("jobs", 1)) == 14
    assert source.line_of(("jobs", 2)) == 28
    assert source.line_of(("jobs", 0, "id")) == 8
    assert source.line_of(("jobs", 1, "id")) == 15
    assert not source.has(("jobs", 3))


def test_multiline_arrays_map_each_element() -> None:
    """Elements of a multi-line array map to the line each starts on."""
    source = TomlSource(TEXT)
    assert source.line_of(("jobs", 1, "turns")) == 16
    assert source.line_of(("jobs", 1, "turns", 0)) == 17
    assert source.line_of(("jobs", 1, "turns", 1)) == 18
    assert source.line_of(("jobs", 1, "turns", 2)) == 19
    assert source.line_of(("jobs", 1, "turns", 3)) == 21
    assert source.line_of(("jobs", 2, "nested", 1, 0)) == 31
    assert source.line_of(("jobs", 2, "nested", 1, 1)) == 32


def test_inline_tables_map_their_keys() -> None:
    """Keys inside an inline table (nested ones too) map to the inline table's line."""
    source = TomlSource(TEXT)
    assert source.line_of(("jobs", 1, "approvals", "commands")) == 23
    assert source.line_of(("jobs", 1, "approvals", "allow_commands", 1)) == 23
    assert source.line_of(("jobs", 1, "approvals", "user_input", "q 1")) == 23


def test_sub_table_of_an_array_element() -> None:
    """`[jobs.extra]` belongs to the latest `[[jobs]]`."""
    source = TomlSource(TEXT)
    assert source.line_of(("jobs", 1, "extra")) == 25
    assert source.line_of(("jobs", 1, "extra", "key")) == 26


def test_quoted_and_dotted_keys() -> None:
    """Quoted keys are one key; dotted keys (with spaces around dots) are a path."""
    source = TomlSource(TEXT)
    assert source.line_of(("jobs", 2, "quoted.key")) == 29
    assert source.line_of(("jobs", 2, "a", "b", "c")) == 30


def test_a_missing_key_maps_to_its_table_header() -> None:
    """A key that is not in the text maps to the nearest enclosing table's line."""
    source = TomlSource(TEXT)
    assert source.line_of(("jobs", 0, "turns")) == 7
    assert source.line_of(("jobs", 1, "approvals", "file_changes")) == 23
    assert source.line_of(("nothing", "here")) == 1


def test_nested_arrays_of_tables_count_per_parent() -> None:
    """`[[a.b]]` counts restart under each `[[a]]`."""
    text = "[[a]]\n[[a.b]]\n[[a.b]]\nx = 1\n[[a]]\n[[a.b]]\ny = 2\n"
    source = TomlSource(text)
    assert source.line_of(("a", 0, "b", 1, "x")) == 4
    assert source.line_of(("a", 1, "b", 0)) == 6
    assert source.line_of(("a", 1, "b", 0, "y")) == 7


def test_crlf_and_tricky_strings() -> None:
    """CRLF line ends, escaped quotes and `""" "` closers do not confuse the count." ""
    text = 'a = "say \\"[[jobs]]\\""\r\nb = """x""""\r\n[[jobs]]\r\nid = \'q\'\r\n'
    assert tomllib.loads(text)["b"] == 'x"'
    source = TomlSource(text)
    assert source.line_of(("b",)) == 2
    assert source.line_of(("jobs", 0, "id")) == 4


def test_quotes_in_comments_open_no_string() -> None:
    """Quotes (even three) inside a comment do not swallow the following lines."""
    triple = "'" * 3
    text = f"a = 1 # it's {triple}\n[[jobs]] # {triple}\nid = 'x' # '\nb = [1, # ]\n  2]\n"
    assert tomllib.loads(text)["jobs"][0]["b"] == [1, 2]
    source = TomlSource(text)
    assert source.line_of(("jobs", 0)) == 2
    assert source.line_of(("jobs", 0, "id")) == 3
    assert source.line_of(("jobs", 0, "b", 1)) == 5


def test_format_path() -> None:
    """Key paths print as `jobs[2].approvals."q 1"`."""
    path: KeyPath = ("jobs", 2, "approvals", "user_input", "q 1")
    assert format_path(path) == 'jobs[2].approvals.user_input."q 1"'
    assert format_path(()) == ""


_keys = st.text(st.sampled_from("ab-_ .\"'="), min_size=1, max_size=4)
_scalars = st.one_of(st.integers(), st.booleans(), st.text(max_size=5), st.floats(allow_nan=False))
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_keys, inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
@pytest.mark.fault(
    "config",
    "any text to the TOML line locator (hypothesis)",
    "never raises; every lookup gives a line number",
)
def test_never_raises_on_any_text(text: str) -> None:
    """Whatever the text, the scanner returns a mapping and every lookup a line number."""
    source = TomlSource(text)
    assert source.line_of(("jobs", 0, "id")) >= 1


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(_keys, _values, max_size=4))
def test_every_top_level_key_of_valid_toml_is_found(data: dict[str, object]) -> None:
    """For TOML we write ourselves (one key per line), each top-level key maps to its line."""
    lines = [f"{_toml_key(key)} = {_toml_value(value)}" for key, value in data.items()]
    text = "\n".join(lines) + "\n"
    assert tomllib.loads(text) == data
    source = TomlSource(text)
    for number, key in enumerate(data, start=1):
        assert source.line_of((key,)) == number


def _toml_key(key: str) -> str:
    return '"' + key.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        escaped = "".join(
            c if c.isprintable() and c not in '"\\' else f"\\U{ord(c):08x}" for c in value
        )
        return f'"{escaped}"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    assert isinstance(value, dict)
    return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"
