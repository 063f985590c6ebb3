"""Scoring completed addresses: pure functions, no I/O, no model.

Every metric answers "is the address right?", not "are the tokens likely?" (PaddleNLP's own
"accuracy" is teacher-forced token accuracy, which a model can max out while never producing a
correct address by greedy decoding).

- **exact**: prediction == target after :func:`normalize_text` (NFKC, which also folds full-width
  letters, digits and punctuation; all whitespace removed).
- **province / city / county / town**: both texts are parsed with the gazetteer, which maps renamed
  or abolished divisions to their current names (襄樊市 -> 襄阳市). A level is right when its name and
  the names of every level above it agree, i.e. it is the same division (吉林省长春市朝阳区 is not
  北京市朝阳区). A level absent from both counts as correct (a municipality has no city level; most
  targets name no town), so every level is scored on every item.
- **detail kept**: the non-administrative rest of the prediction equals the rest of the expected
  address (the input's own detail, as the label writes it) — the street, number and building must
  survive untouched. Read from the label, not the input, so an input the parser cannot read (a typo
  such as 上嗨, a town written first) is not scored as lost detail when the answer is right. Under the
  evaluation's ``detail`` setting: "verbatim" (default) compares everything after each text's run of
  division names (:func:`gazetteer.address_detail`: a repeated run, a ``_`` after the names count; after
  :func:`normalize_text`, as exact match compares), "clean" the parser's folded rest (separators and names
  repeated after the chain dropped).
- **invalid chain**: the prediction names administrative divisions that do not nest (陕西省杭州市…) and
  that the expected address does not name either. Counted over all items: a chain is invalid only
  when neither the gazetteer nor the expected answer vouches for it, so an answer that repeats an
  expected address naming a pre-reform town (余杭区仁和镇 in old data) is not flagged.
- **abstained**: the system declined to answer. An abstention is never exact; **coverage** is the
  share answered and **accuracy when answered** the exact-match rate among answered items.
- **versus the prior** (items whose gazetteer lists ≥ 2 candidates, where a choice is made): exact match there,
  and on the items where the gazetteer's first-ranked candidate (the prior) is wrong — what a model adds over
  copying the prior — and split by whether the right candidate is the first the prompt lists (canonical order):
  a model that copies the first listed is right only there (the position bias).
- Rates come with 95% Wilson score intervals, which stay inside [0, 1] and behave at 0% and 100%.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Sequence

from ..data.input_classes import input_class
from ..data.matching import exact_match, normalize_text
from ..data.gazetteer import address_detail, rule_short_forms
from ..data.prompt import address_candidates, candidate_chains

LEVELS = ("province", "city", "county", "town")
# Input classes in the order reports list them (data.input_classes.input_class returns one of these).
INPUT_CLASSES = ("unique_county", "ambiguous_county", "town_first", "no_admin_token", "already_full")
# How much a wrong level weighs when ranking the worst errors: a wrong province is worse than a wrong town.
LEVEL_WEIGHTS = {"province": 8, "city": 4, "county": 2, "town": 1}
Z_95 = 1.959963984540054


# ---------------------------------------------------------------- one item


@dataclass(frozen=True)
class Parsed:
    """The administrative levels and rest of one normalized text."""

    levels: dict[str, str | None]
    rest: str
    valid_chain: bool

    @property
    def has_admin(self) -> bool:
        return any(self.levels.values())


def parse_levels(gazetteer: Any, text: str | None) -> Parsed:
    """Parse with the gazetteer (current names), keeping only the levels the text actually writes.

    The gazetteer fills upper levels a unique lower name implies (法门镇 -> 陕西省 宝鸡市 扶风县); an
    answer that leaves the province out must not be credited with it, so inferred levels are dropped.
    """
    normalized = normalize_text(text)
    if not normalized:
        return Parsed({level: None for level in LEVELS}, "", True)
    parsed = gazetteer.parse(normalized)
    rest = parsed.rest or ""
    admin_part = normalized[: len(normalized) - len(rest)] if rest and normalized.endswith(rest) else normalized
    levels = {}
    for number, level in enumerate(LEVELS, start=1):
        name = getattr(parsed, level) or None
        division = getattr(parsed.chain, level, None) if parsed.chain is not None else None
        written = name is not None and any(form in admin_part for form in name_forms(gazetteer, name, number,
                                                                                      division))
        levels[level] = name if written else None
    return Parsed(levels, normalize_text(rest), bool(parsed.valid_chain))


def name_forms(gazetteer: Any, name: str, level: int, division: Any = None) -> set[str]:
    """Ways a text can write the division called ``name``: full, short, abbreviated or former names."""
    forms = {name, *rule_short_forms(name, level)}
    if division is not None:
        forms.update(gazetteer.short_names(division))
    # the former names of this division (or, unresolved, of every division of that name): 江干区 for 上城区
    same_name = [division] if division is not None else [
        chain.deepest for chain in gazetteer.candidates(name) if chain.deepest.name == name]
    for current in same_name:
        for old in gazetteer.former_names(current):
            forms.update((old, *rule_short_forms(old, level)))
    return {form for form in forms if len(form) >= 2}


@dataclass(frozen=True)
class ItemScore:
    """Everything measured on one (input, prediction, target) triple."""

    exact: bool
    levels: dict[str, bool]
    detail_kept: bool
    invalid_chain: bool
    input_class: str
    abstained: bool = False

    @property
    def severity(self) -> tuple[int, int, int, int, int]:
        """Sort key for the worst errors: invalid chain, then wrong answers before abstentions, then wrong
        high levels, then lost detail."""
        wrong_levels = sum(LEVEL_WEIGHTS[level] for level, ok in self.levels.items() if not ok)
        return (int(not self.exact and self.invalid_chain), int(not self.abstained), wrong_levels,
                int(not self.detail_kept), int(not self.exact))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def level_agreement(predicted: Parsed, expected: Parsed) -> dict[str, bool]:
    """Level by level: right only when this level and every level above it match.

    Names alone are not enough: 吉林省长春市朝阳区 for 北京市朝阳区 names the wrong 朝阳区.
    """
    agreement, above_ok = {}, True
    for level in LEVELS:
        above_ok = above_ok and predicted.levels[level] == expected.levels[level]
        agreement[level] = above_ok
    return agreement


def vouched_by(predicted: Parsed, expected: Parsed) -> bool:
    """Whether the expected address names every division the prediction names (same name, same level)."""
    return all(name is None or expected.levels[level] == name for level, name in predicted.levels.items())


def detail_of(gazetteer: Any, text: str | None, detail: str = "verbatim") -> str:
    """What "detail kept" compares of ``text``: its verbatim detail (:func:`gazetteer.address_detail`) or, with
    ``detail`` "clean", the parser's rest — both after :func:`normalize_text`. Names that do not nest
    (陕西省杭州市碑林区…) have no run to read verbatim: their rest is the parser's in both modes."""
    parsed = parse_levels(gazetteer, text)
    if detail == "clean" or not parsed.valid_chain:
        return parsed.rest
    normalized = (text or "").strip()
    return normalize_text(address_detail(normalized, gazetteer, detail="verbatim") if normalized else "")


