"""Text normalisation of addresses before any name is looked up: full-width to half-width, no whitespace, no
leading country, label, tag or postal code; the separators, brackets and placeholder levels (省直辖县级行政区划,
市辖区 …) stepped over between division names; traditional to simplified characters (OpenCC)."""

from __future__ import annotations

import functools
import re
import unicodedata
from typing import Callable

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
# Placeholder levels of the statistics tables, written by people who copy them: 省直辖县级行政区划 (湖北's 天门市,
# 河南's 济源市, 海南's 五指山市 …), 自治区直辖县级行政区划 (新疆's 石河子市, 五家渠市 …), 市辖区 (the districts of a
# city or municipality), 县 (the counties of a municipality: 重庆市县巫山县), and their short forms (省直辖, 直辖县级
# 市, 省直辖县 …). They name no division: the scan steps over them between division names (Gazetteer.parse,
# completion_candidates) and keeps none of them in the chain or the detail.
_PLACEHOLDER = re.compile(
    r"(?:省|自治区)?直辖县级(?:行政区划|行政单位|行政区|单位|市)?|(?:省|自治区)直辖(?:县|市)?|市辖区|县")


def _placeholder_end(text: str, start: int) -> int:
    """The position after a placeholder level starting at ``start`` (省直辖县级行政区划天门市 -> before 天门市), or
    ``start`` when none starts there. A lone 县 is a placeholder only before a division name: callers check."""
    match = _PLACEHOLDER.match(text, start)
    return match.end() if match else start


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

