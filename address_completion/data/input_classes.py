"""The kind of an address input, for training-data summaries and evaluation breakdowns: written in full, a
unique or an ambiguous county-level name, starting at a town, or no division at all (:func:`input_class`).

Library layer: the gazetteer's parser and candidates only; used by ``prepare`` (data.prepare) and ``evaluate``
(evaluation.metrics).
"""

from __future__ import annotations

from .gazetteer import AdminChain, Division, Gazetteer, ParsedAddress, completion_candidates, normalize_address

# Every class input_class returns, in the order prepare's summary lists them (reports: metrics.INPUT_CLASSES).
INPUT_CLASSES = ("already_full", "unique_county", "ambiguous_county", "town_first", "no_admin_token")


def chain_levels(chain: AdminChain) -> list[Division]:
    """The divisions of a chain from province down, without the missing levels."""
    return [level for level in (chain.province, chain.city, chain.county, chain.town) if level is not None]


def inside(chain: AdminChain, ancestor: Division) -> bool:
    """True when ``chain`` ends strictly below ``ancestor``."""
    return chain.deepest.code != ancestor.code and any(level.code == ancestor.code for level in chain_levels(chain))


CLASS_SEPARATORS = " ,，、-"
TYPO_SKIP_LIMIT = 12  # longest misspelled token input_class steps over (红和哈尼族彝族自治州 …)


def _admin_part(address: str, rest: str) -> str:
    end = address.rfind(rest) if rest else -1  # parse drops a closing bracket after rest: 西安市(碑林区1号)
    return address[:end] if end >= 0 else address


def _reaches_county(chain: AdminChain | None) -> bool:
    return chain is not None and (chain.county is not None or chain.town is not None)


def _parse_over_typo(gazetteer: Gazetteer, address: str) -> ParsedAddress:
    """Parse, stepping over one unknown token (a typo such as 杭洲) where the parser stopped.

    The parser stops at the first text it does not know, so 衫西闻喜县… would look like an address
    without divisions; skipping the few characters of the slip reads on as the model should.
    """
    parsed = gazetteer.parse(address)
    if _reaches_county(parsed.chain) or not parsed.rest:
        return parsed
    admin = _admin_part(address, parsed.rest)
    for skip in range(1, min(TYPO_SKIP_LIMIT, len(parsed.rest)) + 1):
        retry = gazetteer.parse(admin + parsed.rest[skip:])
        below = parsed.chain is None or (retry.chain is not None and inside(retry.chain, parsed.chain.deepest))
        if _reaches_county(retry.chain) and below:
            return retry
    return parsed


def input_class(address: str, gazetteer: Gazetteer) -> str:
    """What kind of input a bare ``address`` (prompt prefix stripped) is, for evaluation breakdowns (one of
    :data:`INPUT_CLASSES`).

    already_full: every level written in full (as the target would be); town_first: the first
    written division is a town; unique_county / ambiguous_county: whether the county-level name is
    unique nationally (an ambiguous one can only be completed from the levels written with it);
    no_admin_token: the gazetteer finds no division. A misspelled division is stepped over.
    Divisions found that do not nest (a town since moved to another county) still class the input by
    the names written: the county (else city, province) decides unique / ambiguous.
    """
    address = normalize_address(address, gazetteer.is_division_text)  # the text parse() reads
    parsed = _parse_over_typo(gazetteer, address)
    chain = parsed.chain
    if chain is None:
        # 朝阳区建国路88号: a division is named but cannot be placed without more context.
        named = parsed.county or parsed.city or parsed.province
        admin = "".join(char for char in _admin_part(address, parsed.rest) if char not in CLASS_SEPARATORS)
        if parsed.province and admin == "".join(parsed.names()):
            return "already_full"
        if named:
            return "ambiguous_county" if len(gazetteer.candidates(named)) > 1 else "unique_county"
        if parsed.town:
            return "town_first"
        # 城关镇人民路1号: a town name many counties share — the candidates list every one of them
        return "ambiguous_county" if len(completion_candidates(address, gazetteer, limit=2)) > 1 else "no_admin_token"
    admin = _admin_part(address, parsed.rest)
    if "".join(char for char in admin if char not in CLASS_SEPARATORS) == chain.text():
        return "already_full"
    first = next((division for division in chain_levels(chain)
                  if any(name in admin for name in [division.name, *gazetteer.short_names(division)])), None)
    if first is not None and first.level == 4:
        return "town_first"
    unit = chain.county or chain.city or chain.province
    codes = {candidate.deepest.code for candidate in gazetteer.candidates(unit.name)}
    return "ambiguous_county" if len(codes) > 1 else "unique_county"
