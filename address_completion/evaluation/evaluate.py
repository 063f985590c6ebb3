"""Accuracy report comparing systems on a test set: the fine-tuned model against its base, larger
Qwen2.5 models behind an OpenAI-compatible endpoint, predictions made elsewhere, and the rule-based
parsers jionlp and cpca.

Usage: ``address-completion evaluate configs/eval_0p5b.yaml [--limit 200] [--set settings.batch_size=8]``.
The YAML names a test file (``{"src", "tgt"}`` JSON lines), an output folder, settings and systems
(see docs/evaluation.md). Relative paths are resolved against the current directory.

Predictions are appended to ``OUTPUT/predictions/<system>.jsonl`` batch by batch (never rewritten), so
a killed run resumes where it stopped. They are reused only while the system's fingerprint (model
files, adapter, endpoint, max_new_tokens, prompt prefix, …) is unchanged: otherwise the old file is
moved to ``<system>.stale.jsonl`` and the system starts afresh. Cached answers are matched by input
text, so a changed test set (or ``--limit``) reuses the answers for inputs it contains and keeps the
others. At the end ``predictions/<system>.scored.jsonl`` (one line per test item, in order, with its
scores), ``report.md``, ``report.json`` and ``comparison.png`` are written.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import time
from collections import Counter
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

from .. import files
from ..data import dataio
from ..data.gazetteer import load_gazetteer
from ..errors import AddressCompletionError, DataError, OutputExistsError
from ..flags import GivenOnce, flag_name, shown_value
from .metrics import INPUT_CLASSES, ChoiceContext, ScoredItem, choice_context, classify_input, score_item, summarize
from ..data.prompt import strip_prefix
from ..progress import progress as progress_tracker
from ..runtime import logger
from .report import summary_lines, write_report
from .settings_model import text
from .registry import create_system
from .config import EvalConfig, Override, SETTING_RULES, as_override, load_config
from .systems import RECORD_KEYS, EvalSettings, System, SystemSpec, as_answer

REPORT_FILES = ("report.json", "report.md", "predictions")


# ---------------------------------------------------------------- prediction cache


def input_address(text: str, prefix: str) -> str:
    """The bare address in a test record's src or a cached record's prompt: the evaluation's one place that strips
    the prompt prefix. Cached answers are matched on this exact input text (noise such as full-width digits is
    part of it)."""
    return strip_prefix(text, prefix)


class PredictionCache:
    """Append-only ``predictions/<system>.jsonl`` plus ``<system>.meta.json`` holding its fingerprint."""

    def __init__(self, directory: Path, system: str, fingerprint: dict[str, Any], prefix: str):
        self.path = directory / f"{system}.jsonl"
        self.meta_path = directory / f"{system}.meta.json"
        self.stale_path = directory / f"{system}.stale.jsonl"
        self.system = system
        self.fingerprint = json.loads(json.dumps(fingerprint, default=str))
        self.prefix = prefix
        self.records: dict[str, dict[str, Any]] = {}

    def load(self, fresh: bool = False) -> dict[str, dict[str, Any]]:
        """Cached records by input; discards (keeps aside) a cache made with another fingerprint."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            previous = self._stored_fingerprint()
            if fresh or previous != self.fingerprint:
                self._set_aside("--fresh was given" if fresh else self._difference(previous))
        if not self.path.exists():
            dataio.write_json(self.meta_path, {"system": self.system, "fingerprint": self.fingerprint})
            self.path.touch()
        self.records = self._read()
        return self.records

    def _stored_fingerprint(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.meta_path.read_text(encoding="utf-8")).get("fingerprint")
        except (OSError, ValueError, AttributeError):
            return None

    def _difference(self, previous: dict[str, Any] | None) -> str:
        if previous is None:
            return f"{self.meta_path.name} is missing or unreadable"
        changed = sorted(key for key in set(previous) | set(self.fingerprint)
                         if previous.get(key) != self.fingerprint.get(key))
        return "changed: " + ", ".join(f"{key} {previous.get(key)!r} -> {self.fingerprint.get(key)!r}"
                                       for key in changed)

    def _set_aside(self, reason: str) -> None:
        os.replace(self.path, self.stale_path)
        logger.warning("system %s: cached predictions no longer apply (%s); moved them to %s and starting afresh",
                       self.system, reason, self.stale_path)

    def _read(self) -> dict[str, dict[str, Any]]:
        """Parse the cache; an unterminated last line (a write cut short by a kill) is truncated away."""
        data = self.path.read_bytes()
        complete = data.rfind(b"\n") + 1
        if complete < len(data):
            with open(self.path, "r+b") as handle:
                handle.truncate(complete)
            data = data[:complete]
        records = {}
        for raw in data.split(b"\n"):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError):
                record = None
            if not _is_cache_record(record):
                logger.warning("system %s: ignoring a malformed line in %s", self.system, self.path)
                continue
            records[input_address(record["prompt"], self.prefix)] = record
        return records

    def append(self, records: Sequence[dict[str, Any]]) -> None:
        """Add finished predictions durably (one flush + fsync per batch)."""
        with open(self.path, "a", encoding="utf-8", newline="\n") as handle:
            for record in records:
                handle.write(dataio.json_line(record))
            handle.flush()
            os.fsync(handle.fileno())
        for record in records:
            self.records[input_address(record["prompt"], self.prefix)] = record


