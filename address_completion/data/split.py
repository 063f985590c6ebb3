"""Split (short -> full) address pairs into train.json / dev.json / test.json without leakage.

Exact duplicates and near-duplicates (equal once every digit run is masked) are removed, keeping the
first. Pairs that share a normalized address — as target or as input — always land in the same split,
so no answer (and no input) seen in training reappears in dev or test; so do pairs whose targets lie on
the same street (or village) of the same county (建设路12号 and 建设路40号 of 碑林区), so no street seen in
training is tested on. With --holdout-counties, a
fraction of whole counties is kept out of train: their pairs go to dev/test only, on top of the pairs
the ratios give them from the other counties, to measure generalisation to unseen counties.
Deterministic for --seed: the same input and seed give byte-identical files.

Library use: :func:`split_pairs` (pure) and :func:`split_file` (read, split, write).
"""

from __future__ import annotations

import argparse
import functools
import math
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

from ..files import atomic_files, check_apart, check_output_folder, check_writable, clean_stale_siblings, output_lock
from ..flags import user_path
from .dataio import FORMATS, json_line, read_records
from ..errors import ConfigError, DataError
from .formats import LAYOUTS
from .gazetteer import load_gazetteer, normalize_address
from .prompt import strip_prefix
from ..runtime import logger

SPLIT_NAMES = ("train", "dev", "test")
DEFAULT_RATIOS = (0.7, 0.15, 0.15)
DEFAULT_SEED = 42
# \d matches every Unicode decimal digit, so ASCII 467 and full-width ４６７ are masked alike.
DIGIT_RUN = re.compile(r"\d+")
# A character no address contains ("#" would collide with house numbers such as 3#楼).
DIGIT_PLACEHOLDER = "\x00"
MAX_COUNTIES_SHOWN = 10

# A street (or village) in the detail: the first run of name characters ending in a street word (建设路, 长安南街,
# 中山大道, 王家村). The run stops at digits, separators and 号, so 12号楼 is never taken for part of a name.
# A numbered highway (212省道, 312国道, X038乡道) is a street too: many POI addresses lie on one, and their
# digits would otherwise leave them without a street.
STREET = re.compile(r"[A-Za-z]?\d{1,4}(?:国道|省道|县道|乡道)"
                    r"|[^\d\s,，、;；()（）\[\]【】\-_/#号]{1,12}?(?:大道|大街|路|街|巷|弄|胡同|村)")

Record = Mapping[str, str]
CountyLookup = Callable[[str], Optional[str]]
StreetLookup = Callable[[str], Optional[str]]


@dataclass
class SplitResult:
    """The three splits (records in input order) and what was dropped on the way."""

    train: list[dict[str, str]] = field(default_factory=list)
    dev: list[dict[str, str]] = field(default_factory=list)
    test: list[dict[str, str]] = field(default_factory=list)
    exact_duplicates: int = 0
    near_duplicates: int = 0
    skipped: int = 0
    held_out_counties: list[str] = field(default_factory=list)
    held_out_pairs: int = 0  # pairs of held-out counties (all in dev/test)
    unknown_county: int = 0  # pairs whose county the gazetteer could not find (never held out)
    shared_streets: int = 0  # streets that two or more distinct target addresses lie on (each kept in one split)

    def splits(self) -> dict[str, list[dict[str, str]]]:
        return {"train": self.train, "dev": self.dev, "test": self.test}

    def counts(self) -> dict[str, int]:
        return {name: len(records) for name, records in self.splits().items()}

    def summary(self) -> str:
        """Human-readable report, one fact per line."""
        lines = [f"{name}: {count} pairs" for name, count in self.counts().items()]
        lines.append(f"removed duplicates: {self.exact_duplicates} exact, {self.near_duplicates} near "
                     "(equal with digits masked)")
        lines.append(f"skipped bad records: {self.skipped}")
        if self.shared_streets:
            lines.append(f"kept together by street: {self.shared_streets} streets with 2+ addresses, each in one split")
        if self.held_out_counties:
            shown = ", ".join(self.held_out_counties[:MAX_COUNTIES_SHOWN])
            more = len(self.held_out_counties) - MAX_COUNTIES_SHOWN
            lines.append(f"held out of train: {len(self.held_out_counties)} counties, {self.held_out_pairs} pairs "
                         f"in dev/test ({shown}{f' and {more} more' if more > 0 else ''})")
            if self.unknown_county:
                lines.append(f"county not found by the gazetteer (never held out): {self.unknown_county} pairs")
        return "\n".join(lines)


