"""The answer check: whether a completed address starts with a current chain whose names nest
(:func:`chain_problem`, the chain part of generate's answer_problem). An answer passes when it is one of its own
candidates (:func:`.candidates.completion_candidates`) and its detail does not start with a division that
contradicts the chain.
"""

from __future__ import annotations

import unicodedata
from typing import Optional

from .candidates import completion_candidates
from .divisions import AdminChain, Division
from .normalize import _skip_between_names
from .parser import _WORDS_AFTER_SHORT, Gazetteer, load_gazetteer


def chain_problem(address: str, gazetteer: Optional["Gazetteer"] = None) -> Optional[str]:
    """Whether ``address`` starts with a current chain written in full: None when it does, else "not_current" or
    "not_nesting".

    "not_current": the address is not one of its own candidates (:func:`completion_candidates`, verbatim) — it
    does not start with an existing chain, province first, every name in its current full form (a former name
    江干区, a short name 西安, a typo 杭洲, traditional characters or a missing province are rewritten by the
    candidates, so the address is not among them). "not_nesting": it is, but the chain's names contradict each
    other (a reading marked conflict), or the detail starts with the full name of a province, city or county
    that is neither the chain's division nor above or below it (山西省 + 西安市雁塔区…: the run stopped where the
    names stopped nesting). A town after a complete chain is the user's detail (a town since merged away stays
    as written), and so is everything after a name the chain already holds (a repeated run).
    """
    gazetteer = gazetteer or load_gazetteer()
    text = address.strip()
    same = [c for c in completion_candidates(text, gazetteer, detail="verbatim") if c.text == text]
    if not same:
        return "not_current"
    if "conflict" in same[0].evidence:
        return "not_nesting"
    deepest = same[0].chain.deepest
    detail = "".join(unicodedata.normalize("NFKC", same[0].detail).split())
    start = _skip_between_names(detail, 0)
    for length in range(min(gazetteer._max_key, len(detail) - start), 1, -1):
        key = detail[start:start + length]
        if detail.startswith(_WORDS_AFTER_SHORT, start + length - 1):  # 南京市场: 市场 is a word of the detail
            continue
        named = [e.division for e in gazetteer._index.get(key, ()) if e.kind != "short" and e.division.level <= 3]
        if named:
            related = any(d.code == deepest.code or d.code in gazetteer._ancestors[deepest.code]
                          or deepest.code in gazetteer._ancestors[d.code] for d in named)
            if related or _word_after_complete_chain(same[0].chain, named, gazetteer):
                return None
            return "not_nesting"
    return None


def _word_after_complete_chain(chain: AdminChain, named: list[Division], gazetteer: "Gazetteer") -> bool:
    """Whether county-level names ``named``, read right after ``chain``, are a word of the detail rather than a
    contradiction: the chain is complete (a county or a town) and none of them lies in its city (its province for
    a municipality). 城区, 郊区, 矿区, 新城区, 市中区 are counties somewhere but common words of a detail
    (顺德区北滘镇新城区人昌路, 碑林区矿区路1号); a county of the same city (碑林区雁塔区, 北京市朝阳区海淀区) is a
    second county written after the first, which no current chain holds."""
    if chain.county is None and chain.town is None:
        return False  # 山西省 + 西安市雁塔区: the run stopped where the names stopped nesting
    home = chain.city or chain.province
    return all(d.level == 3 and home.code not in gazetteer._ancestors[d.code] for d in named)
