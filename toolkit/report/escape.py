"""Making user-controlled strings safe to put into a report: Markdown, HTML, XML and plain CLI lines.

Artifact paths, file names, attack and candidate names, metric names and anything read from a baseline report
are chosen by whoever made the files, not by us. Put into a report verbatim, a name with a newline and ``##``
starts a forged Markdown heading, ``<!--`` hides the rest of a page, a control character makes JUnit XML
ill-formed, and a non-UTF-8 file name (decoded with ``surrogateescape``) cannot even be encoded. Every writer
therefore passes such strings through one of these functions:

* :func:`printable` - one line of valid, printable Unicode (also valid in XML 1.0): the base of the others,
  and what the CLI prints;
* :func:`md_text` / :func:`md_code` - inline Markdown text / a code span; :func:`md_fence` - a fenced block;
* :func:`esc` - HTML text or attribute value (``html.escape`` of :func:`printable`).

Escapes are for display only: report.json keeps the exact strings.
"""

from __future__ import annotations

import html
import re

#: The named escapes :func:`printable` writes (the rest become ``\\xNN``, ``\\uNNNN`` or ``\\UNNNNNNNN``).
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape_char(c: str) -> str:
    if c in _NAMED:
        return _NAMED[c]
    n = ord(c)
    if 0xDC80 <= n <= 0xDCFF:  # a byte of a non-UTF-8 file name, decoded with surrogateescape: show the byte
        return f"\\x{n - 0xDC00:02x}"
    if n < 0x100:
        return f"\\x{n:02x}"
    return f"\\u{n:04x}" if n < 0x10000 else f"\\U{n:08x}"


def printable(value, keep_newlines: bool = False) -> str:
    """``str(value)`` with every non-printable character written as a Python-style escape (``\\n``, ``\\x00``,
    ``\\xff`` for a non-UTF-8 byte, ``\\u202e``).

    Contract: the result holds no control, format (bidi overrides), separator, surrogate, private-use or
    unassigned character except plain spaces (and, with ``keep_newlines``, ``\\n``), so it is one line of
    valid UTF-8 and of valid XML 1.0 characters. ``None`` gives ``"None"``; a backslash is kept as is (the
    result is for reading, not for parsing back).
    """
    s = value if isinstance(value, str) else str(value)
    if s.isprintable():  # the common case: nothing to do
        return s
    return "".join(c if c.isprintable() or (keep_newlines and c == "\n") else _escape_char(c) for c in s)


# --------------------------------------------------------------------------------------------- Markdown
#: Characters that start inline Markdown (emphasis, code, links, images, raw HTML, entities, strike-through,
#: GitHub math, footnotes) or a block when at the start of a line; a backslash makes each literal.
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()<>#+!~&$^])")


def md_text(value) -> str:
    """``value`` as literal inline Markdown text: :func:`printable` (so one line), then every character that
    could start Markdown or HTML backslash-escaped. ``|`` is left to :func:`toolkit.report.markdown.table`,
    which escapes it in every cell (outside a table a ``|`` on one line is plain text)."""
    return _MD_SPECIAL.sub(r"\\\1", printable(value))


def md_code(value) -> str:
    """``value`` as one Markdown code span that nothing inside can close or break.

    The delimiter is one backtick longer than the longest backtick run in the text, padded with a space where
    the text starts or ends with a backtick or space (CommonMark strips one such space); the text is
    :func:`printable`, so a newline cannot end the line. Inside a code span nothing else is interpreted
    (``<!--``, ``#``, ``*`` are literal); inside a table, ``table`` escapes ``|``."""
    s = printable(value)
    if not s:
        return "` `"
    fence = "`" * (max((len(r) for r in re.findall(r"`+", s)), default=0) + 1)
    pad = " " if s[0] in "` " or s[-1] in "` " else ""
    return f"{fence}{pad}{s}{pad}{fence}"


def md_fence(text: str, info: str = "") -> list[str]:
    """Lines of a fenced code block holding ``text`` (newlines kept, every line :func:`printable`): the fence
    is longer than any backtick run in ``text``, so no line inside can close it."""
    lines = [printable(line) for line in str(text).split("\n")]
    run = max((len(r) for r in re.findall(r"`+", "\n".join(lines))), default=0)
    fence = "`" * max(3, run + 1)
    return [f"{fence}{info}", *lines, fence]


# --------------------------------------------------------------------------------------------- HTML
def esc(value) -> str:
    """HTML text or attribute value: ``"-"`` for None, else ``html.escape`` (quotes too) of :func:`printable`."""
    return html.escape("-" if value is None else printable(value), quote=True)


def esc_block(text) -> str:
    """HTML for a ``<pre>`` block: like :func:`esc`, but newlines are kept."""
    return html.escape(printable(text, keep_newlines=True), quote=True)
