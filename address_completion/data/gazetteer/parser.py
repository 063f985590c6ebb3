"""Parsing an address into current full division names and the rest (:meth:`Gazetteer.parse`).

The parser keeps only what every reading of the written names agrees on; candidate generation
(:mod:`.candidates`) keeps every reading.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Optional

from .divisions import (_FORMER_SUFFIXES, _SUFFIX_CHARS, LEVELS, AdminChain, Division, DivisionIndex, _Entry,
                        read_divisions)
from .normalize import (_detail_after, _placeholder_end, _skip_between_names, _without_unopened_closers,
                        normalize_address)

# A short name followed by one of these is part of a street or place name (西安路, 长安街, 南京东路), not a division.
# A number before a street word numbers the street (长安一路, 西安二号); before any other word it starts a place's
# own name (五道河, 七里沟, 八里庄村: 兴隆五道河 is 兴隆县 + 五道河).
_STREET_AFTER_SHORT = re.compile(
    r"(?:[东西南北中]|[一二三四五六七八九十]|\d)?(?:路|街|大街|大道|巷|弄|号|胡同)"
    r"|[东西南北中]?(?:道|里|村|小区|花园|广场|大厦|公园|桥|站|机场|港|湾|商场|饭店|宾馆|酒店|医院|中学|小学|大学)"
)
# ... unless that word is only the start of a longer street or village name: 站前路, 桥头路, 港口路, 十号路, 花园路,
# 港西村, 花园里乡 (鄞州站前路 is 鄞州 + 站前路, 固镇十号路 is 固镇 + 十号路): a word that is no street word itself,
# then at most two name characters and a street word or 村/乡/镇. A street word itself (西安路, 西安南路) stays the
# street's end; 道 does not (红山二道街 is 红山 + 二道街).
_STREET_END = re.compile(r"(?:路|街|大街|大道|巷|弄|胡同)$")
_STREET_GOES_ON = re.compile(r"[^\W\d_]{0,2}?(?:路|街|大街|大道|巷|弄|村|乡|镇)")
# The old town's main streets, named by direction alone (东大街, 北街, 中大街): 刚察东大街 is 刚察县 + 东大街,
# where 南京东路 is a road named after 南京.
_DIRECTION_STREET = re.compile(r"[东西南北中](?:大街|街)")


def _street_after_short(text: str, end: int) -> bool:
    """Whether the text at ``end`` (after a short name) is a street or place named after it (西安路, 鄞州站)."""
    match = _STREET_AFTER_SHORT.match(text, end)
    if match is None or _DIRECTION_STREET.fullmatch(match.group()):
        return False
    return bool(_STREET_END.search(match.group())) or not _STREET_GOES_ON.match(text, match.end())


# Words that start with a suffix character but are no suffix (碑林市场 is 碑林 + 市场) — unless a division name
# follows the suffix character (旬阳县城关镇 is 旬阳县 + 城关镇, not 旬阳 + 县城…).
_WORDS_AFTER_SHORT = ("市场", "区域", "县城")
# Words a division name's last character starts (开封市区 the urban area, 儋州市中心 the centre, 夏河县城 the county
# town, 西安市场 a market): a name written again that goes on into one is that word of the detail, not the name
# confirming the chain (candidates: 龙亭区开封市区1号 keeps 开封市区; data/poi.py: not a repeated prefix). Not 市政:
# 市政府 is one, but 潜江市政通巷 is 潜江市 + 政通巷 in the POI data.
WORDS_ACROSS_NAME = ("市区", "县城", "城区", "区域", "市中心", "市场")
# A suffix character that starts a street's name (市心路, 县前街, 区府路): suffix, one name character, street
# word. After a short name whose division never had that suffix (鄞州市 never existed) it is the detail's.
_SUFFIX_STARTS_STREET = re.compile(r"[省市区县州旗盟][^\W\d_](?:路|街|大街|大道|巷|弄)")
# Words of a development zone or new area (东湖高新区, 滨江新区, 江宁开发区): a division name before one is a
# zone's name, not a misspelled division (高新区 is no slip for 高陵区), and synthesis keeps such zones.
ZONE_WORDS = re.compile(
    r"(?:新区|新城|高新|经开区|经济开发区|经济技术开发区|开发区|工业园|产业园|科技园|软件园|园区|保税区|综合保税区|"
    r"自贸区|自由贸易|示范区|试验区|实验区|度假区|风景区|管理区|科技城)"
    r"(?![一二三四五六七八九十\d]*(?:路|街|大街|大道|道|巷|弄|胡同))"  # 高新大道, 新城路, 高新二路 are streets
)
# Of those, the ones that make an area named in its own right (滨江新区, 江北新区, 西咸新区, 东湖高新): such an
# area often lies in another city than the county-level division of that short name, so the county short name
# is read only when the text named a division above it first, and only if it nests there (滨江新区 alone is no
# division; 杭州滨江新区 is 滨江区). The other zone words name a zone *of* the place before them (江宁开发区,
# 萧山经济技术开发区, 昆山高新区, 鄞州工业园区): the short name is read as the county. A city's own zone
# (苏州工业园区, 西安高新区) keeps its city either way.
_NAMED_AREA_WORDS = re.compile(
    r"(?:新区|新城|高新(?!区|技术)|自贸区|自由贸易|示范区|试验区|实验区|度假区|风景区|管理区|科技城)"
    r"(?![一二三四五六七八九十\d]*(?:路|街|大街|大道|道|巷|弄|胡同))"
)


@dataclass(frozen=True)
class ParsedAddress:
    """An address split into current full division names and the verbatim rest."""

    province: Optional[str]
    city: Optional[str]
    county: Optional[str]
    town: Optional[str]
    rest: str  # everything after the last administrative token (of the normalized text), verbatim
    chain: Optional[AdminChain]  # set when the named parts are consistent and unambiguous
    valid_chain: bool  # False when named divisions exist but do not nest

    def names(self) -> list[str]:
        return [n for n in (self.province, self.city, self.county, self.town) if n]

    def text(self) -> str:
        """The address rewritten with full current names: admin parts + rest."""
        return "".join(self.names()) + self.rest



@dataclass
class _Scan:
    """Parser state: the candidates for the deepest division named so far."""

    candidates: list[Division]
    relaxed: set[str]  # codes reached through a former district name: its siblings count as consistent too
    named: dict[int, str]
    valid: bool = True
    end: int = 0


@dataclass
class _Token:
    """One administrative token found by the scanner."""

    end: int
    divisions: list[Division]
    kinds: dict[str, str]  # division code -> strongest kind of name that matched
    consistent: bool
    repeated: bool = False  # the same division written again (北京北京市)
    suffixed: bool = False  # a short name that took a following suffix character (喀左县)
    zone: bool = False  # short readings are followed by a zone word (东湖高新区): see _outside_zones
    moved: frozenset = frozenset()  # codes read from a former name whose change moved territory (_Entry.moved)



class Gazetteer(DivisionIndex):
    """The division index plus the parser: names, short names, renamed names, parent/child links, parse()."""

    def candidates(self, name: str) -> list[AdminChain]:
        """Every chain a name (full, short, renamed; or a run of them like 西安碑林) could mean."""
        key = normalize_address(name)
        found = {e.division.code: e.division for e in self.entries_alone(key)}
        if not found and key:
            scan = self._scan(key)
            if scan.valid and scan.end == len(key):
                found = {d.code: d for d in scan.candidates}
        return [self.chain_for(found[code]) for code in sorted(found)]

    def resolve(self, name: str) -> Optional[AdminChain]:
        chains = self.candidates(name)
        return chains[0] if len(chains) == 1 else None

    def is_division_text(self, text: str) -> bool:
        """Whether normalized ``text`` is division names only (北京, 仁和街道, 北京大兴; not 加急): a bracketed
        one at the start of an address is read, not dropped as a tag (normalize_address)."""
        if text in self._index:
            return True
        scan = self._scan(text)
        return bool(scan.candidates) and scan.end == len(text)

    # ----- parsing -----
    def parse(self, address: str) -> ParsedAddress:
        """Split an address into current full province / city / county / town names and the verbatim rest.

        Tolerates short names, former names, missing levels, a leading 中国, separators and placeholder
        levels of the statistics tables (省直辖县级行政区划, 市辖区: stepped over, kept nowhere). Missing upper
        levels are filled only when every reading agrees on them.
        """
        text = normalize_address(address, self.is_division_text)
        scan = self._scan(text)
        rest = _without_unopened_closers(_detail_after(text, scan.end))
        names: dict[int, Optional[str]] = {}
        for level in LEVELS:
            agreed = {self._name_at(d, level) for d in scan.candidates}
            names[level] = scan.named.get(level)
            if scan.valid and len(agreed) == 1:
                names[level] = agreed.pop()
        chain = self.chain_for(scan.candidates[0]) if scan.valid and len(scan.candidates) == 1 else None
        return ParsedAddress(names[1], names[2], names[3], names[4], rest, chain, scan.valid)

    def _name_at(self, division: Division, level: int) -> Optional[str]:
        if division.level == level:
            return division.name
        for code in self._ancestors[division.code]:
            if self._by_code[code].level == level:
                return self._by_code[code].name
        return None

    def _scan(self, text: str) -> _Scan:
        scan = _Scan(candidates=[], relaxed=set(), named={})
        position = 0
        while True:
            start = _skip_between_names(text, position)
            token = self._next_token(text, start, scan)
            after = _placeholder_end(text, start) if token is None else start
            if after > start:  # 湖北省省直辖县级行政区划天门市: a placeholder level, stepped over
                token = self._next_token(text, _skip_between_names(text, after), scan)
                if token is None and after - start > 1 and scan.candidates:  # 北京市市辖区建国路: no detail
                    scan.end = position = after
                    continue
            if token is None:
                return scan
            scan.end = position = token.end
            scan.candidates = token.divisions
            if token.repeated:  # 北京市北京市…: the same division written twice
                continue
            scan.valid = scan.valid and token.consistent
            scan.relaxed = {d.code for d in token.divisions if token.kinds[d.code] == "old" and d.level >= 3
                            and d.code in token.moved}
            # the name as written when it is a current one (长青乡, not the 长青街道 that were 长青乡 elsewhere)
            written = [d for d in token.divisions if token.kinds[d.code] != "old"] or token.divisions
            levels_names = {(d.level, d.name) for d in written}
            if len(levels_names) == 1:
                level, name = levels_names.pop()
                scan.named[level] = name

    def _next_token(self, text: str, start: int, scan: _Scan) -> Optional[_Token]:
        """Longest key at ``start`` consistent with the scan so far; else the longest inconsistent one."""
        fallback = None
        guess = None  # a nested token of towns the town rule only guessed (DivisionIndex.town_rule_guess)
        longer_full_name = False  # a short name inside a longer full name (城关 in 城关镇) is not a match
        for length in range(min(self._max_key, len(text) - start), 1, -1):
            key = text[start:start + length]
            entries = self._index.get(key) if scan.candidates else self.entries_alone(key)
            if not entries:
                continue
            token = self._token(text, start + length, entries, allow_short=not longer_full_name)
            if token is None:  # (a former name read as a word of the detail, 香格里拉县城…, hides nothing)
                continue
            repeated = [d for d in token.divisions if d in scan.candidates]
            if repeated and self._is_repetition(text, token, repeated, scan):
                return _Token(token.end, repeated, token.kinds, True, repeated=True, moved=token.moved)
            below = self._below_restated(text, token, scan)
            if below:  # 织里镇吴兴区织里镇: the county written again after its town, then the town again
                return _Token(token.end, below, token.kinds, True, repeated=True, moved=token.moved)
            readings = token.divisions if scan.candidates else self._outside_zones(token.divisions, token)
            nested = self._acceptable(self._nested(readings, scan), token,
                                      short_ok=token.end < len(text) or bool(scan.candidates))
            # below a name already read, only a name that nests hides the short names inside it (忻州五台镇海寺:
            # 西安's 五台街道, the 五台镇 of the town rule, does not hide 五台县)
            if nested and guess is None and self.town_rule_guess(key, nested, scan.candidates):
                guess = _Token(token.end, nested, token.kinds, True, moved=token.moved)
                continue  # 苏州虎丘镇湖街道: a county of 苏州 whose short name starts there outranks the guess
            longer_full_name = longer_full_name or ((bool(nested) or not scan.candidates)
                                                    and any(e.kind != "short" for e in entries))
            if nested and guess is not None and not self.yields_to(guess.divisions, nested):
                continue
            if nested:
                return _Token(token.end, nested, token.kinds, True, moved=token.moved)
            if fallback is None and scan.candidates:
                deepest = min(d.level for d in scan.candidates)
                # a short name that contradicts the names before it and precedes a zone word names the zone
                # (湖北省武汉市东湖高新区 is not 南昌's 东湖区)
                in_zone = bool(ZONE_WORDS.match(text, token.end))
                deeper = [d for d in self._outside_zones(token.divisions, token) if d.level > deepest
                          and not (in_zone and token.kinds[d.code] == "short")]
                deeper = self._acceptable(deeper, token, short_ok=token.end < len(text), unique_towns=False)
                if deeper:
                    fallback = _Token(token.end, deeper, token.kinds, False, moved=token.moved)
        return guess or fallback

    def _is_repetition(self, text: str, token: _Token, repeated: list[Division], scan: _Scan) -> bool:
        """北京市北京市 and 北京市北京朝阳区 repeat a division; 白云区白云山 does not (白云山 is a place)."""
        if token.suffixed or any(token.kinds[d.code] != "short" for d in repeated):
            return True
        start = _skip_between_names(text, token.end)  # 西安,西安,碑林区…
        following = self._next_token(text, start, scan)
        return following is not None and following.consistent and not following.repeated

    def _below_restated(self, text: str, token: _Token, scan: _Scan) -> list[Division]:
        """The scan's candidates when ``token`` names one of their ancestors and the text then goes on
        restating the chain down to them (织里镇 吴兴区织里镇…); else []."""
        above = {d.code for d in token.divisions}
        below = [d for d in scan.candidates if not above.isdisjoint(self._ancestors[d.code])]
        if not below:
            return []
        start = _skip_between_names(text, token.end)
        following = self._next_token(text, start, scan)
        return below if following is not None and following.repeated else []

    def _token(self, text: str, end: int, entries: list[_Entry], allow_short: bool,
               take_suffix: bool = True) -> Optional[_Token]:
        """The readings of one key ending at ``end``: strongest kind per division (full > old > short).

        Short names followed by a street word (西安路) are dropped, and so are those followed by a division
        suffix that does not fit them (玉环区 is not 玉环市); one followed by a fitting suffix (喀左县,
        新疆省) takes that character along, unless ``take_suffix`` is False (青岛市南: the 市 starts 市南区).
        Short names followed by a zone word (东湖高新区) are marked.
        """
        # 西安路 is a street; 鄞州站前路 is 鄞州 + the street 站前路; 襄都桥东区 is 襄都 + another division's full name
        street_like = _street_after_short(text, end) and not self._key_at(text, end, full_only=True)
        below = self._nesting_at(text, end) if street_like else set()  # 兰州七里河: 七里河区 is 兰州's
        suffix = text[end] if take_suffix and end < len(text) and text[end] in _SUFFIX_CHARS else ""
        if text.startswith(_WORDS_AFTER_SHORT, end) and not self._key_at(text, end + 1, full_only=True):
            suffix = ""  # 碑林市场: a word of the detail, not a suffix (but 旬阳县城关镇 is 旬阳县 + 城关镇)
        fits = {entry.division.code: self._suffix_fits(entry.division, suffix)
                for entry in entries if suffix and entry.kind == "short"}
        if suffix and "name" not in fits.values() and _SUFFIX_STARTS_STREET.match(text, end):
            suffix = ""  # 鄞州市心路: no 鄞州市 ever existed, so the 市 starts the street 市心路
        # a former name whose suffix starts a word (香格里拉县城东南部: 县城, the county seat) is that word unless a
        # division follows (旬阳县城关镇 is the former 旬阳县 + 城关镇)
        word_after_former = (text.startswith(_WORDS_AFTER_SHORT, end - 1)
                             and not self._key_at(text, end, full_only=True))
        kinds: dict[str, str] = {}
        moved: set[str] = set()
        for entry in entries:
            if entry.kind == "short" and ((street_like and entry.division.code not in below) or not allow_short
                                          or (suffix and not fits[entry.division.code])):
                continue
            if entry.kind == "old" and word_after_former:
                continue
            if kinds.get(entry.division.code, "short") == "short":
                kinds[entry.division.code] = entry.kind
            if entry.kind == "old" and entry.moved:
                moved.add(entry.division.code)
        if not kinds:
            return None
        suffixed = all(kind == "short" for kind in kinds.values()) and bool(suffix)
        zone = (not suffixed and any(kind == "short" for kind in kinds.values())
                and bool(_NAMED_AREA_WORDS.match(text, end)) and not self._key_at(text, end))
        return _Token(end + suffixed, [self._by_code[code] for code in kinds], kinds, True, suffixed=suffixed,
                      zone=zone, moved=frozenset(moved))

    @staticmethod
    def _outside_zones(divisions: list[Division], token: _Token) -> list[Division]:
        """Drops county-level short readings followed by a zone word (滨江新区, 东湖高新区): such zones are
        rarely in the county of that name. A city's own zone (苏州工业园区, 郑州高新区) keeps its city."""
        if not token.zone:
            return divisions
        return [d for d in divisions if token.kinds[d.code] != "short" or d.level < 3]

    def _suffix_fits(self, division: Division, suffix: str) -> Optional[str]:
        """Whether a short name + ``suffix`` can still mean ``division``, and why: "name" when its full or a
        known former name ends so (not 和田区 for 和田地区) or a province is written with 省 (新疆省, 广西省);
        "rule" when only a usual conversion allows it (:data:`_FORMER_SUFFIXES`: 玉环县 for 玉环市, the name
        it had before 2017 — the rule cannot tell 鄞州市, which never existed); None when it does not fit."""
        if division.level == 1 and suffix == "省":
            return "name"
        names = [division.name] + self.former_names(division)
        if any(name.endswith(suffix) and not name.endswith("地" + suffix) for name in names):
            return "name"
        if division.level == 3 and suffix in _FORMER_SUFFIXES.get(division.name[-1], ""):
            return "rule"
        return None

    def _nesting_at(self, text: str, start: int) -> set[str]:
        """Codes of every division that a division name starting at ``start`` lies below (张家口桥西: 桥西区's
        ancestors): a short name followed by one of its own divisions is no street's name (兰州七里河, 唐山路南,
        汉滨五里镇), whatever street word that division's name starts with."""
        return {code for length in range(2, min(self._max_key, len(text) - start) + 1)
                for entry in self._index.get(text[start:start + length], ())
                for code in self._ancestors[entry.division.code]}

    def _key_at(self, text: str, start: int, full_only: bool = False) -> bool:
        """Whether a division name (any key of 2+ characters; with ``full_only`` a full or former name, not a
        short one: 城关镇, not 城东) starts at ``start`` (新城区 after 西安)."""
        return any(any(not full_only or e.kind != "short" for e in self._index.get(text[start:start + length], ()))
                   for length in range(2, min(self._max_key, len(text) - start) + 1))

    def _nested(self, divisions: list[Division], scan: _Scan) -> list[Division]:
        """Divisions below the scan's candidates, today or formerly (:meth:`lies_under`: below the parent of
        a district read from its former name, below a split-off part, below a former parent)."""
        if not scan.candidates:
            return divisions
        anchors = {d.code for d in scan.candidates}
        for history in (False, True):  # what lies below today first; history only when nothing does
            nested = [d for d in divisions if d.code not in anchors
                      and any(self.lies_under(d.code, anchor, anchor.code in scan.relaxed, history)
                              for anchor in scan.candidates)]
            if nested:
                return nested
        return []

    @staticmethod
    def _acceptable(divisions: list[Division], token: _Token, short_ok: bool,
                    unique_towns: bool = True) -> list[Division]:
        """Short names need confirming context or more text after them; a town must be the only reading."""
        kept = [d for d in divisions if token.kinds[d.code] != "short" or short_ok]
        towns = [d for d in kept if d.level == 4]
        if unique_towns and len(towns) > 1:
            kept = [d for d in kept if d.level != 4]
        return kept



@functools.lru_cache(maxsize=None)
def load_gazetteer() -> Gazetteer:
    """The gazetteer over the bundled 2025-12-31 data (built once per process)."""
    rows, metadata = read_divisions()
    return Gazetteer(rows, metadata)
