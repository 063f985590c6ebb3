#!/usr/bin/env python
"""Candidate recall and candidates per input of the gazetteer (gazetteer.completion_candidates).

For every ``src`` / ``tgt`` pair of a split: the candidate answers the gazetteer proposes for ``src``
(the task prefix stripped, as the completer does), then
  recall        share of inputs whose expected answer ``tgt`` is among the candidate texts
                (both compared after metrics.normalize_text: NFKC, no whitespace);
  top-1         share whose first candidate (the documented prior's best) is ``tgt``;
  candidates    per input: mean, share with 0 (free fallback) / 1 (no model call) / 2+ (scored), max.
Rows: every input, then each input class (metrics.classify_input). Gazetteer speed: addresses/s of
completion_candidates alone, timed after the gazetteer and its typo index are built (build time shown).
Pure Python: no Paddle, no model.

    python bench/candidates.py                       # the bundled test split, data/test.json
    python bench/candidates.py --split dev --json    # JSON instead of the table
    python bench/candidates.py --input my_pairs.jsonl --misses 20
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Sequence

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from address_completion.errors import AddressCompletionError  # noqa: E402

SPLITS = ("train", "dev", "test")


def split_path(split: str) -> Path:
    """The bundled file of ``split`` (data/<split>.json)."""
    return ROOT / "data" / f"{split}.json"


def measure(pairs: Sequence[dict[str, str]]) -> dict[str, Any]:
    """Candidates of every ``src``, checked against its ``tgt``.

    Returns {"items": [one dict per pair: src, tgt, input_class, candidates (texts, best first), found (bool),
    top1 (bool)], "seconds": wall time of completion_candidates over all pairs, "build_seconds": time to
    load the gazetteer and build its typo index}.
    """
    from address_completion.data.gazetteer import load_gazetteer
    from address_completion.data.gazetteer.candidates import _fuzzy_index
    from address_completion.evaluation.metrics import classify_input, normalize_text
    from address_completion.data.prompt import address_candidates

    started = time.perf_counter()
    gazetteer = load_gazetteer()
    _fuzzy_index(gazetteer)  # built on first use: not a cost per address
    build_seconds = time.perf_counter() - started
    started = time.perf_counter()
    found = [address_candidates(pair["src"]) for pair in pairs]
    seconds = time.perf_counter() - started
    items = []
    for pair, candidates in zip(pairs, found):
        expected = normalize_text(pair["tgt"])
        texts = [candidate.text for candidate in candidates]
        normalized = [normalize_text(text) for text in texts]
        items.append({"src": pair["src"], "tgt": pair["tgt"], "input_class": classify_input(pair["src"], gazetteer),
                      "candidates": texts, "found": expected in normalized,
                      "top1": bool(normalized) and normalized[0] == expected})
    return {"items": items, "seconds": seconds, "build_seconds": build_seconds}


def summarize(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Recall, top-1 recall and the candidate-count distribution of ``items`` (shares in [0, 1])."""
    total = len(items)
    counts = [len(item["candidates"]) for item in items]
    share = (lambda hits: hits / total) if total else (lambda hits: float("nan"))
    return {"inputs": total, "recall": share(sum(item["found"] for item in items)),
            "top1": share(sum(item["top1"] for item in items)),
            "mean_candidates": share(sum(counts)), "share_0": share(counts.count(0)),
            "share_1": share(counts.count(1)), "share_2_plus": share(sum(count >= 2 for count in counts)),
            "max_candidates": max(counts, default=0)}


def report(measured: dict[str, Any], source: str) -> dict[str, Any]:
    """The JSON summary: every input, each input class present, gazetteer speed."""
    from address_completion.evaluation.metrics import INPUT_CLASSES

    items = measured["items"]
    classes = [name for name in INPUT_CLASSES if any(item["input_class"] == name for item in items)]
    classes += sorted({item["input_class"] for item in items} - set(classes))
    return {"input": source, "all": summarize(items),
            "by_input_class": {name: summarize([item for item in items if item["input_class"] == name])
                               for name in classes},
            "gazetteer": {"build_s": measured["build_seconds"], "wall_s": measured["seconds"],
                          "addr_per_s": len(items) / measured["seconds"] if measured["seconds"] else float("nan")},
            "misses": [{key: item[key] for key in ("src", "tgt", "input_class", "candidates")}
                       for item in items if not item["found"]]}


def percent(value: float) -> str:
    return f"{100 * value:.1f}%"


def print_table(summary: dict[str, Any], misses: int) -> None:
    header = ["inputs", "n", "recall", "top-1", "cand/input", "0 cand", "1 cand", "2+ cand", "max"]
    rows = [("all", summary["all"])] + list(summary["by_input_class"].items())
    lines = [[name, str(row["inputs"]), percent(row["recall"]), percent(row["top1"]),
              f"{row['mean_candidates']:.2f}", percent(row["share_0"]), percent(row["share_1"]),
              percent(row["share_2_plus"]), str(row["max_candidates"])] for name, row in rows]
    widths = [max(len(cell) for cell in column) for column in zip(header, *lines)]
    print(f"candidates for {summary['input']}")
    for cells in [header, ["-" * width for width in widths], *lines]:
        print("  ".join(cell.ljust(width) if index == 0 else cell.rjust(width)
                        for index, (cell, width) in enumerate(zip(cells, widths))))
    speed = summary["gazetteer"]
    print(f"gazetteer: {speed['addr_per_s']:.0f} addresses/s (completion_candidates, {summary['all']['inputs']} "
          f"inputs in {speed['wall_s']:.2f} s; loading + typo index {speed['build_s']:.1f} s, not counted)")
    shown = summary["misses"][:misses]
    if shown:
        print(f"expected answer not among the candidates ({len(shown)} of {len(summary['misses'])}):")
    for miss in shown:
        print(f"  [{miss['input_class']}] {miss['src']} -> expected {miss['tgt']}; candidates: "
              f"{' | '.join(miss['candidates']) or 'none'}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--split", choices=SPLITS, default="test", help="bundled split (data/<split>.json)")
    source.add_argument("--input", help="a src/tgt file instead of a bundled split (any format dataio reads)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N pairs")
    parser.add_argument("--misses", type=int, default=10, help="inputs without the expected answer to list")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON instead of the table")
    args = parser.parse_args(argv)
    if args.limit is not None and args.limit < 1:
        parser.error(f"--limit must be at least 1, got {args.limit}")
    if args.misses < 0:
        parser.error(f"--misses must be at least 0, got {args.misses}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from address_completion.data.dataio import read_records

    path = Path(args.input) if args.input else split_path(args.split)
    try:
        pairs = read_records(path).records[:args.limit]
    except AddressCompletionError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if not pairs:
        print(f"error: {path}: no src/tgt pair to measure", file=sys.stderr)
        return 2
    summary = report(measure(pairs), str(path))
    if args.json:
        print(json.dumps(summary, ensure_ascii=False, indent=1))
    else:
        print_table(summary, args.misses)
    return 0


if __name__ == "__main__":
    sys.exit(main())