def _is_cache_record(record: Any) -> bool:
    return (isinstance(record, dict) and isinstance(record.get("prompt"), str)
            and isinstance(record.get("predict"), str) and isinstance(record.get("abstained", False), bool))


# ---------------------------------------------------------------- running


@dataclass
class EvalItem:
    """One test pair: ``source`` as the file holds it (written back as the records' prompt), ``address`` the bare
    input every system and score is given (prompt prefix stripped once, when the test file is read)."""

    index: int
    source: str
    address: str
    target: str
    input_class: str
    choice: ChoiceContext | None = None  # where the answer sits among the gazetteer's candidates


def read_test_set(config: EvalConfig, gazetteer: Any) -> tuple[list[EvalItem], int]:
    """The (limited) test items with their input class, and how many records the file holds."""
    records = dataio.read_records(config.test_file, required=("src", "tgt")).records
    if not records:
        raise DataError("the test file holds no records", config.test_file)
    limit = config.settings.limit
    chosen = records[:limit] if limit else records
    items = [eval_item(index, record, gazetteer, config.settings.prompt_prefix) for index, record in enumerate(chosen)]
    return items, len(records)


def eval_item(index: int, record: dict[str, str], gazetteer: Any, prefix: str) -> EvalItem:
    """The :class:`EvalItem` of one test record: where the test set's addresses lose the prompt prefix."""
    address = input_address(record["src"], prefix)
    return EvalItem(index, record["src"], address, record["tgt"], classify_input(address, gazetteer),
                    choice_context(address, record["tgt"]))


def choice_counts(contexts: Sequence[ChoiceContext]) -> dict[str, int]:
    """How many test items have ≥ 2 candidates, and among those: the answer is one of them, the gazetteer ranks
    it first (the prior is right), the prompt lists it first."""
    ambiguous = [c for c in contexts if c.ambiguous]
    return {"ambiguous": len(ambiguous),
            "answer_among_candidates": sum(c.answer_rank is not None for c in ambiguous),
            "prior_right": sum(c.answer_rank == 0 for c in ambiguous),
            "listed_first": sum(c.listed_first for c in ambiguous)}


def chunks(values: Sequence[Any], size: int) -> list[list[Any]]:
    return [list(values[start:start + size]) for start in range(0, len(values), size)]


def run_system(system: System, items: Sequence[EvalItem], cache: PredictionCache, settings: EvalSettings,
               progress: bool = True) -> dict[str, dict[str, Any]]:
    """Predict every item not yet cached, appending each finished batch to the cache."""
    pending: dict[str, EvalItem] = {}
    for item in items:
        if item.address not in cache.records and item.address not in pending:
            pending[item.address] = item
    cached = sum(item.address in cache.records for item in items)
    logger.info("system %s: %d of %d test items cached, %d inputs to predict", system.name, cached, len(items),
                len(pending))
    if not pending:
        return cache.records
    todo = list(pending.values())
    system.check_inputs([item.address for item in todo])
    with progress_tracker(len(todo), f"system {system.name}", "addr", enabled=progress) as bar:
        for batch in chunks(todo, settings.batch_size):
            started = time.perf_counter()
            answers = system.predict([item.address for item in batch])
            latency = (time.perf_counter() - started) / len(batch) if system.MEASURES_LATENCY else None
            if len(answers) != len(batch):
                raise AddressCompletionError(f"system {system.name} returned {len(answers)} answers for "
                                             f"{len(batch)} inputs")
            cache.append([prediction_record(item, as_answer(answer, system.name), latency)
                          for item, answer in zip(batch, answers)])
            bar.update(len(batch))
    return cache.records


