"""Completion candidates: the gazetteer proposes, the model chooses.

The gazetteer proposes, the model chooses: every way the administrative part of an input can be read
becomes one candidate answer (a real chain + the input's own detail), and a fine-tuned model picks one
(generate.constrained_complete). Nothing here invents a division: a candidate's chain always exists.
"""

from __future__ import annotations

import functools
import itertools
from collections import defaultdict
from dataclasses import dataclass
from typing import Optional

from .detail import DEFAULT_DETAIL, _verbatim_tail, _written_detail, check_detail
from .divisions import _SUFFIX_CHARS, _SUFFIX_TEXT, MUNICIPALITIES, AdminChain, Division
from .normalize import (_BETWEEN_NAMES, _BRACKET_PAIRS, _detail_after, _placeholder_end, _skip_between_names,
                        _without_unopened_closers, normalize_address, to_simplified)
from .parser import _STREET_AFTER_SHORT, WORDS_ACROSS_NAME, ZONE_WORDS, Gazetteer, _Token, load_gazetteer

MAX_CANDIDATES = 8
# Names the fuzzy matcher may correct: levels 1-3 (towns are too many and too alike to guess at).
_FUZZY_LEVELS = (1, 2, 3)
_FUZZY_MAX_LENGTH = 9  # longest written form worth correcting (巴音郭楞蒙古自治州)
_MAX_READINGS = 16  # readings of a written form tried against the pinyin index (characters with several)
_KIND_RANK = {"full": 0, "old": 1, "short": 2, "typo": 3}
# What makes a division name found by looking ahead part of a word about a place instead (济南市中心 is the
# centre of 济南市, not 市中区 + 心; 青岛市北部 the north of 青岛市)
_PART_WORDS = tuple("部面侧边端郊心")


@dataclass(frozen=True)
class Candidate:
    """One candidate answer: an existing chain followed by the input's detail, verbatim.

    ``text`` is what the model is asked to choose (``chain.text() + detail``). ``evidence`` records how
    the chain was read, strongest first: "full", "old" (a renamed or abolished name), "short", "typo"
    (same pinyin or one character off), "traditional" (read after converting traditional characters),
    "conflict" (written names contradict each other: ``overrides`` says which the chain does not follow).
    ``overrides`` lists, in writing order, the written division names (as written) the chain contradicts:
    always names written above a deeper name the chain does follow (山西 in 山西西安市雁塔区), so the deepest
    written name is never dropped; empty when the chain agrees with every written name.
    """

    chain: AdminChain
    detail: str
    evidence: tuple[str, ...]
    overrides: tuple[str, ...] = ()

    @property
    def text(self) -> str:
        return self.chain.text() + self.detail


@dataclass(frozen=True)
class _Step:
    """One accepted step of a scan: where it ended, the readings after it, the divisions its name named,
    whether it only confirmed a chain already complete (county-level or deeper) and the name as written
    (what a reading that contradicts it overrides: :meth:`_CandidateScan.overrides`)."""

    end: int
    readings: tuple
    named: frozenset
    after_complete: bool
    written: str = ""
    start: int = 0  # where its name starts (after the separators and brackets before it)


@dataclass
class _Reading:
    """One way the administrative part read so far can be understood."""

    division: Division
    kind: str  # weakest kind of name any of its tokens matched by
    conflict: bool = False
    # read before a conflicting name and not (yet) below it: kept in case a later name nests below it
    # (广东省 in 广东省南昌市南山区: 南山区 is 深圳's), dropped if none does (the deepest name must be read)
    stale: bool = False
    former: bool = False  # read from a former name
    moved: bool = False  # ... whose change moved territory: what is written below it may lie in its parent


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

    def _readings(self, written: str) -> list[tuple[str, ...]]:
        """Every toneless reading of ``written``, its default one first: pypinyin reads 长岸 zhang-an in context,
        yet 长 is also chang, as in 长安 (at most :data:`_MAX_READINGS` of them)."""
        from pypinyin import Style, pinyin

        readings = [tuple(self._pinyin(written))]
        per_char = pinyin(written, style=Style.NORMAL, heteronym=True, errors="default")
        if len(per_char) == len(written):
            for reading in itertools.islice(itertools.product(*per_char), _MAX_READINGS):
                if reading not in readings:
                    readings.append(reading)
        return readings

    def corrections(self, written: str) -> list[str]:
        """Index keys ``written`` may be a slip for (never ``written`` itself). The division suffix is never
        the slip: 长安路 is a street, not a misspelled 长安区."""
        found = [key for reading in self._readings(written) for key in self.by_pinyin.get(reading, ())]
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



