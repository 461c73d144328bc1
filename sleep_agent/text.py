"""Text as a matcher should see it: one Unicode form, one case, one kind of space.

For comparing what people typed: forgetting by a piece of text finds "My PIN" from "my  pin".
(The critic's patterns do not use it yet: they change only after a new blind case set is measured.)
"""

from __future__ import annotations

import re
import unicodedata

_SPACE = re.compile(r"\s+")
# Zero-width characters that render as nothing but split a word for a matcher.
_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad"))


def fold(text: str) -> str:
    """NFKC, case-folded, invisible characters dropped, every run of whitespace one space, trimmed."""
    text = unicodedata.normalize("NFKC", text).translate(_INVISIBLE).casefold()
    return _SPACE.sub(" ", text).strip()