def score_item(source: str, prediction: str, target: str, gazetteer: Any, *, input_class: str = "unknown",
               abstained: bool = False, detail: str = "verbatim") -> ItemScore:
    """Score one prediction of the input ``source`` against ``target`` (the score reads only those two).

    An abstained item is never exact and never an invalid chain (it asserts no chain); its levels and
    detail are scored on the text returned, which is what a caller gets. ``detail`` (verbatim | clean) says
    which detail "detail kept" compares (see the module docstring).
    """
    predicted = parse_levels(gazetteer, prediction)
    expected = parse_levels(gazetteer, target)
    invalid = predicted.has_admin and not predicted.valid_chain and not vouched_by(predicted, expected)
    return ItemScore(
        exact=exact_match(prediction, target) and not abstained,
        levels=level_agreement(predicted, expected),
        detail_kept=detail_of(gazetteer, prediction, detail) == detail_of(gazetteer, target, detail),
        invalid_chain=invalid and not abstained,
        input_class=input_class,
        abstained=abstained,
    )


@dataclass(frozen=True)
class ChoiceContext:
    """Where the answer sits among the gazetteer's candidates for one test input."""

    candidates: int  # how many the gazetteer proposes (at most its cap)
    answer_rank: int | None  # the answer's place in the gazetteer's ranking (0: the prior's choice); None: not one
    listed_first: bool  # the answer's chain is the first one the prompt lists (prompt.candidate_chains)

    @property
    def ambiguous(self) -> bool:
        return self.candidates >= 2