class _CandidateScan:
    """Reads the administrative part of one normalized address into every consistent set of readings.

    Unlike :meth:`Gazetteer.parse`, which keeps only what every reading agrees on, this keeps all readings
    (every 朝阳区, every 城关镇) and lets later tokens narrow them: a deeper division nests below a
    reading; the same division or one of its ancestors written again (town first, then its county:
    织里镇吴兴区织里镇…) confirms it. The scan stops at the first text that fits no reading.

    Written names that contradict each other (山西西安市雁塔区, 广东省南昌市南山区粤海街道) are decided by
    evidence: a city or county that fits no reading starts readings of its own (a short one only when a name
    nesting below it follows), while the readings so far stay, stale, in case a later name nests below them; at
    the end only readings that hold the deepest name read survive. A town never does: one the written city or
    province lacks ends the run (西安市 + 城关镇1号 is 西安's, with 城关镇 as detail). A name is thus resolved within the
    written city or province whenever that has a division of the name (广东省杭州市西湖区 is 杭州's 西湖区, never
    南昌's), and each reading's :meth:`overrides` are the written names its chain contradicts. A misspelled
    name is corrected only if no written name contradicts the correction: a full name is never a slip
    (南昌市), and a correction the names after it contradict (南常市 → 南雄市 before 南山区) is not taken.

    Every accepted step is kept in ``steps`` so that :meth:`cut_at_repeat` (verbatim detail) can end the run
    where the names start over.
    """

    def __init__(self, gazetteer: "Gazetteer", text: str, fuzzy: bool):
        self.gaz = gazetteer
        self.text = text
        self.fuzzy = fuzzy
        self.readings: list[_Reading] = []
        self.end = 0
        self.typo = False
        self.steps: list[_Step] = []

    def run(self) -> "_CandidateScan":
        return self.run_from(0)

    def run_from(self, position: int) -> "_CandidateScan":
        while True:
            start = self._skip_separators(position)
            before, recorded = self.readings, len(self.steps)
            step = self._exact_step(start)
            if step is None:
                step = self._placeholder_step(start)
            if step is None and self.fuzzy and not self._reaches_county():
                step = self._fuzzy_step(start)
            if step is None:
                self.readings = [r for r in self.readings if not r.stale] or self.readings
                return self
            end, readings = step
            if len(self.steps) == recorded:  # a fuzzy step that read on records its own steps
                self._record(start, end, before, readings)
            self.readings, self.end = readings, end
            position = end

    def overrides(self, reading: _Reading) -> tuple[str, ...]:
        """The written names (as written) ``reading``'s chain contradicts: those read as no division of it."""
        chain = {reading.division.code, *self.gaz._ancestors[reading.division.code]}
        return tuple(step.written for step in self.steps if step.named and chain.isdisjoint(step.named))

    def _placeholder_step(self, start: int) -> Optional[tuple[int, list[_Reading]]]:
        """Steps over a placeholder level (省直辖县级行政区划, 市辖区, a lone 县 before a division name) to the
        division after it; a placeholder of 2+ characters with no division after it is stepped over alone."""
        after = _placeholder_end(self.text, start)
        if after == start:
            return None
        step = self._exact_step(self._skip_separators(after))
        if step is None and after - start > 1 and self.readings:
            return after, self.readings
        return step

    def _record(self, start: int, end: int, before: list[_Reading], after: list[_Reading]) -> None:
        """Keep one accepted step: which divisions its name names, and whether it only confirmed ``before``."""
        codes_before = {r.division.code for r in before}
        fresh = [r for r in after if not r.stale]  # a conflict's stale readings are not what its name names
        confirm = bool(before) and {r.division.code for r in fresh} <= codes_before
        if confirm:
            above = codes_before | {code for r in before for code in self.gaz._ancestors[r.division.code]}
            entries = next((self.gaz._index[self.text[start:stop]] for stop in range(end, start + 1, -1)
                            if self.text[start:stop] in self.gaz._index), [])
            named = frozenset(e.division.code for e in entries) & above
        else:  # a former city read as its namesake county (莱芜市 -> 莱芜区) names the city: 莱城区 may follow
            former_level = self.gaz._former_levels.get(self.text[start:end], 0)
            named = frozenset(r.division.parent_code if r.former and 0 < former_level < r.division.level
                              else r.division.code for r in fresh)
        complete = any(r.division.level >= 3 or not self.gaz.children(r.division) for r in before)
        written = self.text[start:end]
        written = written[_placeholder_end(written, 0):].strip(_BETWEEN_NAMES)
        self.steps.append(_Step(end, tuple(after), named, confirm and complete, written, start))

    def cut_at_repeat(self) -> None:
        """End the run where its names start over after a complete chain (verbatim detail).

        A stretch of names that only confirm a chain already read down to a county-level division or deeper is
        a repeated run when one of its names was written before (碑林区陕西省西安市碑林区…, 碑林区碑林区…): the
        run ends before the stretch, whose text becomes detail. A stretch that only adds names not yet written
        (法门镇扶风县, 虎门镇东莞市, 朝阳区北京市) is the names written in another order and stays in the run, and
        so does a stutter before the chain is complete (陕西省陕西省西安市, 北京北京市朝阳区).

        Names that only confirm a complete chain after a bracket opened there and not closed within the run are
        the bracket's text too (蚌山区(蚌埠市定安小学…): the run ends before the bracket; a closed one around
        names (碑林区(西安市)1号) or one before a new division (西安市(碑林区1号) stays in the run."""
        for index in range(1, len(self.steps)):
            if not all(step.after_complete for step in self.steps[index:]):
                continue
            between = self.text[self.steps[index - 1].end:self.steps[index].start]
            run = self.text[self.steps[index - 1].end:self._skip_separators(self.end)]  # 西安市) closes it
            if any(opener in between and run.count(opener) > run.count(closer)
                   for closer, opener in _BRACKET_PAIRS.items()):
                self.end, self.readings = self.steps[index - 1].end, list(self.steps[index - 1].readings)
                del self.steps[index:]
                break
        named: set[str] = set()
        index = 0
        while index < len(self.steps):
            if not self.steps[index].after_complete:
                named |= self.steps[index].named
                index += 1
                continue
            stretch = index
            while stretch < len(self.steps) and self.steps[stretch].after_complete:
                stretch += 1
            seen, repeated = set(named), False
            for step in self.steps[index:stretch]:
                repeated = repeated or bool(step.named & seen)
                seen |= step.named
            if repeated:
                if index > 0:
                    self.end, self.readings = self.steps[index - 1].end, list(self.steps[index - 1].readings)
                    del self.steps[index:]
                return
            named, index = seen, stretch

    def _skip_separators(self, position: int) -> int:
        return _skip_between_names(self.text, position)

    def _reaches_county(self) -> bool:
        return any(r.division.level >= 3 or not self.gaz.children(r.division) for r in self.readings)

    def _exact_step(self, start: int, allow_conflict: bool = True,
                    lookahead: bool = True) -> Optional[tuple[int, list[_Reading]]]:
        """The longest key at ``start`` that fits the readings (or, failing that, a conflicting deeper one).

        When nothing nests below the longest fitting key but a shorter one has a division of its own after it,
        the shorter one is read (``lookahead``): 青岛市南 is 青岛 + 市南(区), 南阳镇平 is 南阳 + 镇平(县), not the
        city 青岛市 or a town 南阳镇 elsewhere followed by detail."""
        conflict = None
        longer_full_name = False  # a short name inside a longer full name that fits (城关 in 城关镇) is no match
        first = None  # the longest fitting step, when nothing nests below it
        guess = False  # first is only towns the town rule guessed (DivisionIndex.town_rule_guess)
        for length in range(min(self.gaz._max_key, len(self.text) - start), 1, -1):
            key = self.text[start:start + length]
            entries = self.gaz._index.get(key) if self.readings else self.gaz.entries_alone(key)
            if not entries:
                continue
            token = self.gaz._token(self.text, start + length, entries,
                                    allow_short=not longer_full_name or first is not None)
            if token is None:
                continue
            # every short reading counts here (碑林 alone is a place): unlike parse(), the text is an address
            divisions = list(token.divisions)
            if not self.readings:  # 滨江新区 alone is not 滨江区; after 杭州 it may be (nesting decides)
                divisions = self.gaz._outside_zones(divisions, token)
            step = self._fit(token, divisions)
            if step is not None:
                longer_full_name = longer_full_name or any(e.kind != "short" for e in entries)
                if first is None:
                    if not lookahead:
                        return step
                    first, first_goes_on = step, None
                    guess = self.gaz.town_rule_guess(key, [r.division for r in step[1]],
                                                     [r.division for r in self.readings])
                    continue
                if guess and self.gaz.yields_to([r.division for r in first[1]], [r.division for r in step[1]]):
                    return step  # 苏州虎丘镇湖街道: 虎丘区, not a town the rule guessed (town_rule_guess)
                # a shorter key: worth a look only where a name starts after it (镇平, or 市南 after 青岛)
                bare = None
                if token.suffixed and self.gaz._key_at(self.text, start + length):  # 青岛市南: the 市 starts 市南区
                    bare = self.gaz._token(self.text, start + length, entries, allow_short=True, take_suffix=False)
                    bare = self._fit(bare, list(bare.divisions)) if bare is not None else None
                if step[0] < first[0] and self.gaz._key_at(self.text, self._skip_separators(step[0])):
                    bare = bare or step
                if bare is None:
                    continue
                if first_goes_on is None:
                    first_goes_on = self._nests_after(first, first[0])
                    if first_goes_on:
                        return first
                if self._nests_after(bare, first[0]):
                    return bare
                continue
            if first is None and allow_conflict and conflict is None and self.readings and not self._reaches_county():
                conflict = self._conflicting(token, divisions)
        return first or conflict

    def _nests_after(self, step: tuple[int, list[_Reading]], beyond: int) -> bool:
        """Whether a division nesting below ``step``'s readings follows it and ends after ``beyond``."""
        follower = _CandidateScan(self.gaz, self.text, fuzzy=False)
        follower.readings = step[1]
        after = follower._exact_step(self._skip_separators(step[0]), allow_conflict=False, lookahead=False)
        if after is None or after[0] <= beyond or self.text.startswith(_PART_WORDS, after[0]):
            return False
        before = {r.division.code for r in step[1]}
        return any(r.division.code not in before for r in after[1])

    def _fit(self, token: _Token, divisions: list[Division]) -> Optional[tuple[int, list[_Reading]]]:
        """Readings after ``token`` when it fits: nests below a reading, or repeats/confirms one."""
        if not divisions:
            return None
        if not self.readings:
            return token.end, [_Reading(d, token.kinds[d.code], former=token.kinds[d.code] == "old",
                                        moved=d.code in token.moved) for d in divisions]
        deeper: dict[str, _Reading] = {}
        confirmed: dict[str, _Reading] = {}
        confirming: set[str] = set()  # the token's divisions that confirm a reading (itself or an ancestor)
        codes = {d.code: d for d in divisions}
        for history in (False, True):  # what lies below a reading today first; history only when nothing does
            for reading in self.readings:
                for code, division in codes.items():
                    if self.gaz.lies_under(code, reading.division, reading.moved, history):
                        deeper.setdefault(code, _Reading(division, _weaker(reading.kind, token.kinds[code]),
                                                         reading.conflict, former=token.kinds[code] == "old",
                                                         moved=code in token.moved))
            if deeper:
                break
        for reading in self.readings:
            above = self.gaz._ancestors[reading.division.code]
            for code, division in codes.items():
                if code in deeper:
                    continue
                if code == reading.division.code or code in above:
                    confirming.add(code)
                    confirmed.setdefault(reading.division.code, _Reading(reading.division, reading.kind,
                                                                         reading.conflict, reading.former,
                                                                         moved=reading.moved))
        if deeper:
            return token.end, list(deeper.values())
        if self.text.startswith(WORDS_ACROSS_NAME, token.end - 1) and not self.gaz._key_at(self.text, token.end, True):
            return None  # 龙亭区 + 开封市区: the name written again goes on into a word of the detail (市区), not
            # into a division's name (南平市 + 政和县, 杭州市 + 场口镇)
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
        """A division written under the wrong province or city (广东省碑林区, 山西西安市, 广东省南昌市,
        广东省重庆市): its readings, marked conflict, plus the readings so far, marked stale — the names still
        to come decide which survive (the most written names agreeing win: 广东省南昌市南山区 is 深圳's 南山区).
        A short name (西安 in 山西西安雁塔区) or one of the readings' own level (重庆市 in 广东省重庆市江北区)
        conflicts only when a name nesting below it follows: else the scan stops (陕西省西安市 + 咸阳市1号)."""
        shallowest = min(r.division.level for r in self.readings)
        # never one above the readings, and never a town: a town name is the most repeated of all (119 城关镇) and
        # nothing deeper can confirm it, so one the written city or province lacks is the user's detail
        # (西安市城关镇1号 is 西安's, not 天津市武清区's: issue 22 item 3)
        candidates = [d for d in divisions if shallowest <= d.level <= 3]
        full = [d for d in candidates if token.kinds[d.code] != "short" and d.level > shallowest]
        unsure = [d for d in candidates if d not in full]
        if unsure:
            follower = _CandidateScan(self.gaz, self.text, fuzzy=False)
            follower.readings = [_Reading(d, "short") for d in unsure]
            step = follower._exact_step(self._skip_separators(token.end), allow_conflict=False)
            below = [r.division.code for r in step[1]] if step is not None else []
            full += [d for d in unsure if any(d.code in self.gaz._ancestors[code] for code in below)]
        if not full:
            return None
        return token.end, [_Reading(d, token.kinds[d.code], conflict=True) for d in full] + [
            _Reading(r.division, r.kind, r.conflict, stale=True) for r in self.readings]

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
            if any(e.kind != "short" for e in self.gaz._index.get(written, ())):
                continue  # a division's (current or former) full name is a name, never a slip (南昌市)
            for key in index.corrections(written):
                probe = _CandidateScan(self.gaz, self.text[:start] + key + self.text[start + length:], fuzzy=True)
                probe.readings, probe.steps = self.readings, list(self.steps)
                step = probe._exact_step(start, allow_conflict=False)
                if step is None or step[0] < start + length:
                    continue
                probe.end, probe.readings = step[0], [_Reading(r.division, "typo", r.conflict) for r in step[1]]
                # the user's own suffix (碑材区, 玉环区, 杭洲市): a slip inside a name, not a street (长按路)
                written_suffix = (written[-1] in _SUFFIX_TEXT and key[-1] in _SUFFIX_TEXT) or step[0] > start + length
                probe._record(start, step[0], self.readings, probe.readings)
                probe.run_from(step[0])
                # confirmed by a division nesting below it (杭洲西湖区), or by the names before it plus a suffix
                # (西安市碑材区); a suffix alone is not enough (臺北市 is not 淮北市, 江北新区 not 沈北新区)
                if probe.end == step[0] and not (self.readings and written_suffix):
                    continue
                if probe._city_or_county_name_at(probe._skip_separators(probe.end)):
                    continue  # 广东省南常市南山区: a written 南山区 that the correction (南雄市) cannot hold
                # never against the written names: when every reading contradicts a name read from the
                # correction on, the correction is not taken; the readings that override the misspelled name
                # itself (浙江省杭洲市南山区: 南山区 is no 杭州's) stand as a conflict, if there are any
                later = probe.steps[len(self.steps):]  # the correction's own step first
                chains = {r.division.code: {r.division.code, *self.gaz._ancestors[r.division.code]}
                          for r in probe.readings}
                if all(any(step.named and chains[r.division.code].isdisjoint(step.named) for step in later)
                       for r in probe.readings):
                    probe.readings = [r for r in probe.readings if chains[r.division.code].isdisjoint(later[0].named)]
                    if not probe.readings:
                        continue
                self.text, self.typo, self.steps = probe.text, True, probe.steps
                return probe.end, probe.readings
        return self._skip_step(start)

    def _city_or_county_name_at(self, start: int) -> bool:
        """Whether the full or former name of a city or county (not a short name) starts at ``start``."""
        return any(e.kind != "short" and e.division.level in (2, 3)
                   for length in range(2, min(self.gaz._max_key, len(self.text) - start) + 1)
                   for e in self.gaz._index.get(self.text[start:start + length], ()))

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