# ---------------------------------------------------------------- normalization


def address_key(text: str) -> str:
    """The key under which two addresses count as the same address (what keeps the splits disjoint).

    The gazetteer's normalization (NFKC, so IME full-width ４６７号 / Ａ座 equal their ASCII forms; no
    whitespace, since spaces between levels are typing noise; no leading 中国), then casefold (A座 = a座).
    Digits are kept: 扬子江南路467号 and 扬子江南路12号 are different addresses; masking them here would
    merge every house on a street into one group and make the split sizes lumpy. Pairs that differ only
    in digits in both input and target are removed as near-duplicates instead (:func:`mask_digits`).
    """
    return normalize_address(text).casefold()


def source_address(record: Record) -> str:
    """The bare address of a record's ``src`` as read (prompt prefix stripped): the one place split strips it, so
    ``补齐五级行政地址: 碑林区…`` and ``碑林区…`` are the same input."""
    return strip_prefix(record["src"])


def mask_digits(text: str) -> str:
    """``text`` with every digit run (ASCII or full-width) replaced by one placeholder."""
    return DIGIT_RUN.sub(DIGIT_PLACEHOLDER, text)


def remove_duplicates(records: Sequence[Record]) -> tuple[list[dict[str, str]], int, int]:
    """Records without exact and digit-masked duplicates (first kept), plus how many of each were removed.

    The prompt prefix is ignored, so ``补齐五级行政地址: 碑林区…`` and ``碑林区…`` are the same input.
    """
    kept: list[dict[str, str]] = []
    seen_exact: set[tuple[str, str]] = set()
    seen_masked: set[tuple[str, str]] = set()
    exact = near = 0
    for record in records:
        source, target = source_address(record), record["tgt"].strip()
        masked = (mask_digits(source), mask_digits(target))
        if (source, target) in seen_exact:
            exact += 1
        elif masked in seen_masked:
            near += 1
        else:
            kept.append({"src": record["src"], "tgt": record["tgt"]})
        seen_exact.add((source, target))
        seen_masked.add(masked)
    return kept, exact, near


def leakage_groups(records: Sequence[Record], street_of: Optional[StreetLookup] = None) -> list[list[int]]:
    """Indices of records that must share a split, groups ordered by their first record.

    Two records are linked when they share a normalized target, or when the input of one equals the
    input or target of another (union-find over normalized addresses), or — with ``street_of`` (target ->
    street key or None) — when their targets lie on the same street.
    """
    parent: dict[str, str] = {}

    def find(key: str) -> str:
        parent.setdefault(key, key)
        while parent[key] != key:
            parent[key] = parent[parent[key]]
            key = parent[key]
        return key

    keys = []
    for record in records:
        source_key = address_key(source_address(record))
        target_key = address_key(record["tgt"])
        root_source, root_target = find(source_key), find(target_key)
        if root_source != root_target:
            parent[root_source] = root_target
        street = street_of(record["tgt"]) if street_of is not None else None
        if street is not None:  # "\x00": no address key starts so, so a street never merges with an address
            root_street, root_target = find("\x00" + street), find(target_key)
            if root_street != root_target:
                parent[root_street] = root_target
        keys.append(target_key)
    groups: dict[str, list[int]] = {}
    for index, key in enumerate(keys):
        groups.setdefault(find(key), []).append(index)
    return list(groups.values())


# ---------------------------------------------------------------- validation