def choice_context(address: str, target: str) -> ChoiceContext:
    """The :class:`ChoiceContext` of one test pair, from the gazetteer's candidates for a bare ``address``."""
    candidates = address_candidates(address)
    wanted = normalize_text(target)
    rank = next((i for i, c in enumerate(candidates) if normalize_text(c.text) == wanted), None)
    first = candidate_chains(candidates)[:1]
    return ChoiceContext(len(candidates), rank, rank is not None and first == [candidates[rank].chain.text()])


def versus_prior(exact: Sequence[bool], contexts: Sequence[ChoiceContext]) -> dict[str, Any] | None:
    """Exact match (``exact``: one flag per item) on the items with ≥ 2 candidates, overall and where the prior is
    wrong / the answer is listed first or not; None when no item has two candidates. ``contexts`` align with
    ``exact``."""
    pairs = [(bool(flag), context) for flag, context in zip(exact, contexts) if context.ambiguous]
    if not pairs:
        return None
    among = [(flag, c) for flag, c in pairs if c.answer_rank is not None]
    return {
        "items": len(pairs),
        "answer_among_candidates": len(among),
        "exact": Rate.of(flag for flag, _ in pairs).to_dict(),
        "prior_wrong": Rate.of(flag for flag, c in among if c.answer_rank > 0).to_dict(),
        "listed_first": Rate.of(flag for flag, c in among if c.listed_first).to_dict(),
        "not_listed_first": Rate.of(flag for flag, c in among if not c.listed_first).to_dict(),
    }


def classify_input(address: str, gazetteer: Any) -> str:
    """The input class of a bare ``address`` (one of INPUT_CLASSES), as :func:`data.input_classes.input_class`
    defines it."""
    return input_class(address, gazetteer)


# ---------------------------------------------------------------- aggregates


