"""Text as a matcher should see it: one Unicode form, one case, one kind of space.

For comparing what people typed: forgetting by a piece of text finds "My PIN" from "my  pin", and
the critic's patterns see "ｆｒｏｍ ｎｏｗ ｏｎ", "rem\u200bember" and a Cyrillic "Rеmember" as the
words they spell.
"""

from __future__ import annotations

import re
import unicodedata

_SPACE = re.compile(r"\s+")
# Zero-width characters that render as nothing but split a word for a matcher.
_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad"))
_HORIZONTAL_SPACE = re.compile(r"[^\S\n]+")
# Letters of other scripts drawn like Latin ones, which a writer mixes into a word to hide it from
# a matcher. A short table by hand: Unicode's confusables list has thousands of entries, nearly all
# of symbols no one types into a chat, and no well-kept library of it installs offline here.
_LOOK_ALIKES = str.maketrans(
    "аеіјорсухѕԁԛԝёАВЕІЈКМНОРСТУХЅαεικνορτυχΑΒΕΖΗΙΚΜΝΟΡΤΥΧ",
    "aeijopcyxsdqweABEIJKMHOPCTYXSaeikvoptuxABEZHIKMNOPTYX",
)
# Drawn as nothing, or as a mark on the letter before: format characters (zero-width, direction,
# tags), combining and enclosing marks, variation selectors, and the Hangul fillers.
_UNSEEN_CATEGORIES = frozenset({"Cf", "Mn", "Me"})
_FILLERS = frozenset("\u115f\u1160\u3164\uffa0")


def plain(text: str) -> str:
    """Compatibility forms decomposed (NFKD) and every mark and character drawn as nothing dropped,
    so accents go too ("mémorise" reads "memorise", and "Reme\u0301mber" "Remember"); look-alike
    letters of other scripts as Latin; runs of spaces as one; lines kept (patterns may look for a
    line's start)."""
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if c not in _FILLERS and unicodedata.category(c) not in _UNSEEN_CATEGORIES)
    return _HORIZONTAL_SPACE.sub(" ", text.translate(_LOOK_ALIKES))


def fold(text: str) -> str:
    """NFKC, case-folded, invisible characters dropped, every run of whitespace one space, trimmed."""
    text = unicodedata.normalize("NFKC", text).translate(_INVISIBLE).casefold()
    return _SPACE.sub(" ", text).strip()