def validate_ratios(ratios: Sequence[float]) -> tuple[float, float, float]:
    """Three finite non-negative numbers summing to 1 (train, dev, test), else ConfigError."""
    values = tuple(ratios)
    if len(values) != 3:
        raise ConfigError(f"--ratios needs three numbers (train,dev,test), got {len(values)}: {values}")
    try:
        numbers = tuple(float(value) for value in values)
    except (TypeError, ValueError):
        raise ConfigError(f"--ratios must be numbers, got {values}") from None
    if any(not math.isfinite(value) or value < 0 for value in numbers):
        raise ConfigError(f"--ratios must be non-negative, got {','.join(map(str, values))}")
    if not math.isclose(sum(numbers), 1.0, abs_tol=1e-6):
        raise ConfigError(f"--ratios must sum to 1, got {','.join(map(str, values))} (sum {sum(numbers):g}); "
                          "e.g. 0.7,0.15,0.15")
    return numbers  # type: ignore[return-value]


def parse_ratios(text: str) -> tuple[float, float, float]:
    """``"0.8,0.1,0.1"`` -> (0.8, 0.1, 0.1), validated."""
    parts = [part.strip() for part in text.split(",")]
    numbers = []
    for part in parts:
        try:
            numbers.append(float(part))
        except ValueError:
            raise ConfigError(f"--ratios: {part!r} is not a number; expected TRAIN,DEV,TEST such as "
                              "0.7,0.15,0.15") from None
    return validate_ratios(numbers)


def validate_holdout(fraction: float, ratios: Sequence[float]) -> float:
    if not (isinstance(fraction, (int, float)) and math.isfinite(fraction) and 0 <= fraction < 1):
        raise ConfigError(f"--holdout-counties is the fraction of counties kept out of train: a number in "
                          f"[0, 1), got {fraction!r}")
    if fraction > 0 and ratios[1] + ratios[2] == 0:
        raise ConfigError("--holdout-counties puts whole counties into dev/test, but their ratios are both 0")
    return float(fraction)


# ---------------------------------------------------------------- splitting


def county_key(parsed: Any) -> Optional[str]:
    """Province + city + county of a parsed address; the city stands in where there is no county (东莞)."""
    if not (parsed.county or parsed.city):
        return None
    parts = [parsed.province, parsed.city, parsed.county]
    unique = [part for index, part in enumerate(parts) if part and part not in parts[:index]]
    return "".join(unique)


def street_key(parsed: Any) -> Optional[str]:
    """County key + the first street (or village) of the detail of a parsed address, or None without either."""
    county = county_key(parsed)
    match = STREET.search(parsed.rest)
    return f"{county}|{match.group()}" if county and match else None


def gazetteer_street_lookup() -> StreetLookup:
    """Street key of a full address (:func:`street_key`), found with the project's gazetteer."""
    gazetteer = load_gazetteer()
    return lambda address: street_key(gazetteer.parse(address))


def gazetteer_county_lookup() -> CountyLookup:
    """County key of a full address, found with the project's gazetteer."""
    gazetteer = load_gazetteer()
    return lambda address: county_key(gazetteer.parse(address))


def choose_held_out_counties(counties: Sequence[Optional[str]], fraction: float, rng: random.Random) -> list[str]:
    """round(fraction × number of counties) counties, at least 1 and leaving at least 1 for train."""
    distinct = sorted({county for county in counties if county})
    if len(distinct) < 2:
        raise DataError(f"--holdout-counties needs pairs from at least 2 counties; found {len(distinct)}")
    count = min(max(1, round(fraction * len(distinct))), len(distinct) - 1)
    return sorted(rng.sample(distinct, count))


def assign_groups(sizes: Sequence[int], ratios: Sequence[float], rng: random.Random) -> list[int]:
    """Split index (0 train, 1 dev, 2 test) for each group of ``sizes[group]`` records.

    Groups are visited in random order; each goes to the split (with a ratio > 0) furthest below its
    target size, so the sizes track the ratios as closely as whole groups allow.
    """
    targets = [ratio * sum(sizes) for ratio in ratios]
    filled = [0] * len(ratios)
    order = list(range(len(sizes)))
    rng.shuffle(order)
    assignment = [0] * len(sizes)
    allowed = [index for index, ratio in enumerate(ratios) if ratio > 0]
    for group in order:
        chosen = max(allowed, key=lambda index: (targets[index] - filled[index], -index))
        assignment[group] = chosen
        filled[chosen] += sizes[group]
    return assignment


