"""Size caps on stored and displayed text.

A model can write megabytes in one turn; kept whole, that text bloats the episode records and the
HTML report. `clip_text` keeps the start of a long text and appends a visible marker with the
original length, so a reader sees that (and how much) text was cut.

>>> clip_text("abcdefgh", 3)
'abc … [truncated: 8 characters in all, the first 3 kept]'
>>> clip_text("short", 10), clip_text("anything", None)
('short', 'anything')
"""

from __future__ import annotations

from baorl.config import check_positive_int

__all__ = ["MAX_TURN_CHARS", "MAX_REPORT_CHARS", "clip_text", "check_limit"]

#: most characters kept per text field of a turn (content, think, feedback) in the records of text-level
#: agents (``scripted:``, ``openai:``); ``hf:`` agents are bounded by their token budgets instead
MAX_TURN_CHARS = 32_000
#: most characters of each turn's text field that the HTML report embeds (the records keep it all)
MAX_REPORT_CHARS = 10_000


def check_limit(limit: int | None, name: str) -> int | None:
    """`limit` if it is None or an integer >= 1, else a ValueError naming `name`."""
    return check_positive_int(limit, name, optional="no cap")


def clip_text(text: str, limit: int | None) -> str:
    """`text` cut to its first `limit` characters plus a marker giving the original length (None: no cap)."""
    if limit is None or len(text) <= limit:
        return text
    return f"{text[:limit]} … [truncated: {len(text):,} characters in all, the first {limit:,} kept]"