def _size_prior(gazetteer: "Gazetteer", division: Division) -> int:
    """0 for a division of a municipality or provincial capital (code XX01…), else 1: a tie-break only."""
    province = gazetteer.chain_for(division).province
    if province.name in MUNICIPALITIES:
        return 0
    return 0 if len(division.code) >= 4 and division.code[2:4] == "01" and division.level >= 2 else 1


def completion_candidates(address: str, gazetteer: Optional["Gazetteer"] = None, *,
                          limit: int = MAX_CANDIDATES, detail: str = DEFAULT_DETAIL) -> list[Candidate]:
    """The candidate answers for ``address``: each an existing chain + the input's detail, verbatim.

    Structure: a :class:`Candidate` holds the chain (province; city — None for municipalities and
    province-direct county-level cities; county — None for cities without districts; town only when the
    input named one) and ``detail``, the input after its run of division names. ``candidate.text`` is the
    full answer.

    ``detail`` (:data:`DETAILS`) says how that detail is kept. "verbatim" (default): every character the
    user wrote after the run of division names the chain was read from, unchanged (:func:`_written_detail`):
    碑林区_扬子江南路1号 → 陕西省西安市碑林区_扬子江南路1号; a run written again after a complete chain is
    detail (陕西省西安市碑林区陕西省西安市碑林区… keeps the second run), a stutter before the chain is complete
    is not (陕西省陕西省西安市…, 北京北京市…). Separators and brackets between division names belong to the
    run; what ``normalize_address`` strips in front of it (中国, labels, tags, emoji, postal codes) precedes the
    run and is no detail either. "clean": the earlier folding — names repeated after the chain read into it,
    leading separators, spaces and empty bracket pairs dropped, NFKC (full-width digits become ASCII;
    spaces inside the detail and traditional characters are kept).

    Readings covered: a complete input (its own chain: the identity candidate), dropped province/city,
    short names (碑林, 扶风, 喀左), renamed and abolished names (江干区 → 上城区), separators, spaces, brackets
    around names ([朝阳区], 陕西省（西安市）), placeholder levels (省直辖县级行政区划, 自治区直辖县级行政区划,
    市辖区, 县 as a city level, short forms: stepped over, in neither chain nor detail),
    full-width characters, a leading 中国, a leading label / tag / emoji / postal code
    (收货地址：, 【加急】, 🏠, 710001), repeated prefixes, a town written first, traditional
    characters (OpenCC t2s), and one misspelled name of levels 1-3 (same pinyin by pypinyin, or one
    character off in a name of 3+ characters) when what follows confirms it. An ambiguous name
    (朝阳区, 城关镇) gives one candidate per division it can mean.

    Order (a documented prior, not a measured one), best first:
      1. fewer written names overridden (``Candidate.overrides``): the most written names agreeing win;
      2. more divisions around the chain named in the detail (朝阳区建国路88号 长春 favours 长春);
      3. stronger evidence: full name, then former name, short name, corrected typo;
      4. a division of a municipality or provincial capital before others (tie-break);
      5. the official division code.
    At most ``limit`` candidates (default :data:`MAX_CANDIDATES`). An empty list means the gazetteer
    found no division: callers fall back to free generation.

    Raises ValueError for a ``limit`` below 1 or an unknown ``detail``.
    """
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    verbatim = check_detail(detail) == "verbatim"
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
    if verbatim:
        scan.cut_at_repeat()
        detail = _written_detail(address, written, scan.end)
    else:
        detail = _without_unopened_closers(_verbatim_tail(address, _detail_after(written, scan.end)))

    readings = [r for r in scan.readings if not r.stale] or scan.readings  # the run may end after a conflict
    overrides = {reading.division.code: scan.overrides(reading) for reading in readings}

    def order(reading: _Reading) -> tuple:
        return (len(overrides[reading.division.code]), -_detail_agreement(gazetteer, reading.division, detail),
                _KIND_RANK[reading.kind], _size_prior(gazetteer, reading.division), reading.division.code)

    candidates: dict[str, Candidate] = {}
    for reading in sorted(readings, key=order):
        overridden = overrides[reading.division.code]
        evidence = (reading.kind,) + (("traditional",) if traditional else ()) + (
            ("conflict",) if overridden else ())
        candidate = Candidate(gazetteer.chain_for(reading.division), detail, evidence, overridden)
        candidates.setdefault(candidate.text, candidate)
        if len(candidates) == limit:
            break
    return list(candidates.values())


def address_detail(address: str, gazetteer: Optional["Gazetteer"] = None, *, detail: str = DEFAULT_DETAIL) -> str:
    """The detail of ``address`` as :func:`completion_candidates` keeps it under ``detail``: what follows its run
    of division names (the first reading's; all readings share it). An address without a division is all
    detail. The evaluator's "detail kept" compares this of an answer and of its expected address."""
    found = completion_candidates(address, gazetteer, limit=1, detail=detail)
    return found[0].detail if found else address.strip()