def held_out_ratios(ratios: Sequence[float]) -> tuple[float, float, float]:
    """Held-out pairs go to dev and test only, in the proportion of their ratios."""
    evaluation = ratios[1] + ratios[2]
    return 0.0, ratios[1] / evaluation, ratios[2] / evaluation


def split_pairs(records: Sequence[Record], ratios: Sequence[float] = DEFAULT_RATIOS, seed: int = DEFAULT_SEED,
                holdout_counties: float = 0.0, *, county_of: Optional[CountyLookup] = None,
                street_of: Optional[StreetLookup] = None, by_street: bool = True) -> SplitResult:
    """Deduplicate ``records`` ({"src", "tgt"}) and split them into train/dev/test (pure: no I/O).

    ``county_of`` maps a target to its county key; by default the gazetteer is used, and only when
    ``holdout_counties`` > 0. ``street_of`` maps a target to its street key (default: the gazetteer's reading,
    :func:`street_key`); with ``by_street`` False addresses on one street may land in different splits.
    """
    ratios = validate_ratios(ratios)
    holdout_counties = validate_holdout(holdout_counties, ratios)
    unique, exact, near = remove_duplicates(records)
    result = SplitResult(exact_duplicates=exact, near_duplicates=near)
    if not unique:
        return result
    rng = random.Random(seed)
    # cached: leakage_groups and the count below read each target's street
    street_of = functools.lru_cache(maxsize=None)(street_of or gazetteer_street_lookup()) if by_street else None
    groups = leakage_groups(unique, street_of)
    if street_of is not None:
        addresses_on: dict[str, set[str]] = {}
        for record in unique:
            street = street_of(record["tgt"])
            if street is not None:
                addresses_on.setdefault(street, set()).add(address_key(record["tgt"]))
        result.shared_streets = sum(len(addresses) > 1 for addresses in addresses_on.values())
    split_of_record: dict[int, int] = {}
    if holdout_counties > 0:
        county_of = county_of or gazetteer_county_lookup()
        counties = [county_of(record["tgt"]) for record in unique]
        result.unknown_county = sum(county is None for county in counties)
        result.held_out_counties = choose_held_out_counties(counties, holdout_counties, rng)
        chosen = set(result.held_out_counties)
        held_out = [group for group in groups if any(counties[index] in chosen for index in group)]
        groups = [group for group in groups if not any(counties[index] in chosen for index in group)]
        result.held_out_pairs = sum(map(len, held_out))
        split_of_record.update(_assign_records(held_out, held_out_ratios(ratios), rng))
    # The other pairs are split by the ratios as if there were no holdout, so dev/test hold seen counties too.
    split_of_record.update(_assign_records(groups, ratios, rng))
    splits = (result.train, result.dev, result.test)
    for index, record in enumerate(unique):  # input order inside each split keeps files easy to diff
        splits[split_of_record[index]].append(record)
    return result


def _assign_records(groups: list[list[int]], ratios: Sequence[float], rng: random.Random) -> dict[int, int]:
    """Record index -> split index, whole groups at a time."""
    assignment = assign_groups([len(group) for group in groups], ratios, rng)
    return {index: split_index for group, split_index in zip(groups, assignment) for index in group}


def split_paths(output_dir: str | Path) -> dict[str, Path]:
    return {name: Path(output_dir) / f"{name}.json" for name in SPLIT_NAMES}


def split_file(input_path: str | Path, output_dir: str | Path, *, ratios: Sequence[float] = DEFAULT_RATIOS,
               seed: int = DEFAULT_SEED, holdout_counties: float = 0.0, force: bool = False,
               skip_bad: bool = False, fmt: Optional[str] = None,
               county_of: Optional[CountyLookup] = None) -> SplitResult:
    """Read a pair file, split it, and write ``train.json``, ``dev.json``, ``test.json`` (JSON lines).

    Refuses existing split files unless ``force``. The three files are published together
    (:func:`files.atomic_files`): a failure, even at the last rename, leaves the earlier split as it was.
    One run per output folder at a time (:func:`files.output_lock`).
    """
    with output_lock(output_dir, "--output"):
        return _split_file(input_path, output_dir, ratios=ratios, seed=seed, holdout_counties=holdout_counties,
                           force=force, skip_bad=skip_bad, fmt=fmt, county_of=county_of)