def prediction_record(item: EvalItem, answer: dict[str, Any], latency: float | None) -> dict[str, Any]:
    """The cache line of one answer: prompt, predict, label, latency_s, abstained, then the answer's extras
    (candidates, probability, decoding, …) as the system gave them."""
    extras = {key: value for key, value in answer.items() if key not in RECORD_KEYS}
    return {"prompt": item.source, "predict": answer["predict"], "label": item.target,
            "latency_s": None if latency is None else round(latency, 6), "abstained": answer["abstained"], **extras}


def record_abstained(record: dict[str, Any]) -> bool:
    """Whether a cached record is an abstention; records written before abstentions existed are answers."""
    return record.get("abstained") is True


def score_system(items: Sequence[EvalItem], records: dict[str, dict[str, Any]], gazetteer: Any,
                 settings: EvalSettings) -> list[ScoredItem]:
    scored = []
    for item in items:
        record = records[item.address]
        score = score_item(item.address, record["predict"], item.target, gazetteer, input_class=item.input_class,
                           abstained=record_abstained(record), detail=settings.detail)
        scored.append(ScoredItem(index=item.index, source=item.address,
                                 target=item.target, prediction=record["predict"], score=score,
                                 latency_s=record.get("latency_s"),
                                 extras={key: value for key, value in record.items() if key not in RECORD_KEYS}))
    return scored


def write_scored_predictions(path: Path, items: Sequence[EvalItem], scored: Sequence[ScoredItem]) -> None:
    """One line per test item, in test-set order, with its scores and the answer's extras (the cache itself
    stays append-only)."""
    dataio.write_jsonl(path, ({"prompt": item.source, "predict": result.prediction, "label": item.target,
                               "latency_s": result.latency_s, **result.extras, **result.score.to_dict()}
                              for item, result in zip(items, scored)))


def check_output_dir(output_dir: Path, force: bool) -> None:
    """Evaluate owns its folder: refuse a non-empty folder that is not an earlier evaluation."""
    if output_dir.is_file():
        raise OutputExistsError(output_dir, "it is a file; choose a folder for output_dir")
    files.check_output_folder(output_dir, flag="output_dir")  # an unwritable folder: the message of every command
    if output_dir.is_dir() and any(output_dir.iterdir()) and not force:
        if not any((output_dir / name).exists() for name in REPORT_FILES):
            raise OutputExistsError(output_dir, "it is not an earlier evaluation's folder; choose another "
                                                "output_dir or pass --force")


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def evaluate_system(spec: SystemSpec, config: EvalConfig, items: Sequence[EvalItem], gazetteer: Any, *,
                    fresh: bool, progress: bool) -> dict[str, Any]:
    """Predict (resuming), score and summarize one system; skipped or failed systems say why."""
    entry: dict[str, Any] = {"name": spec.name, "kind": spec.kind, "options": spec.options}
    if spec.limit is not None:  # this system answers the first spec.limit items only
        items = items[:spec.limit]
        entry["limit"] = spec.limit
    system = create_system(spec, config.settings)
    reason = system.unavailable_reason()
    if reason:
        logger.warning("system %s skipped: %s", spec.name, reason)
        return {**entry, "status": "skipped", "reason": reason}
    predictions_dir = config.output_dir / "predictions"
    cache = PredictionCache(predictions_dir, spec.name, system.fingerprint(), config.settings.prompt_prefix)
    cache.load(fresh=fresh)
    try:
        records = run_system(system, items, cache, config.settings, progress)
    except AddressCompletionError as exc:
        logger.error("system %s failed: %s", spec.name, exc)
        return {**entry, "status": "failed", "reason": str(exc)}
    finally:
        system.close()
    scored = score_system(items, records, gazetteer, config.settings)
    scored_path = predictions_dir / f"{spec.name}.scored.jsonl"
    write_scored_predictions(scored_path, items, scored)
    return {**entry, "status": "ok", "predictions": str(cache.path.relative_to(config.output_dir)),
            "scored_predictions": str(scored_path.relative_to(config.output_dir)),
            "fingerprint": cache.fingerprint, "metrics": summarize(scored, worst=config.settings.worst_errors,
                                                    contexts=[item.choice for item in items])}


def run_evaluation(config: EvalConfig, *, fresh: bool = False, force: bool = False, progress: bool = True,
                   gazetteer: Any = None) -> dict[str, Any]:
    """Run every system, write the report files, and return the report (also in report.json). One run per
    output_dir at a time (:func:`files.output_lock`)."""
    with files.output_lock(config.output_dir, "output_dir"):
        return _run_evaluation(config, fresh=fresh, force=force, progress=progress, gazetteer=gazetteer)


