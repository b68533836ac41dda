"""Text from outside (a model's metadata, a data file's fields, a path) made safe to print as
prose; --json output and rows are data and stay exact."""

import re

# C0 and C1 controls (ESC starts the terminal's escape sequences; CR and erase-line
# overwrite a line), DEL, the bidirectional overrides that reorder what is shown, and lone
# surrogates (a file name that is not UTF-8), which a strict UTF-8 stream cannot encode.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
VALUE_LIMIT = 200  # characters of one value shown (inspect's metadata, a data source)
LINE_LIMIT = 2000  # characters of one message line


def printable(value: object, limit: int = VALUE_LIMIT) -> str:
    """`value` as one line of text, every control character escaped as Python writes it (\\n,
    \\x1b, \\u202e, \\udcff), cut beyond `limit` characters with a note of how many more."""
    text = str(value)
    note = ""
    if len(text) > limit:
        text, note = text[:limit], f"... ({len(text) - limit:,} more characters)"
    return _UNSAFE.sub(lambda m: m[0].encode("unicode_escape", "surrogatepass").decode("ascii"), text) + note


def printable_lines(text: str) -> str:
    """Each line of `text` through printable(), for messages of several lines (a report's table)."""
    return "\n".join(printable(line, LINE_LIMIT) for line in str(text).split("\n"))
