"""Synthesized (short -> full) pairs: full addresses sampled from the gazetteer, written short as people write them.

The full address is province + city (none for municipalities and province-direct county-level cities) + county
(+ town when the short form names one) + street-level detail (:mod:`.street_detail`), which is copied verbatim.
Short forms are written the way people write addresses: without the province, without province and city, with
the province but without the city, without 省/市/区/县 suffixes, or starting at a nationally unique town; a few
carry noise (separators, a leading 中国, full-width digits, a repeated prefix, a homophone typo). About 10% are
already full and stay unchanged. Every short form is checked against the gazetteer. Most resolve to exactly one
division; a share (``ambiguous_rate``) is written ambiguously where the address allows it, so the model sees
choices in training: synthesized ambiguous inputs carry the town that decides them (policy "evidence").

:func:`make_example` (one full address -> one pair) is also how :mod:`.shortening` writes the user's own and the
POI addresses short; ``prepare``'s command line is :mod:`.prepare`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

from .. import DEFAULT_PROMPT_PREFIX
from ..errors import ConfigError
from .gazetteer import (DEFAULT_DETAIL, AdminChain, Division, Gazetteer, check_detail, completion_candidates,
                        load_gazetteer)
from .input_classes import chain_levels, inside as _inside
from .prompt import with_prefix
from ..progress import progress
from .street_detail import street_detail

DEFAULT_NOISE_RATE = 0.12  # share of shortened inputs that carry at least one kind of noise
DEFAULT_FULL_RATE = 0.10  # share of inputs that are already full (src address == tgt)
DEFAULT_TOWN_RATE = 0.45  # share of synthesized addresses that name a town
SUFFIX_STRIP_RATE = 0.35  # chance that one written level loses its 省/市/区/县 suffix
SECOND_NOISE_RATE = 0.2  # chance that a noisy input gets a second kind of noise
DEFAULT_AMBIGUOUS_RATE = 0.3  # share of shortened inputs written ambiguously where the address allows it
# Which ambiguous inputs are allowed: "evidence" (synthesis) only those whose written names, the town included,
# single out the target; "target" (the user's or POI full addresses) any whose candidates hold the target.
AMBIGUITY_POLICIES = ("evidence", "target")

# Ways of shortening: which administrative levels are written before the detail. A town is always
# written when the full address has one, so a target never holds a level the input did not name.
SHORTENING_WEIGHTS = {
    "drop_province": 0.30,  # 西安市碑林区…
    "county_first": 0.33,  # 碑林区… (province and city dropped)
    "province_county": 0.12,  # 陕西省碑林区… (city dropped)
    "town_first": 0.15,  # 法门镇… (nationally unique town names only)
    "all_levels_short": 0.10,  # 陕西西安碑林区… (every level, suffixes stripped)
}
FULL_KIND = "full"
KINDS = (FULL_KIND, *SHORTENING_WEIGHTS)

NOISE_WEIGHTS = {
    "separator": 0.35,  # 西安市 碑林区 / 西安市,碑林区 / 西安市-碑林区
    "leading_china": 0.20,  # 中国西安市…
    "fullwidth_digits": 0.20,  # １２号
    "duplicate_prefix": 0.10,  # 陕西省陕西省西安市… / 西安市西安市…
    "homophone_typo": 0.15,  # 杭洲 / 西按
}
SEPARATORS = (" ", " ", ",", "，", "-", "、")


# Common pinyin-input slips: a character and characters read the same way. Applied only to the
# administrative part and only where the rest of the address still resolves without that token.
HOMOPHONES = {
    "州": "洲舟", "安": "按岸", "滨": "宾彬", "厦": "夏", "沈": "审", "郑": "正", "阳": "杨洋",
    "宁": "凝柠", "昌": "常", "林": "琳淋", "京": "经晶", "徽": "辉", "湖": "胡", "河": "和",
    "江": "将", "山": "衫", "海": "嗨", "城": "成程", "华": "化", "南": "楠", "明": "鸣", "平": "苹",
    "兴": "星", "源": "元园", "泉": "全", "福": "富", "春": "纯", "汉": "汗", "庆": "青", "都": "督",
    "沙": "砂", "岳": "越", "桂": "贵", "昆": "坤", "肃": "素", "陕": "闪", "疆": "姜", "武": "五",
    "济": "既", "岛": "导", "津": "金", "苏": "酥", "锡": "西", "邯": "含", "郸": "丹", "保": "宝",
    "定": "订", "原": "园", "德": "得", "龙": "隆", "丰": "峰", "台": "抬", "峰": "锋", "碑": "杯",
}

FULLWIDTH_DIGITS = str.maketrans("0123456789", "０１２３４５６７８９")


@dataclass(frozen=True)
class Example:
    """One pair with how it was made (``kind``, ``noise``) for reporting; files keep src/tgt only."""

    src: str
    tgt: str
    kind: str
    noise: tuple[str, ...]
    chain: AdminChain
    rest: str  # the target's detail (tgt == chain.text() + rest): with verbatim detail, as the input writes it
    written: tuple[str, ...] = ()  # administrative tokens as written, before noise (empty when full)
    # the division names have several readings: the gazetteer lists several candidates ("target"), or only the
    # written town decides ("evidence")
    ambiguous: bool = False

    def record(self) -> dict[str, str]:
        return {"src": self.src, "tgt": self.tgt}


@dataclass(frozen=True)
class Settings:
    """Rates shared by synthesis and shortening."""

    prefix: str = DEFAULT_PROMPT_PREFIX
    noise_rate: float = DEFAULT_NOISE_RATE
    full_rate: float = DEFAULT_FULL_RATE
    detail: str = DEFAULT_DETAIL  # gazetteer.DETAILS: how a target keeps the text after the division names
    ambiguous_rate: float = DEFAULT_AMBIGUOUS_RATE  # share of shortened inputs written ambiguously where allowed
    ambiguity: str = "evidence"  # AMBIGUITY_POLICIES: what makes an ambiguous input acceptable
    kind_weights: tuple[tuple[str, float], ...] = tuple(SHORTENING_WEIGHTS.items())  # relative share of each kind

    def __post_init__(self) -> None:
        try:
            check_detail(self.detail)
        except ValueError as error:
            raise ConfigError(str(error)) from None
        for name in ("noise_rate", "full_rate", "ambiguous_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"{name} must be between 0 and 1, got {value}")
        if self.ambiguity not in AMBIGUITY_POLICIES:
            raise ConfigError(f"ambiguity must be one of {', '.join(AMBIGUITY_POLICIES)}, got {self.ambiguity!r}")
        weights = dict(self.kind_weights)
        unknown = sorted(set(weights) - set(SHORTENING_WEIGHTS))
        if unknown:
            raise ConfigError(f"unknown shortening kind {unknown[0]!r} in the kind weights; expected some of "
                              f"{', '.join(SHORTENING_WEIGHTS)}")
        if any(not 0.0 <= value < float("inf") for value in weights.values()) or not sum(weights.values()) > 0:
            raise ConfigError(f"kind weights must be non-negative numbers, at least one above 0; got "
                              f"{format_kind_weights(self.kind_weights)}")


def parse_kind_weights(text: str) -> tuple[tuple[str, float], ...]:
    """``"county_first=2,drop_province=1"`` -> weights of the listed shortening kinds (the others 0); ConfigError
    naming the bad part. The weights are relative: 2 and 1 give two thirds and one third of the shortened inputs."""
    weights = {}
    for part in (part.strip() for part in text.split(",")):
        name, equals, value = part.partition("=")
        try:
            weights[name.strip()] = float(value) if equals else float("nan")
        except ValueError:
            weights[name.strip()] = float("nan")
        if not equals or weights[name.strip()] != weights[name.strip()]:
            raise ConfigError(f"--kind-weights: {part!r} is not KIND=WEIGHT; expected e.g. "
                              f"county_first=2,drop_province=1 with kinds among {', '.join(SHORTENING_WEIGHTS)}")
    return tuple(weights.items())


def format_kind_weights(weights: Sequence[tuple[str, float]]) -> str:
    return ",".join(f"{name}={value:g}" for name, value in weights)


def default_gazetteer(gazetteer: Gazetteer | None) -> Gazetteer:
    """``gazetteer``, or the bundled one when None."""
    return gazetteer if gazetteer is not None else load_gazetteer()


# ------------------------------------------------------------------ chain helpers


def resolves_uniquely(gazetteer: Gazetteer, tokens: Sequence[str], target: Division) -> bool:
    """Whether the written administrative tokens, read left to right, single out ``target``.

    The first token must have exactly one candidate nationally; each later token exactly one
    candidate below the division read so far. This is what keeps 朝阳区 from standing alone
    (two candidates) while 北京朝阳区 and 长春市朝阳区 pass.
    """
    context = None
    for token in tokens:
        found = {chain.deepest.code: chain.deepest for chain in gazetteer.candidates(token)
                 if context is None or _inside(chain, context)}
        if len(found) != 1:
            return False
        context = next(iter(found.values()))
    return context is not None and context.code == target.code


# ------------------------------------------------------------------ sampling full addresses


class _Strata:
    """County-level units per province (stable code order) and their towns."""

    def __init__(self, gazetteer: Gazetteer):
        self.units: dict[str, list[Division]] = {}
        self.towns: dict[str, list[Division]] = {}
        self.town_required: dict[str, bool] = {}
        for province in sorted(gazetteer.divisions(1), key=lambda d: d.code):
            self.units[province.code] = list(self._units_below(gazetteer, province))
        # 香港 and 澳门 have no subdivisions in the data: nothing to complete there.
        self.provinces = [p for p in sorted(gazetteer.divisions(1), key=lambda d: d.code) if self.units[p.code]]
        # Counties whose name or a short name means several divisions, with towns to decide between them: where
        # synthesis finds its ambiguous inputs (朝阳区 + a town of 北京's 朝阳区).
        self.ambiguous_units = [unit for units in self.units.values() for unit in units
                                if unit.level == 3 and self.towns[unit.code] and any(
                                    len(gazetteer.candidates(name)) > 1
                                    for name in [unit.name, *gazetteer.short_names(unit)])]

    def _units_below(self, gazetteer: Gazetteer, province: Division) -> Iterator[Division]:
        """County-level units: counties, province-direct cities (仙桃), cities without districts (东莞)."""
        for child in self._sorted_children(gazetteer, province):
            if child.level == 3:
                yield self._unit(gazetteer, child, town_required=False)
            elif child.level == 2:
                grandchildren = self._sorted_children(gazetteer, child)
                counties = [d for d in grandchildren if d.level == 3]
                for county in counties:
                    yield self._unit(gazetteer, county, town_required=False)
                if any(d.level == 4 for d in grandchildren):
                    # Towns right under a prefecture (东莞, or 大兴安岭's towns beside its counties):
                    # where the prefecture also has counties, naming only it would be incomplete.
                    yield self._unit(gazetteer, child, town_required=bool(counties))

    @staticmethod
    def _sorted_children(gazetteer: Gazetteer, division: Division) -> list[Division]:
        return sorted(gazetteer.children(division), key=lambda d: d.code)

    def _unit(self, gazetteer: Gazetteer, division: Division, town_required: bool) -> Division:
        self.towns[division.code] = [d for d in self._sorted_children(gazetteer, division) if d.level == 4]
        self.town_required[division.code] = town_required and bool(self.towns[division.code])
        return division


def _province_cycle(rng: random.Random, provinces: list[Division]) -> Iterator[Division]:
    """Every province once per round, in a fresh order each round (coverage for moderate n)."""
    while True:
        order = list(provinces)
        rng.shuffle(order)
        yield from order


def _sample_full(rng: random.Random, gazetteer: Gazetteer, strata: _Strata, province: Division | None,
                 town_rate: float) -> tuple[AdminChain, str] | None:
    """A (chain, rest) whose full text the gazetteer parses back to the same chain and rest. Without a
    province: a county with an ambiguous name, with one of its towns (material for an ambiguous input)."""
    unit = rng.choice(strata.units[province.code] if province is not None else strata.ambiguous_units)
    towns = strata.towns[unit.code]
    with_town = towns and (province is None or strata.town_required[unit.code] or rng.random() < town_rate)
    chain = gazetteer.chain_for(rng.choice(towns) if with_town else unit)
    for _ in range(5):
        rest = street_detail(rng, chain)
        if _parses_back(gazetteer, chain.text() + rest, chain, rest):
            return chain, rest
    return None


def _parses_back(gazetteer: Gazetteer, address: str, chain: AdminChain, rest: str) -> bool:
    parsed = gazetteer.parse(address)
    return (parsed.chain is not None and parsed.valid_chain and parsed.chain.deepest.code == chain.deepest.code
            and parsed.rest == rest)


# ------------------------------------------------------------------ shortening


def _written_levels(kind: str, chain: AdminChain, gazetteer: Gazetteer) -> list[Division] | None:
    """Divisions written by a shortening kind, or None when the kind does not apply to the chain."""
    levels = chain_levels(chain)
    town = [chain.town] if chain.town is not None else []
    if kind == "drop_province":
        return levels[1:] if chain.city is not None else None
    if kind == "county_first":
        return [chain.county, *town] if chain.county is not None else None
    if kind == "province_county":
        return [chain.province, chain.county, *town] if chain.city is not None and chain.county is not None else None
    if kind == "town_first":
        unique = chain.town is not None and gazetteer.name_count(chain.town.name, level=4) == 1
        return [chain.town] if unique else None
    if kind == "all_levels_short":
        return levels
    raise ValueError(f"unknown shortening kind {kind!r}")


def _written_forms(rng: random.Random, gazetteer: Gazetteer, levels: list[Division], force_short: bool
                   ) -> list[str] | None:
    """Names as written: each level above the town may lose its suffix (unambiguous short forms only)."""
    forms = []
    for division in levels:
        shorts = gazetteer.short_names(division) if division.level < 4 else []
        if shorts and (force_short or rng.random() < SUFFIX_STRIP_RATE):
            forms.append(rng.choice(sorted(shorts)))
        else:
            forms.append(division.name)
    if force_short and forms == [division.name for division in levels]:
        return None
    return forms


def _short_form_ok(gazetteer: Gazetteer, forms: list[str], chain: AdminChain, rest: str) -> bool:
    # the rest the parser reads from the full address: a user's verbatim rest may hold separators or a repeated run
    parsed_rest = gazetteer.parse(chain.text() + rest).rest
    return (resolves_uniquely(gazetteer, forms, chain.deepest)
            and _parses_back(gazetteer, "".join(forms) + rest, chain, parsed_rest))


def determined(gazetteer: Gazetteer, tokens: Sequence[str], target: Division) -> bool:
    """Whether the written tokens together single out ``target``, although a token alone may not.

    Each token keeps only its readings below a reading of the tokens before it: 朝阳区 has two readings,
    and 建国门外街道 after it keeps only 北京's. Unlike :func:`resolves_uniquely`, an early ambiguous token is fine
    as long as a later one decides.
    """
    context: list[Division] | None = None
    for token in tokens:
        found = {chain.deepest.code: chain.deepest for chain in gazetteer.candidates(token)
                 if context is None or any(_inside(chain, above) for above in context)}
        if not found:
            return False
        context = list(found.values())
    return context is not None and len(context) == 1 and context[0].code == target.code


def _readings(gazetteer: Gazetteer, text: str, chain: AdminChain) -> int:
    """How many candidates the gazetteer lists for ``text`` when ``chain`` is one of them, else 0."""
    candidates = completion_candidates(text, gazetteer)
    return len(candidates) if any(c.chain.deepest.code == chain.deepest.code for c in candidates) else 0


def _form_variants(rng: random.Random, gazetteer: Gazetteer, levels: list[Division], kind: str) -> list[list[str]]:
    """Ways to write ``levels``: full names, the county short, every level short (as the kind allows), shuffled."""
    full = [division.name for division in levels]
    shortened = [(gazetteer.short_names(division) or [division.name])[0] if division.level < 4 else division.name
                 for division in levels]
    county_short = [(gazetteer.short_names(division) or [division.name])[0] if division.level == 3 else division.name
                    for division in levels]
    variants = [shortened] if kind == "all_levels_short" else [full, county_short, shortened]
    unique = [list(forms) for forms in dict.fromkeys(tuple(forms) for forms in variants)]
    rng.shuffle(unique)
    return unique


def _ambiguous_shortening(rng: random.Random, gazetteer: Gazetteer, chain: AdminChain, rest: str,
                          weights: dict[str, float], policy: str) -> tuple[str, list[Division], list[str]] | None:
    """A shortening whose division names have several readings but is acceptable under ``policy``, or None.

    "target": the gazetteer lists two or more candidates, the target among them (朝阳区建国路88号). "evidence":
    the names above the town have several readings and the written town decides (鼓楼洪山镇…: only 福州's 鼓楼区
    has a 洪山镇), the target among the candidates. See :data:`AMBIGUITY_POLICIES`.
    """
    weights = {kind: weight for kind, weight in weights.items() if kind != "town_first" and weight > 0}
    if policy == "evidence" and chain.town is None:
        return None  # no town to decide it
    while weights:
        kind = _weighted_choice(rng, weights)
        del weights[kind]
        levels = _written_levels(kind, chain, gazetteer)
        if levels is None:
            continue
        for forms in _form_variants(rng, gazetteer, levels, kind):
            if resolves_uniquely(gazetteer, forms, chain.deepest):
                continue  # every name singles out one division: not ambiguous
            if policy == "evidence":
                unit = chain.county or chain.city or chain.province
                if (determined(gazetteer, forms[:-1], unit) or not determined(gazetteer, forms, chain.deepest)
                        or not _readings(gazetteer, "".join(forms) + rest, chain)):
                    continue  # the names above the town decide already (海南五指山), or nothing written does
                return kind, levels, forms
            if _readings(gazetteer, "".join(forms) + rest, chain) >= 2:
                return kind, levels, forms
    return None


def _shorten(rng: random.Random, gazetteer: Gazetteer, chain: AdminChain, rest: str, settings: Settings = Settings(),
             ambiguous: bool | None = None) -> tuple[str, list[Division], list[str] | None, bool]:
    """Pick a shortening kind and written forms: on an ``ambiguous_rate`` share an ambiguous one the policy
    accepts (when the address has one), else forms that still resolve to exactly ``chain``.

    Returns (kind, written divisions, their written forms, ambiguous); forms is None for the already-full kind.
    Kinds that do not apply or do not resolve uniquely are dropped and another is drawn.
    """
    weights = {kind: weight for kind, weight in settings.kind_weights if weight > 0}
    if ambiguous is None:
        ambiguous = settings.ambiguous_rate > 0 and rng.random() < settings.ambiguous_rate
    if ambiguous:
        found = _ambiguous_shortening(rng, gazetteer, chain, rest, weights, settings.ambiguity)
        if found is not None:
            return (*found, True)
    while weights:
        kind = _weighted_choice(rng, weights)
        del weights[kind]
        levels = _written_levels(kind, chain, gazetteer)
        if levels is None:
            continue
        force_short = kind == "all_levels_short"
        forms = _written_forms(rng, gazetteer, levels, force_short)
        if forms is not None and _short_form_ok(gazetteer, forms, chain, rest):
            return kind, levels, forms, False
        if not force_short:
            full_names = [division.name for division in levels]
            if full_names != forms and _short_form_ok(gazetteer, full_names, chain, rest):
                return kind, levels, full_names, False
    return FULL_KIND, [], None, False


def _weighted_choice(rng: random.Random, weights: dict[str, float]) -> str:
    names = list(weights)
    return rng.choices(names, weights=[weights[name] for name in names])[0]


# ------------------------------------------------------------------ noise


def _misleads(gazetteer: Gazetteer, address: str, chain: AdminChain) -> bool:
    """True when the parser reads ``address`` as some division off ``chain`` (元宝衫区 read as 元宝区)."""
    parsed = gazetteer.parse(address)
    if not parsed.valid_chain:
        return True
    return parsed.chain is not None and parsed.chain.deepest.code not in {d.code for d in chain_levels(chain)}


def _typo_forms(rng: random.Random, gazetteer: Gazetteer, forms: list[str], rest: str, chain: AdminChain
                ) -> list[str] | None:
    """Forms with one homophone slip in a token the other tokens make redundant, or None."""
    positions = list(range(len(forms)))
    rng.shuffle(positions)
    for index in positions:
        others = forms[:index] + forms[index + 1:]
        if not others or not resolves_uniquely(gazetteer, others, chain.deepest):
            continue
        slots = [i for i, char in enumerate(forms[index]) if char in HOMOPHONES]
        if not slots:
            continue
        slot = rng.choice(slots)
        token = forms[index]
        typo = token[:slot] + rng.choice(HOMOPHONES[token[slot]]) + token[slot + 1:]
        slipped = forms[:index] + [typo] + forms[index + 1:]
        if gazetteer.candidates(typo) or _misleads(gazetteer, "".join(slipped) + rest, chain):
            continue  # the slip would name another real place
        return slipped
    return None


def _noise_applies(kind: str, levels: list[Division], rest: str) -> bool:
    if kind == "separator":
        return len(levels) > 1 or bool(rest)
    if kind == "fullwidth_digits":
        return any(char.isdigit() for char in rest)
    if kind == "duplicate_prefix":
        return levels[0].level <= 2  # people repeat a province or city (陕西省陕西省…, 西安市西安市…)
    return True


def _noisy_src(rng: random.Random, gazetteer: Gazetteer, levels: list[Division], forms: list[str], rest: str,
               chain: AdminChain, noise_rate: float) -> tuple[str, tuple[str, ...], str]:
    """The written short address, with noise on a ``noise_rate`` share of inputs, its noise kinds and its detail as
    written (everything after the division names: a separator and full-width digits included)."""
    chosen: list[str] = []
    if rng.random() < noise_rate:
        count = 2 if rng.random() < SECOND_NOISE_RATE else 1
        weights = dict(NOISE_WEIGHTS)
        while weights and len(chosen) < count:
            kind = _weighted_choice(rng, weights)
            del weights[kind]
            if not _noise_applies(kind, levels, rest):
                continue
            if kind == "homophone_typo":
                typo_forms = _typo_forms(rng, gazetteer, forms, rest, chain)
                if typo_forms is None:
                    continue
                forms = typo_forms
            chosen.append(kind)
    if "duplicate_prefix" in chosen:
        forms = [forms[0], *forms]
    separator = rng.choice(SEPARATORS) if "separator" in chosen else ""
    if "fullwidth_digits" in chosen:
        rest = rest.translate(FULLWIDTH_DIGITS)
    written_rest = separator + rest if rest else ""
    text = separator.join(forms) + written_rest
    if "leading_china" in chosen:
        text = "中国" + text
    return text, tuple(sorted(chosen)), written_rest


def progress_bar(total: int, enabled: bool) -> Any:
    """A ``prepare`` progress bar over ``total`` pairs (silent when not ``enabled``); the functions that take it
    have a ``progress`` flag, which hides :func:`..progress.progress`."""
    return progress(total, "prepare", "pair", enabled=enabled)


# ------------------------------------------------------------------ public API


def make_example(rng: random.Random, gazetteer: Gazetteer, chain: AdminChain, rest: str, settings: Settings,
                 ambiguous: bool | None = None) -> Example:
    """One pair for a full address (chain + verbatim rest). With ``settings.detail`` "verbatim" the target keeps
    the input's detail exactly as the input writes it (a separator after the names, full-width digits); "clean"
    folds it to ``rest``. ``ambiguous`` True / False asks for an ambiguous shortening (where the address has one
    the policy accepts) or not; None draws it with ``settings.ambiguous_rate``."""
    tgt = chain.text() + rest
    if rng.random() < settings.full_rate:
        return Example(with_prefix(tgt, settings.prefix), tgt, FULL_KIND, (), chain, rest)
    kind, levels, forms, ambiguous = _shorten(rng, gazetteer, chain, rest, settings, ambiguous)
    if forms is None:
        return Example(with_prefix(tgt, settings.prefix), tgt, FULL_KIND, (), chain, rest)
    short, noise, written_rest = _noisy_src(rng, gazetteer, levels, forms, rest, chain, settings.noise_rate)
    if settings.detail == "verbatim":  # the target's detail is the input's, as written
        rest = written_rest
        tgt = chain.text() + rest
    return Example(with_prefix(short, settings.prefix), tgt, kind, noise, chain, rest, tuple(forms), ambiguous)


def synthesize_examples(n: int, *, seed: int, prefix: str = DEFAULT_PROMPT_PREFIX,
                        noise_rate: float = DEFAULT_NOISE_RATE, full_rate: float = DEFAULT_FULL_RATE,
                        town_rate: float = DEFAULT_TOWN_RATE, gazetteer: Gazetteer | None = None,
                        progress: bool = False, detail: str = DEFAULT_DETAIL,
                        ambiguous_rate: float = DEFAULT_AMBIGUOUS_RATE,
                        kind_weights: Sequence[tuple[str, float]] = tuple(SHORTENING_WEIGHTS.items())
                        ) -> list[Example]:
    """``n`` pairs with their shortening kind and noise, deterministic for ``seed``; ``detail`` as in
    :func:`make_example`. Ambiguous inputs (``ambiguous_rate``) only where the written town decides them."""
    if n < 0:
        raise ConfigError(f"the number of pairs must be >= 0, got {n}")
    settings = Settings(prefix=prefix, noise_rate=noise_rate, full_rate=full_rate, detail=detail,
                        ambiguous_rate=ambiguous_rate, ambiguity="evidence", kind_weights=tuple(kind_weights))
    gazetteer = default_gazetteer(gazetteer)
    rng = random.Random(seed)
    strata = _Strata(gazetteer)
    provinces = _province_cycle(rng, strata.provinces)
    examples: list[Example] = []
    failures = 0
    with progress_bar(n, progress) as bar:
        while len(examples) < n:
            # an ambiguous input needs a county with an ambiguous name: drawn from those, with a town to decide
            ambiguous = settings.ambiguous_rate > 0 and rng.random() < settings.ambiguous_rate
            sampled = _sample_full(rng, gazetteer, strata, None if ambiguous else next(provinces), town_rate)
            if sampled is None:
                failures += 1
                if failures > 100 + n:
                    raise RuntimeError("the gazetteer keeps rejecting synthesized addresses; is it consistent?")
                continue
            examples.append(make_example(rng, gazetteer, *sampled, settings, ambiguous=ambiguous))
            bar.update(1)
    return examples


def synthesize(n: int, *, seed: int, prefix: str = DEFAULT_PROMPT_PREFIX, noise_rate: float = DEFAULT_NOISE_RATE,
               full_rate: float = DEFAULT_FULL_RATE, town_rate: float = DEFAULT_TOWN_RATE,
               gazetteer: Gazetteer | None = None, progress: bool = False,
               detail: str = DEFAULT_DETAIL, ambiguous_rate: float = DEFAULT_AMBIGUOUS_RATE) -> list[dict[str, str]]:
    """``n`` records ``{"src": prefix + short, "tgt": full}``, deterministic for ``seed``."""
    return [example.record() for example in synthesize_examples(
        n, seed=seed, prefix=prefix, noise_rate=noise_rate, full_rate=full_rate, town_rate=town_rate,
        gazetteer=gazetteer, progress=progress, detail=detail, ambiguous_rate=ambiguous_rate)]