def _run_evaluation(config: EvalConfig, *, fresh: bool, force: bool, progress: bool, gazetteer: Any) -> dict[str, Any]:
    files.check_apart({"output_dir": config.output_dir}, {"test_file": config.test_file, **{
        f"systems[{spec.name}].{key}": spec.options.get(key) for spec in config.systems
        for key in ("model", "lora_path", "path") if isinstance(spec.options.get(key), str)}})
    check_output_dir(config.output_dir, force)
    if gazetteer is None:
        gazetteer = load_gazetteer()
    items, total = read_test_set(config, gazetteer)
    config.output_dir.mkdir(parents=True, exist_ok=True)  # after the test set is known good: a refusal leaves none
    counts = Counter(item.input_class for item in items)
    classes = {name: counts[name] for name in INPUT_CLASSES if name in counts}
    classes.update({name: count for name, count in sorted(counts.items()) if name not in classes})
    report = {
        "title": config.title,
        "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config": config.source,
        "output_dir": str(config.output_dir),
        "test_set": {"path": str(config.test_file), "size": len(items), "records_in_file": total,
                     "limit": config.settings.limit, "sha256": file_digest(config.test_file), "classes": classes,
                     "choices": choice_counts([item.choice for item in items])},
        "settings": asdict(config.settings),
        "systems": [evaluate_system(spec, config, items, gazetteer, fresh=fresh, progress=progress)
                    for spec in config.systems],
    }
    report["files"] = write_report(report, config.output_dir)
    return report


# ---------------------------------------------------------------- CLI


def setting_flag(key: str) -> Any:
    """argparse type for the flag of a numeric setting: its rule from :data:`SETTING_RULES` (``float`` alone
    accepts nan, inf and -1, which would then be reported against the YAML file instead of the flag)."""
    kind, minimum = SETTING_RULES[key]
    what = "an integer" if kind is int else "a finite number"

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what} >= {minimum}, got {text!r}") from None
        if not math.isfinite(value) or value < minimum:
            raise argparse.ArgumentTypeError(f"expected {what} >= {minimum}, got {text!r}")
        return value

    parse.__name__ = key  # argparse names the type in some messages
    return parse


OVERRIDE_FLAGS = (("--test-file", "test_file", str), ("--output-dir", "output_dir", str),
                  *((flag_name(key), f"settings.{key}", setting_flag(key))
                    for key in ("batch_size", "max_new_tokens", "limit", "timeout", "retries")))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="evaluation YAML (see configs/eval_0p5b.yaml, docs/evaluation.md)")
    for flag, key, kind in OVERRIDE_FLAGS:
        # PaddleNLP's spellings (--output_dir, --batch_size, ...) are accepted too, as aliases
        alias = "--" + flag[2:].replace("-", "_")
        parser.add_argument(flag, *([alias] if alias != flag else []), dest=flag[2:].replace("-", "_"), type=kind,
                            default=None, action=GivenOnce, key=key, help=f"override {key}")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override any key, e.g. settings.concurrency=8 or systems.qwen7b.base_url=http://...")
    parser.add_argument("--systems", default=None, action=GivenOnce, hint="a comma-separated list: --systems a,b",
                        help="comma-separated names: evaluate only these systems")
    parser.add_argument("--fresh", action="store_true", help="discard cached predictions (kept as *.stale.jsonl)")
    parser.add_argument("--force", action="store_true", help="write into a non-empty folder that is not an "
                                                             "earlier evaluation")


def overrides_from_args(args: argparse.Namespace) -> list[Override]:
    """Each --set, then the dedicated flags as assignments: a flag applied last is never dropped by a --set
    replacing the mapping that holds it (--set 'settings={batch_size: 3}' --limit 2). Each keeps its spelling, so
    load_config can name both when two write the same key."""
    assignments = [as_override(assignment) for assignment in args.overrides]
    for flag, key, _ in OVERRIDE_FLAGS:
        value = getattr(args, flag.lstrip("-").replace("-", "_"))
        if value is not None:
            assignments.append(Override(f"{key}={json.dumps(value, ensure_ascii=False)}",
                                        f"{flag} {shown_value(value)}"))
    return assignments


def run(args: argparse.Namespace) -> int:
    only = [name.strip() for name in args.systems.split(",") if name.strip()] if args.systems else []
    config = load_config(args.config, overrides_from_args(args), only=only)
    report = run_evaluation(config, fresh=args.fresh, force=args.force)
    for line in summary_lines(report):
        print(line)
    failed = [entry["name"] for entry in report["systems"] if entry["status"] == "failed"]
    return 1 if failed else 0