def _split_file(input_path: str | Path, output_dir: str | Path, *, ratios: Sequence[float], seed: int,
                holdout_counties: float, force: bool, skip_bad: bool, fmt: Optional[str],
                county_of: Optional[CountyLookup]) -> SplitResult:
    validate_holdout(holdout_counties, validate_ratios(ratios))
    if not str(output_dir).strip():  # --output "$DIR" with DIR unset: not the current folder
        raise ConfigError("--output is empty (an unset variable?); give the folder for train.json, dev.json, test.json")
    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise ConfigError(f"--output {output_dir} is a file; give a folder for train.json, dev.json, test.json")
    check_output_folder(output_dir)  # a file among its parents, or an unwritable one: refused before the work
    paths = split_paths(output_dir)
    for name, path in paths.items():
        check_apart({f"--output ({path.name})": path}, {"INPUT": input_path})
    for path in paths.values():  # a folder in a split file's place would fail the rename after the others
        clean_stale_siblings(path)  # before the checks: a split file a killed run had moved aside is put back
        if path.is_dir():
            raise ConfigError(f"--output {output_dir}: {path} is a folder; remove it or choose another --output")
        check_writable(path, force)
    read = read_records(input_path, required=("src", "tgt"), fmt=fmt, skip_bad=skip_bad)
    if read.layout not in (None, "src_tgt"):  # the project's own format needs no word
        logger.info("%s: record format %s", input_path, read.describe())
    for reason in read.skip_reasons:
        logger.warning("skipped %s", reason)
    if not read.records:
        raise DataError("no usable pairs in the file", input_path)
    result = split_pairs(read.records, ratios, seed, holdout_counties, county_of=county_of)
    result.skipped = read.skipped
    splits = result.splits()
    empty = [name for (name, records), ratio in zip(splits.items(), ratios) if ratio > 0 and not records]
    if empty:  # an empty dev or test file would be reported as a split and fail (or mislead) training later
        raise DataError(f"{len(read.records)} usable pair(s) leave {' and '.join(empty)} empty with --ratios "
                        f"{','.join(f'{ratio:g}' for ratio in ratios)}; give more pairs, or ratio 0 for a split you "
                        "do not want", input_path)
    with atomic_files(list(paths.values()), overwrite=force) as handles:
        for handle, records in zip(handles, (splits[name] for name in paths)):
            handle.writelines(json_line(record) for record in records)
    return result


# ---------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", type=user_path, help="pair file with src/tgt fields: JSON lines, JSON array or CSV")
    parser.add_argument("--output", "-o", required=True, type=user_path, metavar="DIR",
                        help="folder for train.json, dev.json, test.json")
    parser.add_argument("--ratios", default=",".join(f"{ratio:g}" for ratio in DEFAULT_RATIOS),
                        metavar="TRAIN,DEV,TEST", help="split fractions, non-negative, summing to 1")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="random seed (same seed, same files)")
    parser.add_argument("--holdout-counties", type=float, default=0.0, metavar="FRACTION",
                        help="fraction of counties kept out of train; their pairs go to dev/test only, "
                             "the other pairs are split by --ratios")
    parser.add_argument("--format", dest="fmt", choices=[fmt for fmt in FORMATS if fmt != "text"] + list(LAYOUTS),
                        default=None, help="input file format, or record format of a JSON / JSON-lines file (src_tgt, "
                                           "alpaca, sharegpt, messages); when omitted, chosen by the extension and "
                                           "content")
    parser.add_argument("--skip-bad", action="store_true", help="skip and count malformed records instead of failing")
    parser.add_argument("--force", action="store_true", help="overwrite existing split files")


def run(args: argparse.Namespace) -> int:
    result = split_file(args.input, args.output, ratios=parse_ratios(args.ratios), seed=args.seed,
                        holdout_counties=args.holdout_counties, force=args.force, skip_bad=args.skip_bad,
                        fmt=args.fmt)
    print(f"wrote {', '.join(str(path) for path in split_paths(args.output).values())}")
    print(result.summary())
    return 0