def wilson_interval(successes: int, total: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion; (0, 1) when there is no data."""
    if total <= 0:
        return (0.0, 1.0)
    if not 0 <= successes <= total:
        raise ValueError(f"successes must be between 0 and total ({total}), got {successes}")
    p = successes / total
    denominator = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denominator
    half_width = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denominator
    low = 0.0 if successes == 0 else max(0.0, centre - half_width)  # exact bounds, not 0.9999999999999999
    high = 1.0 if successes == total else min(1.0, centre + half_width)
    return (low, high)


@dataclass(frozen=True)
class Rate:
    """A proportion with its 95% Wilson interval."""

    count: int
    total: int
    value: float
    low: float
    high: float

    @classmethod
    def of(cls, flags: Iterable[bool]) -> "Rate":
        flags = list(flags)
        count, total = sum(bool(flag) for flag in flags), len(flags)
        low, high = wilson_interval(count, total)
        return cls(count, total, count / total if total else 0.0, low, high)

    def to_dict(self) -> dict[str, Any]:
        return {"count": self.count, "total": self.total, "value": self.value, "ci95": [self.low, self.high]}


def quality(scores: Sequence[ItemScore]) -> dict[str, Any]:
    """Exact, coverage, accuracy-when-answered, per-level, detail-kept and invalid-chain rates of a group."""
    return {
        "n": len(scores),
        "exact": Rate.of(s.exact for s in scores).to_dict(),
        "coverage": Rate.of(not s.abstained for s in scores).to_dict(),
        "answered_exact": Rate.of(s.exact for s in scores if not s.abstained).to_dict(),
        "levels": {level: Rate.of(s.levels[level] for s in scores).to_dict() for level in LEVELS},
        "detail_kept": Rate.of(s.detail_kept for s in scores).to_dict(),
        "invalid_chain": Rate.of(s.invalid_chain for s in scores).to_dict(),
    }


def by_input_class(scores: Sequence[ItemScore]) -> dict[str, dict[str, Any]]:
    """:func:`quality` per input class, known classes first, only classes that occur."""
    present = {s.input_class for s in scores}
    order = [c for c in INPUT_CLASSES if c in present] + sorted(present - set(INPUT_CLASSES))
    return {name: quality([s for s in scores if s.input_class == name]) for name in order}


def percentile(values: Sequence[float], fraction: float) -> float:
    """Linear-interpolated percentile (fraction in [0, 1]) of a non-empty sequence."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * fraction
    lower = math.floor(position)
    upper = min(lower + 1, len(ordered) - 1)
    return ordered[lower] + (ordered[upper] - ordered[lower]) * (position - lower)


def latency_summary(latencies: Iterable[float | None]) -> dict[str, Any]:
    """Per-address latency (seconds) and throughput (addresses per second of prediction time).

    Latencies are amortized (a batch's wall time divided by its size), so their sum is the
    prediction wall time. Items without a latency (predictions made elsewhere) are left out.
    """
    measured = [float(value) for value in latencies if value is not None]
    if not measured:
        return {"measured": 0, "mean_s": None, "p50_s": None, "p95_s": None, "total_s": None,
                "throughput_per_s": None}
    total = sum(measured)
    return {
        "measured": len(measured),
        "mean_s": statistics.fmean(measured),
        "p50_s": percentile(measured, 0.50),
        "p95_s": percentile(measured, 0.95),
        "total_s": total,
        "throughput_per_s": len(measured) / total if total > 0 else None,
    }


@dataclass
class ScoredItem:
    """One test item with a system's answer and its score (what worst-error lists show)."""

    index: int
    source: str
    target: str
    prediction: str
    score: ItemScore
    latency_s: float | None = None
    extras: dict[str, Any] = field(default_factory=dict)  # the answer's extra keys (candidates, …)


def worst_errors(items: Sequence[ScoredItem], limit: int) -> list[dict[str, Any]]:
    """The ``limit`` most severe wrong answers (see :attr:`ItemScore.severity`), test order on ties."""
    wrong = [item for item in items if not item.score.exact]
    wrong.sort(key=lambda item: (tuple(-part for part in item.score.severity), item.index))
    return [{
        "index": item.index,
        "input": item.source,
        "expected": item.target,
        "got": item.prediction,
        "wrong_levels": [level for level, ok in item.score.levels.items() if not ok],
        "detail_kept": item.score.detail_kept,
        "invalid_chain": item.score.invalid_chain,
        "abstained": item.score.abstained,
        "input_class": item.score.input_class,
    } for item in wrong[:max(0, limit)]]


def model_choices(items: Sequence[ScoredItem]) -> dict[str, Any] | None:
    """For constrained decoding: how many items had ≥ 2 candidates (the model chose), and exact among them.

    None when no answer came from constrained decoding (free decoding, rules, endpoints). Items with
    one candidate are decided by the gazetteer alone; these are the ones the model decided.
    """
    if not any(item.extras.get("decoding") in ("constrained", "free_fallback") for item in items):
        return None
    chosen = [item for item in items if len(item.extras.get("candidates") or ()) >= 2]
    fallback = sum(item.extras.get("decoding") == "free_fallback" for item in items)
    return {"items": len(items), "chosen": len(chosen), "free_fallback": fallback,
            "exact_when_chosen": Rate.of(item.score.exact for item in chosen).to_dict()}


def summarize(items: Sequence[ScoredItem], *, worst: int = 10,
              contexts: Sequence[ChoiceContext] | None = None) -> dict[str, Any]:
    """Everything a report shows for one system (``versus_prior`` when ``contexts``, aligned with ``items``)."""
    scores = [item.score for item in items]
    return {
        "versus_prior": versus_prior([s.exact for s in scores], contexts) if contexts is not None else None,
        **quality(scores),
        "by_class": by_input_class(scores),
        "latency": latency_summary(item.latency_s for item in items),
        "worst_errors": worst_errors(items, worst),
        "model_choices": model_choices(items),
    }
