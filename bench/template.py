"""The report's prose: the named fragments of bench/report.md.tmpl, filled in.

In the file, a line `<!-- name -->` opens a fragment, which runs to the next such line (the
blank lines around it are not part of it). Prose is wrapped there for reading and unwrapped
here: the lines of a paragraph are joined with spaces, except in a table or a list (a
paragraph whose first line starts with `|` or `- `), whose lines stay lines. Then `$name`
and `${name}` are filled in with `string.Template` (`$$` is a dollar sign; a name not given
is an error). A placeholder that stands alone in its paragraph and is given "" drops the
paragraph: that is how an optional paragraph is left out.
"""

from __future__ import annotations

import functools
import re
import string

from settings import BENCH

TEMPLATE = BENCH / "report.md.tmpl"
_OPENING = re.compile(r"^<!-- ([a-z_]+) -->\n", re.MULTILINE)
_LONE_PLACEHOLDER = re.compile(r"\$\{?[a-z_]+\}?")


def fill(name: str, **values: object) -> str:
    """The fragment with its placeholders filled in."""
    filled = []
    for paragraph in _fragments()[name]:
        text = paragraph.substitute(values)
        if text or not _LONE_PLACEHOLDER.fullmatch(paragraph.template):
            filled.append(text)
    return "\n\n".join(filled)


@functools.cache
def _fragments() -> dict[str, list[string.Template]]:
    """Every fragment of the file, paragraph by paragraph, unwrapped; what stands before the
    first fragment is a comment."""
    parts = _OPENING.split(TEMPLATE.read_text())
    names, bodies = parts[1::2], parts[2::2]
    return {
        name: [string.Template(_unwrap(p)) for p in body.strip("\n").split("\n\n")]
        for name, body in zip(names, bodies, strict=True)
    }


def _unwrap(paragraph: str) -> str:
    """A paragraph on one line, but a table or a list."""
    if paragraph.startswith(("|", "- ")):
        return paragraph
    return paragraph.replace("\n", " ")
