"""Training samples: pair files read, prompts encoded into features, packing, padding and the batch order.

Pure Python and the tokenizer: no paddle here except inside the collator's call (the arrays it returns).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from ..data import dataio
from ..data.prompt import encode_example
from ..errors import DataError
from ..runtime import logger
from .config import TrainConfig

IGNORE_INDEX = -100


@dataclass
class EncodedSplit:
    """Tokenized samples of one split, ready for the collator, plus what truncation did."""

    features: list[dict[str, list[int]]]
    pairs: list[dict[str, str]]
    truncated_source: int = 0
    truncated_sample: int = 0

    def truncation(self) -> dict[str, int]:
        return {"samples": len(self.features), "source_truncated": self.truncated_source,
                "sample_truncated": self.truncated_sample}


def build_features(prompt_ids: Sequence[int], answer_ids: Sequence[int], src_length: int,
                   max_length: int) -> tuple[dict[str, list[int]], bool, bool]:
    """Model inputs for one pair, pre-shifted because PaddleNLP's Qwen2 loss does not shift.

    The source keeps its last ``src_length`` tokens (the address end matters most; the template start
    is the same for every sample); the answer is cut so the sample fits ``max_length``. Loss is on the
    answer and its EOS only. Returns (features, source truncated, sample truncated).
    """
    prompt_ids, answer_ids = list(prompt_ids), list(answer_ids)
    source_truncated = len(prompt_ids) > src_length
    if source_truncated:
        prompt_ids = prompt_ids[-src_length:]
    sample_truncated = len(prompt_ids) + len(answer_ids) > max_length
    if sample_truncated:
        answer_ids = answer_ids[: max_length - len(prompt_ids)]
    input_ids = prompt_ids + answer_ids
    labels = [IGNORE_INDEX] * len(prompt_ids) + answer_ids
    return {"input_ids": input_ids[:-1], "labels": labels[1:]}, source_truncated, sample_truncated


def encode_pairs(tokenizer: Any, pairs: Sequence[dict[str, str]], src_length: int, max_length: int,
                 grounding: str = "none", *, seed: int | None = None,
                 no_candidate_rate: float = 0.0, detail: str | None = None) -> EncodedSplit:
    """Features of every pair through the one prompt builder (:func:`prompt.encode_example`); ``grounding``
    (with the candidates read under ``detail``) is applied here, so plain src/tgt files serve both prompt modes.

    ``seed`` (training's split; grounded prompts only): each example gets its own ``random.Random`` from
    (seed, index), which shuffles its candidate chains — the answer's position in the list then tells nothing — and,
    with probability ``no_candidate_rate``, withholds them (``候选: 无``), so the model also learns to write the
    answer itself, as it must when the gazetteer finds no division. Without ``seed``: the canonical order, as at
    inference (dev and test).
    """
    split = EncodedSplit(features=[], pairs=list(pairs))
    for index, pair in enumerate(pairs):
        candidates, rng = None, None
        if seed is not None and grounding != "none":
            rng = random.Random(f"{seed}/{index}")
            if rng.random() < no_candidate_rate:
                candidates = []
        prompt_ids, answer_ids = encode_example(tokenizer, pair["src"], pair["tgt"], grounding=grounding,
                                                candidates=candidates, rng=rng, detail=detail)
        features, source_truncated, sample_truncated = build_features(prompt_ids, answer_ids, src_length, max_length)
        split.features.append(features)
        split.truncated_source += source_truncated
        split.truncated_sample += sample_truncated
    return split


def pack_features(features: Sequence[dict[str, list[int]]], max_length: int) -> list[dict[str, list[int]]]:
    """zero_padding: samples concatenated into rows of at most ``max_length`` tokens (first fit, in order).

    Each row carries ``position_ids`` that restart at 0 for every sample; the collator turns those into
    a block-diagonal causal mask, so attention never crosses a sample boundary and each sample sees
    exactly the positions it would see alone.
    """
    rows: list[dict[str, list[int]]] = []
    for feature in features:
        length = len(feature["input_ids"])
        row = next((row for row in rows if len(row["input_ids"]) + length <= max_length), None)
        if row is None:
            row = {"input_ids": [], "labels": [], "position_ids": []}
            rows.append(row)
        row["input_ids"] += feature["input_ids"]
        row["labels"] += feature["labels"]
        row["position_ids"] += list(range(length))
    return rows


@dataclass
class PaddingCollator:
    """Pads a batch to its longest row (not to max_length), labels with -100.

    Plain rows get a 2-D attention mask; packed rows (with ``position_ids``) get a 4-D boolean mask that
    only lets a token see earlier tokens of its own sample.
    """

    pad_token_id: int
    pad_to_multiple_of: int | None = None
    pad_to_length: int | None = None

    def width(self, longest: int) -> int:
        width = max(longest, self.pad_to_length or 0)
        if self.pad_to_multiple_of:
            width = math.ceil(width / self.pad_to_multiple_of) * self.pad_to_multiple_of
        return width

    def __call__(self, features: Sequence[dict[str, list[int]]]) -> dict[str, Any]:
        import numpy as np

        width = self.width(max(len(feature["input_ids"]) for feature in features))
        input_ids = np.full((len(features), width), self.pad_token_id, dtype="int64")
        labels = np.full((len(features), width), IGNORE_INDEX, dtype="int64")
        for row, feature in enumerate(features):
            input_ids[row, : len(feature["input_ids"])] = feature["input_ids"]
            labels[row, : len(feature["labels"])] = feature["labels"]
        batch = {"input_ids": input_ids, "labels": labels}
        if "position_ids" in features[0]:
            batch.update(self._packed_mask(features, width))
        else:
            attention = np.zeros((len(features), width), dtype="int64")
            for row, feature in enumerate(features):
                attention[row, : len(feature["input_ids"])] = 1
            batch["attention_mask"] = attention
        return batch

    @staticmethod
    def _packed_mask(features: Sequence[dict[str, list[int]]], width: int) -> dict[str, Any]:
        import numpy as np

        positions = np.zeros((len(features), width), dtype="int64")
        mask = np.zeros((len(features), 1, width, width), dtype=bool)
        causal = np.tril(np.ones((width, width), dtype=bool))
        for row, feature in enumerate(features):
            length = len(feature["position_ids"])
            positions[row, :length] = feature["position_ids"]
            segment = np.cumsum(np.asarray(feature["position_ids"]) == 0)
            same_sample = segment[:, None] == segment[None, :]
            mask[row, 0, :length, :length] = same_sample & causal[:length, :length]
            padding = np.arange(length, width)
            mask[row, 0, padding, padding] = True  # padding sees itself only: no empty softmax rows
        return {"position_ids": positions, "attention_mask": mask}


# Samples sorted by length inside groups of this many batches (Hugging Face's group_by_length uses 50): large
# enough that a batch's rows have nearly equal lengths, small enough that the order stays random across groups.
GROUP_BATCHES = 50


def batch_order(lengths: Sequence[int], batch_size: int, seed: int, epoch: int, *, group_by_length: bool = True,
                drop_last: bool = False) -> list[list[int]]:
    """Sample indices of every batch of one epoch, a function of (seed, epoch) only (so a resume replays it).

    Plain: a seeded permutation cut into batches. ``group_by_length``: the permutation is cut into groups of
    :data:`GROUP_BATCHES` batches, each group sorted by length (longest first) and cut into batches, and the
    batches are shuffled; the batch holding the longest sample goes first, so the allocator's first blocks are
    its largest and later, narrower batches reuse them. Each index appears once per epoch (the last, partial
    batch is dropped with ``drop_last``).
    """
    import numpy as np

    rng = np.random.RandomState([seed, epoch])
    order = rng.permutation(len(lengths)).tolist()
    if not group_by_length:
        batches = [order[start:start + batch_size] for start in range(0, len(order), batch_size)]
        return [batch for batch in batches if len(batch) == batch_size or not drop_last]
    group = batch_size * GROUP_BATCHES
    batches = []
    for start in range(0, len(order), group):
        chunk = sorted(order[start:start + group], key=lambda index: -lengths[index])  # stable: ties keep the order
        batches += [chunk[offset:offset + batch_size] for offset in range(0, len(chunk), batch_size)]
    partial = [batch for batch in batches if len(batch) < batch_size]  # at most one: the last group's tail
    batches = [batch for batch in batches if len(batch) == batch_size]
    batches = [batches[index] for index in rng.permutation(len(batches))]
    if partial and not drop_last:
        batches += partial
    if batches:
        longest = max(range(len(batches)), key=lambda index: max(lengths[i] for i in batches[index]))
        batches.insert(0, batches.pop(longest))
    return batches


def answer_token_budget(split: EncodedSplit, max_length: int) -> int:
    """Longest answer (with EOS) in ``split`` plus a margin: enough for every exact match, no wasted steps."""
    longest = max((sum(label != IGNORE_INDEX for label in feature["labels"]) for feature in split.features), default=1)
    return max(1, min(longest + 2, max_length))


def make_collator(cfg: TrainConfig, tokenizer: Any) -> PaddingCollator:
    data_args = cfg.data_args
    return PaddingCollator(pad_token_id=int(tokenizer.pad_token_id), pad_to_multiple_of=data_args.pad_to_multiple_of,
                           pad_to_length=data_args.max_length if data_args.pad_to_max_length else None)


def read_split(folder: Path, name: str) -> list[dict[str, str]]:
    """Pairs of ``folder/name``: JSON lines or a JSON array, in the src/tgt, alpaca, sharegpt or OpenAI messages
    record format (dataio / formats; a bad record or an empty file is a DataError naming the file)."""
    read = dataio.read_records(folder / name, required=("src", "tgt"), fmt=_json_kind(folder / name))
    if read.layout and read.layout != "src_tgt":
        logger.info("%s: record format %s", folder / name, read.describe())
    records = read.records
    if not records:
        raise DataError('empty file: training needs at least one {"src": ..., "tgt": ...} line', folder / name)
    return records


def _json_kind(path: Path) -> str:
    """"json" for a file whose first non-blank character is "[" (a JSON array, as LLaMA-Factory's alpaca files
    are), else "jsonl" (train.json is JSON lines in PaddleNLP's layout, whatever its extension)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
    except OSError:
        return "jsonl"  # read_records names the problem
    return "json" if head.startswith(b"[") else "jsonl"


def sample_pairs(pairs: list[dict[str, str]], limit: int | None, seed: int) -> list[dict[str, str]]:
    """``limit`` pairs drawn once with ``seed`` (in file order), or all of them."""
    if limit is None or limit >= len(pairs):
        return pairs
    chosen = sorted(random.Random(seed).sample(range(len(pairs)), limit))
    return [pairs[index] for index in chosen]
