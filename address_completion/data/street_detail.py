"""Synthetic street-level detail below a division: roads and house numbers, estates, towers, parks; villages and
groups for townships. Small hand-written lists whose combinations give tens of thousands of distinct names; used by
:mod:`.synthesis` for the text after the division names of a synthesized full address.
"""

from __future__ import annotations

import random

from .gazetteer import AdminChain

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘蒋蔡余杜叶程魏苏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱尹薛段雷侯史陶贺顾毛郝龚邵万严覃戴莫孔汤"
NAME_HEADS = "金银玉翠碧青红紫丹安宁康泰永长兴华明福富贵和顺祥瑞新古文德仁东西南北中上下大小高龙凤鹤鹿松柏桃梨杏枫桂兰梅竹荷春秋朝晨星月光锦绣恒嘉盛鑫清白石黄绿双三"
NAME_TAILS = "山河江湖海林园桥湾泉溪峰岭塘坡苑源田庄门台亭池岛港坪岗"
ROAD_WORDS = (
    "人民", "解放", "建设", "中山", "和平", "文化", "友谊", "胜利", "光明", "幸福", "团结", "工农",
    "青年", "学府", "科技", "创业", "金融", "滨江", "环城", "迎宾", "育才", "振兴", "东风", "红旗",
    "民主", "复兴", "健康", "公园", "体育", "高新", "开发", "工业", "商业", "文昌", "文明", "建国",
    "兴业", "世纪", "发展", "锦绣", "春风", "扬子江", "黄河", "长江", "珠江", "太白", "雁塔", "丝绸",
)
ROAD_SUFFIXES = ("路", "路", "路", "街", "街", "大道", "巷", "大街")
DIRECTIONS = "东西南北中"
NUMERALS = "一二三四五六七八九十"
RESIDENTIAL_SUFFIXES = ("小区", "花园", "家园", "苑", "新村", "公寓", "华庭", "名苑", "雅居", "嘉园")
TOWER_SUFFIXES = ("大厦", "广场", "中心", "国际", "商务楼")
PARK_SUFFIXES = ("工业园", "科技园", "产业园", "工业园区", "物流园")
VILLAGE_MIDDLES = "家庄营寨屯湾坪沟岗坝集楼"


def _small_number(rng: random.Random, high: int) -> int:
    """House numbers, buildings, floors: small values are more common than large ones."""
    return min(high, 1 + int(rng.expovariate(1.0 / (high / 6))))


def _place_name(rng: random.Random) -> str:
    return rng.choice(NAME_HEADS) + rng.choice(NAME_TAILS)


def _road(rng: random.Random) -> str:
    stem = rng.choice(ROAD_WORDS) if rng.random() < 0.5 else _place_name(rng)
    roll = rng.random()
    if roll < 0.15:
        return stem + rng.choice(NUMERALS[:6]) + "路"  # 科技二路
    if roll < 0.40:
        return stem + rng.choice(DIRECTIONS) + rng.choice(("路", "街", "大街"))  # 长安南路
    return stem + rng.choice(ROAD_SUFFIXES)


def _house_number(rng: random.Random) -> str:
    number = _small_number(rng, 999)
    if rng.random() < 0.2:
        return f"{number}-{_small_number(rng, 20)}号"  # 467-6号
    return f"{number}号"


def _room(rng: random.Random) -> str:
    floor, room = _small_number(rng, 33), rng.randint(1, 6)
    return f"{floor}{room:02d}"


def _apartment(rng: random.Random) -> str:
    building, unit = _small_number(rng, 40), rng.randint(1, 6)
    pattern = rng.randrange(4)
    if pattern == 0:
        return f"{building}栋{unit}单元{_room(rng)}室"  # 12栋3单元501室
    if pattern == 1:
        return f"{building}号楼{unit}单元{_room(rng)}"  # 3号楼2单元1102
    if pattern == 2:
        return f"{building}幢{_room(rng)}室"
    return f"{building}-{unit}-{_room(rng)}"


def _office(rng: random.Random) -> str:
    floor, pattern = _small_number(rng, 40), rng.randrange(3)
    if pattern == 0:
        return f"{floor}层"
    if pattern == 1:
        return f"{floor}{rng.randint(1, 20):02d}室"
    return f"{rng.choice('ABCD')}座{floor}{rng.randint(1, 20):02d}"  # A座1203


def _park_unit(rng: random.Random) -> str:
    pattern = rng.randrange(3)
    if pattern == 0:
        return f"{_small_number(rng, 30)}号楼"
    if pattern == 1:
        return f"{rng.choice('ABCDE')}区{_small_number(rng, 60)}号"
    return _house_number(rng)


def _urban_detail(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.30:
        return _road(rng) + _house_number(rng)
    if roll < 0.52:
        estate = _place_name(rng) + rng.choice(RESIDENTIAL_SUFFIXES)
        return _road(rng) + _house_number(rng) + estate + _apartment(rng)
    if roll < 0.70:
        return _place_name(rng) + rng.choice(RESIDENTIAL_SUFFIXES) + _apartment(rng)
    if roll < 0.82:
        tower = _place_name(rng) + rng.choice(TOWER_SUFFIXES)
        return _road(rng) + _house_number(rng) + tower + _office(rng)
    if roll < 0.92:
        return _place_name(rng) + rng.choice(PARK_SUFFIXES) + _park_unit(rng)
    return _road(rng) + f"{_small_number(rng, 300)}号院{_small_number(rng, 20)}号楼"


def _village(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.45:
        return rng.choice(SURNAMES) + rng.choice(VILLAGE_MIDDLES) + "村"  # 王家村, 李庄村
    if roll < 0.75:
        return _place_name(rng) + "村"  # 青山村
    return rng.choice(SURNAMES) + "家" + rng.choice(NAME_TAILS) + "村"  # 王家湾村


def _group(rng: random.Random) -> str:
    number = _small_number(rng, 15)
    return f"{NUMERALS[number - 1]}组" if number <= 10 and rng.random() < 0.3 else f"{number}组"


def _rural_detail(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.30:
        return _village(rng) + _group(rng)  # 石桥村3组
    if roll < 0.45:
        return _village(rng) + "村委会"
    if roll < 0.65:
        return _village(rng) + _group(rng) + _house_number(rng)
    if roll < 0.80:
        return _village(rng) + _house_number(rng)
    return rng.choice(ROAD_WORDS) + rng.choice(("街", "路", "大街")) + _house_number(rng)


def _is_rural(chain: AdminChain) -> bool:
    if chain.town is not None:
        return not chain.town.name.endswith("街道")
    return chain.deepest.name.endswith(("县", "旗"))


def street_detail(rng: random.Random, chain: AdminChain) -> str:
    """Realistic detail below the deepest division of ``chain`` (villages for townships)."""
    rural_share = 0.6 if chain.town is not None else 0.25
    if _is_rural(chain) and rng.random() < rural_share:
        return _rural_detail(rng)
    return _urban_detail(rng)
