"""Multi-turn: when the latest user turn is a follow-up, earlier turns vote.

"and in Rust?" after a code question is code; "what about tomorrow?" after a
weather question is time-sensitive; "make it rhyme" after "write a poem" is
creative. The latest turn alone cannot say so, and the request path must not
embed the earlier turns again, so the earlier turns speak through the cheap
signals and the categories' keyword/pattern hints (and, when the caller has
one, a vector of the earlier turns, scored by the head). Context only counts
when the latest turn looks like a follow-up: short and either opening with a
follow-up cue ("and", "what about", "now", "make it", ...) or leaning on a
pronoun, or so short that it says little by itself. A self-contained short
turn the head is sure of ("thanks!") keeps its own category.
"""

from __future__ import annotations

import re

FOLLOW_UP_MAX_WORDS = 12
VERY_SHORT_WORDS = 4
# Most recent earlier turn first; older turns count less.
TURN_WEIGHTS = (1.0, 0.5, 0.25)

_CUE = re.compile(
    r"^\s*(and|or|but|also|now|then|so|what about|how about|same|again|instead|"
    r"ok(ay)?|can you|could you|please|make it|do it|do that|try|redo|shorter|longer|"
    r"more|another|one more|next|why|in \w+\s*\??\s*$)\b"
    r"|\b(it|that|this|them|those|these|the same|above|previous|instead)\b",
    re.IGNORECASE,
)


def follow_up_weight(text: str) -> float:
    """How much the earlier turns should count for ``text`` (0: not at all)."""
    words = len(text.split())
    if words == 0:
        return 1.0
    if words > FOLLOW_UP_MAX_WORDS:
        return 0.0
    if _CUE.search(text):
        return 1.0
    return 0.5 if words <= VERY_SHORT_WORDS else 0.0
