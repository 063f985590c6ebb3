"""The detail of an address: what follows its run of division names, and how a candidate keeps it.

:data:`DETAILS` are the two ways (the ``detail`` setting of prepare, train, predict, serve and evaluate);
:func:`_written_detail` reads the verbatim one from the address as written, :func:`_verbatim_tail` gives the
folded one back its inner spaces. :mod:`.candidates` calls them once it knows where the run of names ends.
"""

from __future__ import annotations

import unicodedata

from .normalize import _BRACKET_PAIRS

# How the detail after the division names is kept (the ``detail`` setting of prepare, train, predict, serve and
# evaluate). verbatim (default): every character written after the run of division names the chain was read
# from, unchanged — a repeated run after a complete chain, separators, spaces, brackets, full-width characters.
# clean: the earlier folding — repeated division names read into the chain, leading separators, spaces and empty
# bracket pairs dropped, NFKC (full-width digits become ASCII).
DETAILS = ("verbatim", "clean")
DEFAULT_DETAIL = "verbatim"


def check_detail(detail: str) -> str:
    """``detail`` itself, or ValueError naming the allowed values (:data:`DETAILS`)."""
    if detail not in DETAILS:
        raise ValueError(f"detail must be one of {', '.join(DETAILS)}, got {detail!r}")
    return detail


def _verbatim_tail(address: str, detail: str) -> str:
    """The end of ``address`` (NFKC, inner spaces kept: "Room 502") whose non-space characters are ``detail``."""
    text = unicodedata.normalize("NFKC", address).rstrip()
    seen = 0
    for position in range(len(text) - 1, -1, -1):
        seen += not text[position].isspace()
        if seen == len(detail):
            tail = text[position:]
            return tail if "".join(tail.split()) == detail else detail
    return detail


def _nfkc(text: str) -> str:
    return unicodedata.normalize("NFKC", text)


def _written_detail(address: str, written: str, end: int) -> str:
    """Verbatim detail: the characters of ``address`` after the run of division names that ends at ``end`` of
    ``written`` (its normalized form, :func:`normalize_address`), unchanged — separators, spaces, brackets,
    full-width and traditional characters included; the address's outer whitespace is not part of it.

    One exception keeps bracket pairs whole: a closing bracket whose opening one stood before the detail (inside
    the run, 西安市(碑林区)1号, or in front of the whole address, (北京市朝阳区建国路88号)) belongs with it, not to
    the detail — at the detail's start or at its end. Positions map through per-character NFKC; where that
    disagrees with the whole string's NFKC (combining marks), the normalized detail is returned."""
    text = address.strip()
    wanted = written[end:]
    position, seen = len(text), 0
    while position > 0 and seen < len(wanted):
        position -= 1
        seen += len("".join(_nfkc(text[position]).split()))
    if wanted:
        while position > 0 and text[position - 1].isspace():  # spaces between the names and the detail
            position -= 1
    tail = text[position:] if wanted else ""
    if "".join(_nfkc(tail).split()) != wanted:
        return wanted
    run = _nfkc(text[:position])
    opened = {opener: run.count(opener) - run.count(closer) for closer, opener in _BRACKET_PAIRS.items()}
    while tail.strip() and _nfkc(tail.lstrip()[0]) in _BRACKET_PAIRS and opened[_BRACKET_PAIRS[
            _nfkc(tail.lstrip()[0])]] > 0:
        opened[_BRACKET_PAIRS[_nfkc(tail.lstrip()[0])]] -= 1
        tail = tail.lstrip()[1:]
    while tail and _nfkc(tail[-1]) in _BRACKET_PAIRS and (
            _nfkc(tail).count(_BRACKET_PAIRS[_nfkc(tail[-1])]) < _nfkc(tail).count(_nfkc(tail[-1]))):
        tail = tail[:-1].rstrip()
    return tail
