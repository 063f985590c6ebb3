"""When a predicted address is the target: the comparison training's exact-match evaluation and ``evaluate`` share
(library layer, so the train stage need not import the evaluate stage)."""

from __future__ import annotations

import unicodedata

# Characters NFKC keeps that still make two addresses look different to a reader but not to a person.
INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff"))


def normalize_text(text: str | None) -> str:
    """Canonical form for comparison: NFKC (full-width -> half-width), no whitespace, no zero-width marks."""
    if not text:
        return ""
    return "".join(unicodedata.normalize("NFKC", text).translate(INVISIBLE).split())


def exact_match(prediction: str | None, target: str | None) -> bool:
    """True when the two addresses are equal after :func:`normalize_text`."""
    return normalize_text(prediction) == normalize_text(target)
