"""LoRA or full fine-tuning from a run_finetune-style JSON config: train CONFIG.json [--key value ...].

Reads ``train.json`` / ``dev.json`` (JSON lines with ``src``/``tgt``) from ``dataset_name_or_path``,
trains with PaddleNLP's SFTTrainer and writes into ``output_dir``: the adapter (``lora_config.json`` +
safetensors weights) or the full model, the tokenizer, ``train_config.json`` (the resolved config),
``metrics.jsonl`` and ``summary.json``. Evaluation during training decodes dev greedily and reports exact-match
``eval_accuracy`` (PaddleNLP's own "accuracy" is teacher-forced token accuracy) and ``eval_loss``.
An output_dir with checkpoints needs --resume or --overwrite. Command-line ``--key value`` pairs after
the config override its keys; see configs/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import re
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from ..data import dataio
from .config import (CHECKPOINT_PREFIX, RUN_OUTPUT_FILES, SCHEDULER_STATE_FILES, TrainConfig, checkpoint_is_complete,
                     checkpoints_in, load_config, resume_checkpoint)
from ..errors import ConfigError, DataError
from ..data.prompt import encode_example
from ..memory import HeapTrimmer, requested_mmap_threshold, set_mmap_threshold
from ..runtime import distributed_rank, logger, quiet_paddlenlp_logs

IGNORE_INDEX = -100
METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"
RESOLVED_CONFIG_FILE = "train_config.json"
LOSS_SUM_FILE = "address_completion_loss.json"  # in each checkpoint: the loss summed over every step so far
# Log keys that are bookkeeping, not metrics.
UNLOGGED_KEYS = ("progress_or_epoch", "global_step")


# ---------------------------------------------------------------- samples


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


# ---------------------------------------------------------------- data


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


# ---------------------------------------------------------------- evaluation by generation


@dataclass
class GenerationEval:
    """Exact match of real decoding (free or constrained, as the config says) on a fixed set of pairs (the
    metric best-model selection uses)."""

    tokenizer: Any
    pairs: list[dict[str, str]]
    batch_size: int
    max_new_tokens: int
    grounding: str = "none"
    decoding: str = "free"
    detail: str = "verbatim"  # gazetteer.DETAILS
    last_predictions: list[str] = field(default_factory=list)

    def records(self) -> list[dict[str, str]]:
        """The last predictions as predictions.jsonl records (prompt, predict, label)."""
        return [{"prompt": pair["src"], "predict": prediction, "label": pair["tgt"]}
                for pair, prediction in zip(self.pairs, self.last_predictions)]

    def __call__(self, model: Any) -> dict[str, float]:
        from ..inference.generate import Completer
        from ..evaluation.metrics import exact_match

        if not self.pairs:
            return {}
        was_training = model.training
        model.eval()
        try:
            completer = Completer(model=model, tokenizer=self.tokenizer, max_new_tokens=self.max_new_tokens,
                                  grounding=self.grounding, decoding=self.decoding, detail=self.detail)
            predictions = completer.complete([pair["src"] for pair in self.pairs], batch_size=self.batch_size)
        finally:
            if was_training:
                model.train()
        self.last_predictions = predictions
        correct = sum(exact_match(prediction, pair["tgt"]) for prediction, pair in zip(predictions, self.pairs))
        return {"accuracy": correct / len(self.pairs), "exact_matches": float(correct)}


def answer_token_budget(split: EncodedSplit, max_length: int) -> int:
    """Longest answer (with EOS) in ``split`` plus a margin: enough for every exact match, no wasted steps."""
    longest = max((sum(label != IGNORE_INDEX for label in feature["labels"]) for feature in split.features), default=1)
    return max(1, min(longest + 2, max_length))


# ---------------------------------------------------------------- model


def lora_target_patterns(names: Sequence[str] | str | None, model: Any) -> list[str]:
    """Regexes for LoRAConfig: run_finetune's defaults, or plain layer names (``q_proj``) turned into ``.*q_proj.*``."""
    if names is None:
        from paddlenlp.trl.llm_utils import get_lora_target_modules

        return list(get_lora_target_modules(model))
    names = [names] if isinstance(names, str) else list(names)
    return [f".*{name}.*" if re.fullmatch(r"[A-Za-z0-9_]+", name) else name for name in names]


def check_patterns_match(key: str, given: Sequence[str] | str | None, patterns: Sequence[str],
                         names: Sequence[str]) -> None:
    """ConfigError naming the first pattern of config key ``key`` that matches none of ``names`` (PaddleNLP
    fullmatches each pattern against layer or parameter names and ignores one that matches nothing)."""
    shown = [given] if isinstance(given, str) else list(given or patterns)
    for index, pattern in enumerate(patterns):
        try:
            matched = any(re.fullmatch(pattern, name) for name in names)
        except re.error as error:
            raise ConfigError(f"{key}: {shown[index]!r} is not a valid regular expression ({error})") from None
        if not matched:
            example = next((name for name in names if name.endswith("q_proj")), names[0] if names else "")
            hint = " (for LoRA: q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj)" \
                if key == "target_modules" else ""
            raise ConfigError(f"{key}: {shown[index]!r} matches no layer of the model; names look like "
                              f"{example}{hint}")


def check_lora_rank(rank: int, patterns: Sequence[str], model: Any) -> None:
    """ConfigError when ``lora_rank`` exceeds the smallest dimension of a layer LoRA adapts: a rank above
    min(in, out) adds parameters (an adapter larger than the model) but no expressive power."""
    smallest = None
    for name, layer in model.named_sublayers():
        weight = getattr(layer, "weight", None)
        if weight is None or len(weight.shape) != 2 or not any(re.fullmatch(pattern, name) for pattern in patterns):
            continue
        size = min(int(weight.shape[0]), int(weight.shape[1]))
        if smallest is None or size < smallest[1]:
            smallest = (name, size)
    if smallest is not None and rank > smallest[1]:
        raise ConfigError(f"lora_rank {rank} exceeds {smallest[1]}, the smallest dimension of the layers LoRA adapts "
                          f"({smallest[0]} is {smallest[1]} wide); a larger rank only adds parameters. Choose "
                          f"lora_rank <= {smallest[1]}")


def add_neftune(model: Any, noise_alpha: float) -> Any:
    """NEFTune: uniform noise of size alpha/sqrt(length*hidden) on the input embeddings, in training only."""
    import paddle

    embeddings = model.get_input_embeddings()

    def add_noise(layer: Any, inputs: Any, output: Any) -> Any:
        if not layer.training:
            return output
        magnitude = noise_alpha / math.sqrt(output.shape[-2] * output.shape[-1])
        return output + paddle.uniform(output.shape, dtype=output.dtype, min=-magnitude, max=magnitude)

    return embeddings.register_forward_post_hook(add_noise)


def build_model(cfg: TrainConfig) -> Any:
    """The base model (run_finetune's config handling), wrapped in LoRA when ``lora`` is true."""
    from paddlenlp.transformers.configuration_utils import LlmMetaConfig

    from ..model.modeling import load_model

    model_args, training_args = cfg.model_args, cfg.training_args
    overrides = {key: getattr(training_args, key) for key in LlmMetaConfig._get_defaults()
                 if hasattr(training_args, key)}
    overrides.update(seq_length=cfg.data_args.max_length, ignore_index=IGNORE_INDEX)
    model = load_model(model_args.model_name_or_path, dtype=cfg.dtype, config_overrides=overrides)
    if model_args.neftune:
        add_neftune(model, model_args.neftune_noise_alpha)
    if model_args.lora:
        model = wrap_lora(model, cfg)
    return model


def wrap_lora(model: Any, cfg: TrainConfig) -> Any:
    from paddlenlp.peft import LoRAConfig, LoRAModel

    from ..model.modeling import load_adapter

    model_args = cfg.model_args
    if model_args.lora_path:
        lora_model = load_adapter(model, model_args.lora_path, base=model_args.model_name_or_path, flag="lora_path")
        lora_model.mark_only_lora_as_trainable()
        return lora_model
    target_modules = lora_target_patterns(cfg.extras["target_modules"], model)
    if cfg.extras["target_modules"] is not None:  # the defaults are PaddleNLP's own for this architecture
        check_patterns_match("target_modules", cfg.extras["target_modules"], target_modules,
                             [name for name, _ in model.named_sublayers()])
    check_lora_rank(model_args.lora_rank, target_modules, model)
    if cfg.extras["trainable_modules"]:
        check_patterns_match("trainable_modules", cfg.extras["trainable_modules"], cfg.extras["trainable_modules"],
                             [name for name, _ in model.named_parameters()])
    lora_config = LoRAConfig(
        target_modules=target_modules,
        r=model_args.lora_rank, lora_alpha=cfg.extras["lora_alpha"], lora_dropout=cfg.extras["lora_dropout"],
        rslora=model_args.rslora, lora_plus_scale=model_args.lora_plus_scale, pissa=False, merge_weights=False,
        tensor_parallel_degree=cfg.training_args.tensor_parallel_degree, dtype=cfg.dtype,
        base_model_name_or_path=model_args.model_name_or_path, use_quick_lora=model_args.use_quick_lora,
        trainable_modules=cfg.extras["trainable_modules"])
    lora_model = LoRAModel(model, lora_config)
    if not any(not parameter.stop_gradient for parameter in lora_model.parameters()):
        raise ConfigError(f"target_modules {cfg.extras['target_modules']} matched no layer; layer names look like "
                          "model.layers.0.self_attn.q_proj (use q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, "
                          "down_proj)")
    return lora_model


def answer_loss(model: Any, inputs: dict[str, Any]) -> Any | None:
    """Mean cross-entropy over answer tokens, projecting only those positions onto the vocabulary.

    The causal LM's own loss computes logits for every position, prompt included; with Qwen2.5's
    151,936-word vocabulary that projection dominates a small model's step. The result is the same
    loss (labels are already shifted). Returns None for models without the usual base/lm_head layout.
    """
    import paddle
    import paddle.nn.functional as functional

    from ..inference.generate import body_and_head

    parts = body_and_head(model)
    if parts is None:
        return None
    base, head = parts
    arguments = {key: inputs[key] for key in ("input_ids", "attention_mask", "position_ids") if key in inputs}
    hidden = base(**arguments, use_cache=False, return_dict=False)[0]
    labels = inputs["labels"].reshape([-1])
    positions = paddle.nonzero(labels != IGNORE_INDEX).reshape([-1])
    selected = paddle.gather(hidden.reshape([-1, hidden.shape[-1]]), positions)
    logits = head(selected).astype("float32")
    return functional.cross_entropy(logits, paddle.gather(labels, positions))


def trainable_parameters(model: Any) -> tuple[int, int]:
    trainable = total = 0
    for parameter in model.parameters():
        count = int(math.prod(parameter.shape))
        total += count
        trainable += 0 if parameter.stop_gradient else count
    return trainable, total


# ---------------------------------------------------------------- trainer


def make_trainer(cfg: TrainConfig, model: Any, tokenizer: Any, train_data: Any, eval_data: Any,
                 callbacks: list[Any]) -> Any:
    """PaddleNLP's SFTTrainer with generation-based accuracy and a seeded, resumable data order."""
    from paddle.io import DistributedBatchSampler
    from paddlenlp.trainer import PrinterCallback
    from paddlenlp.trl import SFTTrainer

    from .launch import shard

    class EpochSeededSampler(DistributedBatchSampler):
        """Batches of :func:`batch_order`: (seed, epoch) decide them, so a resumed run replays the interrupted
        epoch's exact order; with group_by_length, rows of a batch have nearly equal lengths (less padding,
        few distinct batch shapes).

        With several processes (paddle.distributed.launch) every process draws the same global batches of
        ``batch_size * replicas`` samples and takes every ``replicas``-th sample of each from its rank on
        (launch.shard), so one step of N processes trains on what one process would with N times the batch.
        """

        def __init__(self, dataset: Any, batch_size: int, seed: int, drop_last: bool, group_by_length: bool,
                     replicas: int = 1, rank: int = 0):
            super().__init__(dataset, batch_size=batch_size, num_replicas=replicas, rank=rank, shuffle=True,
                             drop_last=drop_last)
            self.seed = seed
            self.group_by_length = group_by_length
            self.lengths = [len(dataset[index]["input_ids"]) for index in range(len(dataset))]

        def __iter__(self):
            batches = batch_order(self.lengths, self.batch_size * max(1, self.nranks), self.seed, self.epoch,
                                  group_by_length=self.group_by_length, drop_last=self.drop_last)
            self.epoch += 1
            for batch in batches:
                yield shard(batch, self.nranks, self.local_rank) if self.nranks > 1 else batch

    class AddressTrainer(SFTTrainer):
        tokens_trained = 0
        loss_sum = 0.0  # this process's step losses, added up as PaddleNLP adds them for train_loss
        loss_sum_before: float | None = 0.0  # the resumed checkpoint's sum (None: an older checkpoint without it)

        def _get_train_sampler(self):
            return EpochSeededSampler(self.train_dataset, self.args.per_device_train_batch_size, self.args.seed,
                                      self.args.dataloader_drop_last, cfg.extras["group_by_length"],
                                      replicas=max(1, self.args.dataset_world_size),
                                      rank=max(0, self.args.dataset_rank))

        def training_step(self, model, inputs, *args, **kwargs):
            mask = inputs.get("attention_mask")
            if mask is not None and len(mask.shape) == 2:
                self.tokens_trained += int(mask.sum())
            else:
                self.tokens_trained += int((inputs["input_ids"] != tokenizer.pad_token_id).sum())
            loss = super().training_step(model, inputs, *args, **kwargs)
            self.loss_sum += float(loss)
            return loss

        def mean_train_loss(self) -> float | None:
            """The loss averaged over every step of the run, the steps before a resume included."""
            steps = int(self.state.global_step)
            if self.loss_sum_before is None or steps == 0:
                return None
            return (self.loss_sum_before + self.loss_sum) / steps

        def _save_checkpoint(self, model, metrics=None):
            super()._save_checkpoint(model, metrics=metrics)
            folder = Path(self.args.output_dir) / f"{CHECKPOINT_PREFIX}{self.state.global_step}"
            if not self.args.should_save:  # another process of a multi-process run: rank 0 writes
                return
            if cfg.extras["safe_serialization"]:
                scheduler_state_to_json(self.lr_scheduler, folder)
            if folder.is_dir() and self.loss_sum_before is not None:
                dataio.write_json(folder / LOSS_SUM_FILE, {"global_step": int(self.state.global_step),
                                                           "loss_sum": self.loss_sum_before + self.loss_sum})
            if self.args.local_rank == -1:  # PaddleNLP prunes only when local_rank == 0, i.e. never on one device
                self._rotate_checkpoints(use_mtime=False, output_dir=self.args.output_dir)

        def _load_optimizer_and_scheduler(self, checkpoint):
            state_file = Path(checkpoint) / SCHEDULER_STATE_FILES[0] if checkpoint else None
            if state_file is None or not state_file.is_file() or self.args.ignore_load_lr_and_optim:
                return super()._load_optimizer_and_scheduler(checkpoint)
            try:  # PaddleNLP loads the optimizer state, then insists on its pickled scheduler.pdparams
                super()._load_optimizer_and_scheduler(checkpoint)
            except ValueError as exc:
                if not str(exc).startswith("scheduler-file not found"):
                    raise
                if self.runtime_timer.timer.started_:
                    self.runtime_timer.stop()
            self.lr_scheduler.set_state_dict(json.loads(state_file.read_text(encoding="utf-8")))

        def compute_loss(self, model, inputs, return_outputs=False):
            loss = answer_loss(model, inputs)
            if loss is None:
                return super().compute_loss(model, inputs, return_outputs)
            return (loss, (loss,)) if return_outputs else loss

        def evaluation_loop(self, dataloader, description, prediction_loss_only=None, ignore_keys=None,
                            metric_key_prefix="eval", max_eval_iters=-1):
            output = super().evaluation_loop(dataloader, description, prediction_loss_only, ignore_keys,
                                             metric_key_prefix, max_eval_iters)
            generation = getattr(dataloader.dataset, "generation", None)  # set by make_dataset
            if generation is not None:
                for key, value in generation(self.model).items():
                    output.metrics[f"{metric_key_prefix}_{key}"] = value
                if cfg.data_args.save_generation_output and self.args.should_save:
                    dataio.write_jsonl(Path(self.args.output_dir) / f"{metric_key_prefix}_predictions.jsonl",
                                       generation.records())
            return output

    trainer = AddressTrainer(model=model, args=cfg.training_args, train_dataset=train_data, eval_dataset=eval_data,
                             tokenizer=tokenizer, data_collator=make_collator(cfg, tokenizer), callbacks=callbacks)
    if cfg.training_args.disable_tqdm:
        trainer.pop_callback(PrinterCallback)  # MetricsRecorder logs one readable line instead of raw dicts
    logger.debug("trainer callbacks: %s", trainer.callback_handler.callback_list)
    return trainer


def scheduler_state_to_json(scheduler: Any, checkpoint: Path) -> None:
    """Replace the checkpoint's pickled scheduler.pdparams (PaddleNLP writes no other form) by scheduler.json.

    The state of Paddle's LR schedulers is a few numbers (``last_epoch``, ``last_lr``); JSON holds them
    exactly. The JSON file is complete before the pickle goes, so the checkpoint stays complete throughout.
    """
    pickled = checkpoint / SCHEDULER_STATE_FILES[1]
    if not pickled.is_file():
        return
    dataio.write_json(checkpoint / SCHEDULER_STATE_FILES[0], {key: _json_number(value) for key, value in
                                                               scheduler.state_dict().items()})
    pickled.unlink()


def _json_number(value: Any) -> Any:
    """Plain Python numbers for JSON (schedulers may hold NumPy scalars)."""
    return value.item() if hasattr(value, "item") else value


def make_collator(cfg: TrainConfig, tokenizer: Any) -> PaddingCollator:
    data_args = cfg.data_args
    return PaddingCollator(pad_token_id=int(tokenizer.pad_token_id), pad_to_multiple_of=data_args.pad_to_multiple_of,
                           pad_to_length=data_args.max_length if data_args.pad_to_max_length else None)


def make_dataset(features: list[dict[str, list[int]]], generation: GenerationEval | None = None) -> Any:
    from paddlenlp.datasets import MapDataset

    dataset = MapDataset(features)
    dataset.generation = generation
    return dataset


def heap_trimmer_callback(widest_first: bool) -> Any:
    """A TrainerCallback running :class:`runtime.HeapTrimmer` after every optimizer step (peak RSS stays put);
    ``widest_first``: this process's first batch is its widest (length-grouped batches on rank 0)."""
    from paddlenlp.trainer import TrainerCallback

    class HeapTrimming(TrainerCallback):
        def __init__(self):
            self.trimmer = HeapTrimmer(widest_first=widest_first)

        def on_step_end(self, args, state, control, **kwargs):
            self.trimmer.after_step()

    return HeapTrimming()


def metrics_recorder(path: Path, keep_until_step: int | None, progress_bar: bool = False, write: bool = True) -> Any:
    """A TrainerCallback appending every log (step, epoch, loss, learning rate, eval metrics) to ``path``.

    PaddleNLP's ``state.log_history`` stays empty, so this is where metrics are kept. On resume, records
    after the checkpoint's step (written by the interrupted run) are dropped. ``write`` false (a process other
    than rank 0 of a multi-process run) keeps the records in memory only and logs nothing.
    """
    from paddlenlp.trainer import TrainerCallback

    records: list[dict[str, Any]] = []
    if keep_until_step is not None and path.is_file():
        records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        records = [record for record in records if record.get("step", 0) <= keep_until_step]

    class MetricsRecorder(TrainerCallback):
        def __init__(self):
            self.records = records
            self.baseline: tuple[float, int] | None = None  # (time, step) when this process's first step began

        def on_step_begin(self, args, state, control, **kwargs):
            if self.baseline is None:  # after a resume, global_step is the checkpoint's step here
                self.baseline = (time.monotonic(), int(state.global_step))

        def on_log(self, args, state, control, logs=None, **kwargs):
            values = {key: _plain(value) for key, value in (logs or {}).items() if key not in UNLOGGED_KEYS}
            record = {"step": int(state.global_step), "epoch": round(float(state.epoch or 0.0), 4), **values}
            self.records.append(record)
            if not write:
                return
            dataio.write_jsonl(path, self.records)
            if progress_bar:  # a line printed between bar updates would tear the bar
                from tqdm import tqdm

                tqdm.write(format_record(record, state.max_steps), file=sys.stderr)
            else:  # a log: the rate and ETA a bar would show
                logger.info("%s%s", format_record(record, state.max_steps), self.eta(record["step"], state.max_steps))

        def eta(self, step: int, max_steps: int) -> str:
            """"  0.52 steps/s, ETA 3m10s" from the steps this process ran (empty before the first one ended)."""
            if self.baseline is None or step <= self.baseline[1] or not max_steps:
                return ""
            from ..progress import duration

            rate = (step - self.baseline[1]) / max(1e-9, time.monotonic() - self.baseline[0])
            return f"  {rate:.3g} steps/s, ETA {duration(max(0, max_steps - step) / rate)}"

    return MetricsRecorder()


def _plain(value: Any) -> Any:
    try:
        return round(float(value), 8) if not isinstance(value, (str, bool)) else value
    except (TypeError, ValueError):
        return str(value)


def format_record(record: dict[str, Any], max_steps: int) -> str:
    shown = [f"step {record['step']}/{max_steps}", f"epoch {record['epoch']:.2f}"]
    for key, value in record.items():
        if key == "learning_rate" or key.endswith(("loss", "_accuracy")):
            shown.append(f"{key} {value:.4g}")
    return "  ".join(shown)


# ---------------------------------------------------------------- the run


# What a run writes into output_dir besides checkpoints (removed by --overwrite; other files stay).
RUN_OUTPUT_PATTERNS = (*RUN_OUTPUT_FILES, "lora_model_state*", "peft_model*", "model_state*", "model-*.safetensors",
                       "model.safetensors*", "training_args.bin", "*_predictions.jsonl")


def clear_previous_run(output_dir: Path) -> None:
    """--overwrite: remove an earlier run's checkpoints and results (other files stay)."""
    for checkpoint in checkpoints_in(output_dir):
        shutil.rmtree(checkpoint)
    for pattern in RUN_OUTPUT_PATTERNS:
        for path in output_dir.glob(pattern):
            if path.is_file():
                path.unlink()


@dataclass
class PreparedData:
    train: EncodedSplit | None
    dev: EncodedSplit | None
    test: EncodedSplit | None


def read_pairs(cfg: TrainConfig) -> dict[str, list[dict[str, str]]]:
    """Every pair file the run needs, read (and so validated) before any model is loaded."""
    args, folder = cfg.training_args, cfg.dataset_dir
    pairs = {}
    if args.do_train:
        pairs["train"] = read_split(folder, "train.json")
    if cfg.evaluates:
        pairs["dev"] = sample_pairs(read_split(folder, "dev.json"), cfg.extras["eval_samples"], args.seed)
    if args.do_predict:
        if not (folder / "test.json").is_file():
            raise ConfigError(f"do_predict is true but {folder} has no test.json")
        pairs["test"] = read_split(folder, "test.json")
    return pairs


def prepare_data(cfg: TrainConfig, tokenizer: Any, pairs: dict[str, list[dict[str, str]]]) -> PreparedData:
    """Tokenized splits; truncation is counted and reported once per split."""
    data_args = cfg.data_args
    splits = {name: encode_pairs(tokenizer, records, data_args.src_length, data_args.max_length,
                                 cfg.extras["grounding"], detail=cfg.extras["detail"],
                                 **({"seed": cfg.training_args.seed, "no_candidate_rate": cfg.extras[
                                     "no_candidate_rate"]} if name == "train" else {}))
              for name, records in pairs.items()}
    for name, split in splits.items():
        if split.truncated_source or split.truncated_sample:
            logger.warning("warning: %s: %d source(s) cut to src_length=%d, %d sample(s) cut to max_length=%d",
                           name, split.truncated_source, data_args.src_length, split.truncated_sample,
                           data_args.max_length)
    return PreparedData(splits.get("train"), splits.get("dev"), splits.get("test"))


@dataclass
class TrainingRun:
    """Everything a run holds once the model is loaded."""

    cfg: TrainConfig
    tokenizer: Any
    data: PreparedData
    trainer: Any
    recorder: Any


def warn_if_model_never_chooses(pairs: Sequence[dict[str, str]], metric: str | None) -> int:
    """With constrained decoding, the dev inputs the model decides are those with ≥ 2 candidates; when there
    are none, eval_accuracy measures the gazetteer alone — say so once. Returns that number of inputs."""
    from ..data.prompt import address_candidates

    chosen = sum(len(address_candidates(pair["src"])) >= 2 for pair in pairs)
    if not chosen:
        logger.warning("warning: none of the %d evaluation inputs has two or more candidates, so eval_accuracy "
                       "(constrained decoding) measures the gazetteer's candidates, not the model%s", len(pairs),
                       "; metric_for_best_model: accuracy cannot choose a checkpoint" if metric and "accuracy" in metric
                       else "")
    return chosen


def generation_eval(cfg: TrainConfig, tokenizer: Any, split: EncodedSplit) -> GenerationEval:
    budget = cfg.extras["eval_max_new_tokens"] or answer_token_budget(split, cfg.data_args.max_length)
    if cfg.extras["decoding"] == "constrained":
        warn_if_model_never_chooses(split.pairs, cfg.training_args.metric_for_best_model)
    return GenerationEval(tokenizer, split.pairs, cfg.training_args.per_device_eval_batch_size, budget,
                          grounding=cfg.extras["grounding"], decoding=cfg.extras["decoding"],
                          detail=cfg.extras["detail"])


def set_up(cfg: TrainConfig, pairs: dict[str, list[dict[str, str]]], checkpoint: Path | None) -> TrainingRun:
    """Tokenizer, samples, model and trainer (seeded before the LoRA weights are drawn)."""
    from paddlenlp.trainer import set_seed

    from ..model.modeling import load_tokenizer

    set_mmap_threshold()  # 32 MiB unless ADDRESS_COMPLETION_MMAP_THRESHOLD says otherwise: before the model is built
    set_seed(cfg.training_args.seed)
    tokenizer = load_tokenizer(cfg.model_args.tokenizer_name_or_path or cfg.model_args.model_name_or_path)
    data = prepare_data(cfg, tokenizer, pairs)
    model = build_model(cfg)
    train_data = eval_data = None
    if data.train is not None:
        features = data.train.features
        train_data = make_dataset(pack_features(features, cfg.data_args.max_length) if cfg.data_args.zero_padding
                                  else features)
    if data.dev is not None:
        eval_data = make_dataset(data.dev.features, generation_eval(cfg, tokenizer, data.dev))
    cfg.output_dir.mkdir(parents=True, exist_ok=True)
    recorder = metrics_recorder(cfg.output_dir / METRICS_FILE, _checkpoint_step(checkpoint) if checkpoint else None,
                                progress_bar=not cfg.training_args.disable_tqdm, write=distributed_rank()[0] == 0)
    # batch_order puts the widest batch first; a resumed run starts mid-epoch
    widest_first = cfg.extras["group_by_length"] and distributed_rank()[0] == 0 and checkpoint is None
    trainer = make_trainer(cfg, model, tokenizer, train_data, eval_data,
                           [recorder, heap_trimmer_callback(widest_first)])
    if checkpoint is not None:
        trainer.loss_sum_before = resumed_loss_sum(checkpoint)
    return TrainingRun(cfg, tokenizer, data, trainer, recorder)


def resumed_loss_sum(checkpoint: Path) -> float | None:
    """The loss summed over the steps before ``checkpoint`` (None when the checkpoint does not record it)."""
    try:
        record = json.loads((checkpoint / LOSS_SUM_FILE).read_text(encoding="utf-8"))
        return float(record["loss_sum"])
    except (OSError, ValueError, KeyError, TypeError):
        logger.warning("%s does not record the loss of the steps before it; train_loss in the summary covers only "
                       "the steps after the resume", checkpoint)
        return None


def train(config_path: str | Path | None, overrides: Sequence[str] | dict[str, Any] = (), *, resume: bool = False,
          overwrite: bool = False, device: str | None = None, debug: bool = False) -> dict[str, Any]:
    """Validate, train, evaluate and write every output; returns the summary (also in summary.json).

    Under paddle.distributed.launch every process runs this; only rank 0 checks the output folder for an
    earlier run (the others would find rank 0's fresh files), clears it and writes.
    """
    started = time.time()
    cfg = load_config(config_path, overrides, device=device)  # also checks model source and dataset folder
    requested_mmap_threshold()  # a bad value is named before --overwrite clears anything (set_up applies it)
    rank, _ = distributed_rank()
    # One run per output_dir, held from before the folder is inspected to the last file written (rank 0 writes;
    # the other processes of a multi-process run belong to it).
    with dataio.output_lock(cfg.output_dir, "output_dir") if rank == 0 else contextlib.nullcontext():
        return _train_in(cfg, started, resume=resume, overwrite=overwrite)


def _train_in(cfg: TrainConfig, started: float, *, resume: bool, overwrite: bool) -> dict[str, Any]:
    """:func:`train` once output_dir is this process's."""
    rank, _ = distributed_rank()
    checkpoint = check_run_outputs(cfg, resume=resume, overwrite=overwrite or (rank != 0 and not resume))
    if rank == 0:
        remove_killed_writes(cfg.output_dir)  # the folder is this run's (locked): no writer of them is alive
    final = checkpoint is not None and resume and checkpoint_step_is_final(cfg, checkpoint)
    if final:
        finished = finished_summary(cfg.output_dir, checkpoint)
        if finished is not None:
            print(f"nothing to do: {cfg.output_dir} holds the finished run ({checkpoint.name} is its last step, "
                  f"{SUMMARY_FILE} and the {'adapter' if cfg.model_args.lora else 'model'} are written); raise "
                  "max_steps to train further", flush=True)
            return finished
        logger.info("%s is the last step of the run: writing its results without training", checkpoint)
    pairs = read_pairs(cfg)
    if checkpoint:
        from ..model.modeling import check_pickled_weights

        check_pickled_weights(checkpoint, "adapter" if cfg.model_args.lora else "model")  # older checkpoint layout
    if overwrite and rank == 0:
        clear_previous_run(cfg.output_dir)
    quiet_paddlenlp_logs()
    existing = {name for name in RUN_OUTPUT_FILES if (cfg.output_dir / name).exists()}
    weights_before = set(final_weight_files(cfg.output_dir))
    checkpoints_before = set(checkpoints_in(cfg.output_dir))
    log_dir = Path(cfg.training_args.logging_dir) if getattr(cfg.training_args, "logging_dir", None) else None
    logs_before = set(log_dir.rglob("*")) if log_dir is not None and log_dir.is_dir() else set()
    try:
        return _train_and_report(cfg, pairs, checkpoint, started, final=final)
    except BaseException:
        if rank == 0:
            remove_partial_outputs(cfg.output_dir, checkpoints_before, weights_before)
        if rank == 0 and not checkpoints_in(cfg.output_dir):  # nothing to resume: leave no file blocking a rerun
            for name in RUN_OUTPUT_FILES:
                if name not in existing:
                    (cfg.output_dir / name).unlink(missing_ok=True)
            if log_dir is not None and log_dir.is_dir():  # the failed run's VisualDL records: a half-written log
                remove_new_files(log_dir, logs_before)
        raise


def check_run_outputs(cfg: TrainConfig, *, resume: bool, overwrite: bool) -> Path | None:
    """Outputs apart from inputs, output_dir a folder, and the checkpoint to resume from (None: start fresh).

    Raises ConfigError / OutputExistsError before any model loads (see :func:`config.resume_checkpoint`).
    """
    dataio.check_apart({"output_dir": cfg.output_dir},
                       {"model_name_or_path": cfg.model_args.model_name_or_path,
                        "dataset_name_or_path": cfg.data_args.dataset_name_or_path,
                        "lora_path": cfg.model_args.lora_path})
    dataio.check_output_folder(cfg.output_dir, flag="output_dir")
    if cfg.values.get("resume_from_checkpoint"):  # an explicit checkpoint in the config is an explicit choice
        return Path(cfg.values["resume_from_checkpoint"]).expanduser()
    if cfg.training_args.do_train:
        return resume_checkpoint(cfg.output_dir, resume=resume, overwrite=overwrite)
    return None


def _train_and_report(cfg: TrainConfig, pairs: dict[str, list[dict[str, str]]], checkpoint: Path | None,
                      started: float, *, final: bool = False) -> dict[str, Any]:
    run = set_up(cfg, pairs, checkpoint)
    writer = distributed_rank()[0] == 0
    if writer:
        dataio.write_json(cfg.output_dir / RESOLVED_CONFIG_FILE, cfg.resolved())

    train_metrics: dict[str, Any] = {}
    if final:  # PaddleNLP would train one step past the end (9/8) from a checkpoint at max_steps
        restore_final_checkpoint(cfg, run.trainer, checkpoint)
        run.trainer.save_model(str(cfg.output_dir))
        if writer:
            dataio.apply_umask_to_files(cfg.output_dir.glob("*.safetensors"))
    elif cfg.training_args.do_train:
        result = run.trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
        train_metrics = dict(result.metrics)
        run.trainer.save_model(str(cfg.output_dir))  # PaddleNLP saves on rank 0 only
        if writer:
            dataio.apply_umask_to_files(cfg.output_dir.glob("*.safetensors"))  # Paddle writes them 0600
    final_eval = final_evaluation(cfg, run.trainer, run.recorder.records)
    test_metrics = {}
    if run.data.test is not None:
        test_data = make_dataset(run.data.test.features, generation_eval(cfg, run.tokenizer, run.data.test))
        test_metrics = run.trainer.evaluate(test_data, metric_key_prefix="test")
    summary = make_summary(cfg, run.trainer, run.data, train_metrics, final_eval, test_metrics, started, checkpoint)
    if writer:
        from .curves import LOSS_PLOT, plot_loss

        if plot_loss(run.recorder.records, cfg.output_dir / LOSS_PLOT) is None:
            logger.info("no loss was logged (no training step): %s not written", LOSS_PLOT)
        dataio.write_json(cfg.output_dir / SUMMARY_FILE, summary)
        print_summary(summary)
    if distributed_rank()[1] > 1:
        # Leave together: once seen under load, rank 0 aborted (SIGABRT) at exit while writing its summary after
        # rank 1 had gone, which failed the whole launch although every output was written.
        import paddle.distributed

        paddle.distributed.barrier()
    return summary


# Files a write killed midway leaves: safetensors' temporary file (.tmpXXXXXX, then renamed) and dataio's own.
KILLED_WRITE = re.compile(r"\.tmp[A-Za-z0-9]{6}|\..+\.[0-9a-f]{12}\.tmp")


def remove_killed_writes(output_dir: Path) -> list[Path]:
    """Remove the temporary files of writes a killed run left in ``output_dir`` and its checkpoints (call with
    the folder locked, so no live writer owns them); returns what was removed."""
    removed = []
    for folder in (output_dir, *checkpoints_in(output_dir)):
        if not folder.is_dir():
            continue
        for path in folder.iterdir():
            if KILLED_WRITE.fullmatch(path.name) and path.is_file():
                path.unlink()
                removed.append(path)
                logger.info("removed %s, left by a killed write", path)
    return removed


FINAL_WEIGHTS = ("peft_model*", "lora_model_state*", "model.safetensors*", "model-*.safetensors", "model_state*")


def final_weight_files(output_dir: Path) -> list[Path]:
    """The run's result weights at the top of ``output_dir`` (the adapter or the full model)."""
    return [path for pattern in FINAL_WEIGHTS for path in output_dir.glob(pattern) if path.is_file()]


def remove_partial_outputs(output_dir: Path, checkpoints_before: set[Path], weights_before: set[Path]) -> None:
    """After a failed run (a full disk, Ctrl-C while saving): remove what it left half-written — checkpoints it
    started but did not complete, result weights it began to write, temporary files of killed writes. Complete
    checkpoints stay (a rerun resumes from them), so does everything that was there before."""
    for checkpoint in checkpoints_in(output_dir):
        if checkpoint not in checkpoints_before and not checkpoint_is_complete(checkpoint):
            shutil.rmtree(checkpoint, ignore_errors=True)
            logger.info("removed %s, which the run could not complete", checkpoint)
    for path in final_weight_files(output_dir) if output_dir.is_dir() else ():
        if path not in weights_before:
            path.unlink(missing_ok=True)
    if output_dir.is_dir():
        remove_killed_writes(output_dir)


def remove_new_files(folder: Path, before: set[Path]) -> None:
    """Remove the files (and then empty folders) below ``folder`` that are not in ``before``; ``folder`` itself
    goes too when it ends up empty and was not there before."""
    for path in sorted(folder.rglob("*"), key=lambda path: -len(path.parts)):
        if path in before:
            continue
        if path.is_dir():
            with contextlib.suppress(OSError):
                path.rmdir()
        else:
            path.unlink(missing_ok=True)
    if not before:
        with contextlib.suppress(OSError):
            folder.rmdir()


def checkpoint_step_is_final(cfg: TrainConfig, checkpoint: Path) -> bool:
    """True when ``checkpoint`` is at (or past) the run's last step: max_steps, or, without it, the step count
    the checkpoint's trainer state recorded for the same run."""
    step = _checkpoint_step(checkpoint) if checkpoint.name.startswith(CHECKPOINT_PREFIX) else None
    try:
        state = json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8"))
        step, recorded = int(state.get("global_step", step)), int(state.get("max_steps") or 0)
    except (OSError, ValueError, TypeError):
        recorded = 0
    target = cfg.training_args.max_steps if cfg.training_args.max_steps > 0 else recorded
    return step is not None and target > 0 and step >= target


def finished_summary(output_dir: Path, checkpoint: Path) -> dict[str, Any] | None:
    """The summary of a run that ended at ``checkpoint`` and wrote every result, else None."""
    try:
        summary = json.loads((output_dir / SUMMARY_FILE).read_text(encoding="utf-8"))
        done = int(summary["global_step"]) >= _checkpoint_step(checkpoint)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return summary if done and final_weight_files(output_dir) else None


def restore_final_checkpoint(cfg: TrainConfig, trainer: Any, checkpoint: Path) -> None:
    """The trainer as it ended: the final checkpoint's weights and state, then the best checkpoint's weights when
    load_best_model_at_end asks for them (what PaddleNLP's train() does after its last step)."""
    from paddlenlp.trainer.trainer_callback import TrainerState

    trainer._load_from_checkpoint(str(checkpoint))
    trainer.state = TrainerState.load_from_json(str(checkpoint / "trainer_state.json"))
    trainer.loss_sum = 0.0
    best = trainer.state.best_model_checkpoint
    if cfg.training_args.load_best_model_at_end and best and Path(best).is_dir() and Path(best) != checkpoint:
        trainer._load_from_checkpoint(best)


def _checkpoint_step(checkpoint: Path) -> int:
    return int(checkpoint.name[len(CHECKPOINT_PREFIX):])


def final_evaluation(cfg: TrainConfig, trainer: Any, records: list[dict[str, Any]]) -> dict[str, Any]:
    """Eval metrics of the model as saved: the best checkpoint's when it was reloaded, else a fresh evaluation
    unless the last logged evaluation already was at the final step."""
    if not cfg.evaluates:
        return {}
    evaluations = [record for record in records if "eval_loss" in record]
    state = trainer.state
    if cfg.training_args.load_best_model_at_end and state.best_model_checkpoint:
        step = _checkpoint_step(Path(state.best_model_checkpoint))
        best = [record for record in evaluations if record["step"] == step]
        if best:
            return best[-1]
    if evaluations and evaluations[-1]["step"] == state.global_step and cfg.training_args.do_train:
        return evaluations[-1]
    metrics = trainer.evaluate()
    return {"step": int(state.global_step), **{key: _plain(value) for key, value in metrics.items()}}


def make_summary(cfg: TrainConfig, trainer: Any, data: PreparedData, train_metrics: dict[str, Any],
                 final_eval: dict[str, Any], test_metrics: dict[str, Any], started: float,
                 resumed_from: Path | None) -> dict[str, Any]:
    runtime_seconds = float(train_metrics.get("train_runtime", 0.0)) or 1e-9
    processes = distributed_rank()[1]
    trained_samples = _trained_samples(cfg, trainer, resumed_from) * processes
    tokens_trained = _sum_over_processes(trainer.tokens_trained) if processes > 1 else trainer.tokens_trained
    trainable, total = trainable_parameters(trainer.model)
    state = trainer.state
    summary = {
        "output_dir": str(cfg.output_dir),
        "model": cfg.model_args.model_name_or_path,
        "method": "lora" if cfg.model_args.lora else "full",
        "device": cfg.device,
        "processes": processes,
        "dtype": cfg.dtype,
        "trainable_parameters": trainable,
        "total_parameters": total,
        "global_step": int(state.global_step),
        "epoch": round(float(state.epoch or 0.0), 4),
        "resumed_from": str(resumed_from) if resumed_from else None,
        "wall_time_seconds": round(time.time() - started, 2),
        "train_runtime_seconds": round(float(train_metrics.get("train_runtime", 0.0)), 2),
        "train_samples_per_second": round(trained_samples / runtime_seconds, 3) if train_metrics else 0.0,
        "train_tokens_per_second": round(tokens_trained / runtime_seconds, 1) if train_metrics else 0.0,
        "train_tokens": int(tokens_trained),
        "train_loss": _train_loss(trainer, train_metrics, resumed_from),
        "best_checkpoint": state.best_model_checkpoint,
        "best_metric": _plain(state.best_metric) if state.best_metric is not None else None,
        "metric_for_best_model": cfg.training_args.metric_for_best_model,
        "eval": final_eval,
        "test": {key: _plain(value) for key, value in test_metrics.items() if key not in UNLOGGED_KEYS},
        "truncation": {name: split.truncation() for name, split in
                       (("train", data.train), ("dev", data.dev), ("test", data.test)) if split is not None},
        "warnings": cfg.warnings,
    }
    return summary


def _sum_over_processes(count: int) -> int:
    """``count`` added up over every process of a multi-process run (a collective: all ranks call it)."""
    import paddle
    import paddle.distributed as dist

    total = paddle.to_tensor([int(count)], dtype="int64")
    dist.all_reduce(total)
    return int(total.item())


def _train_loss(trainer: Any, train_metrics: dict[str, Any], resumed_from: Path | None) -> float | None:
    """Mean loss over every step of the run. PaddleNLP's train_loss divides the resumed steps' sum by all steps."""
    if not train_metrics:
        return None
    mean = trainer.mean_train_loss()
    if mean is not None:
        return mean
    steps_here = int(trainer.state.global_step) - (_checkpoint_step(resumed_from) if resumed_from else 0)
    return _plain(train_metrics["train_loss"]) * int(trainer.state.global_step) / max(1, steps_here)


def _trained_samples(cfg: TrainConfig, trainer: Any, resumed_from: Path | None) -> int:
    args = cfg.training_args
    start = _checkpoint_step(resumed_from) if resumed_from else 0
    steps = max(0, int(trainer.state.global_step) - start)
    return steps * args.per_device_train_batch_size * args.gradient_accumulation_steps


def print_summary(summary: dict[str, Any]) -> None:
    lines = [f"trained {summary['method']} on {summary['model']} ({summary['device']}, {summary['dtype']}): "
             f"{summary['global_step']} steps, {summary['epoch']} epochs in {summary['wall_time_seconds']:.1f} s",
             f"  {summary['train_samples_per_second']} samples/s, {summary['train_tokens_per_second']} tokens/s, "
             f"train loss {summary['train_loss']}"]
    if summary["eval"]:
        shown = {key: summary["eval"][key] for key in ("eval_loss", "eval_accuracy") if key in summary["eval"]}
        lines.append(f"  eval: {shown}")
    if summary["best_checkpoint"]:
        lines.append(f"  best checkpoint: {summary['best_checkpoint']} ({summary['metric_for_best_model']} = "
                     f"{summary['best_metric']})")
    for name, counts in summary["truncation"].items():
        if counts["source_truncated"] or counts["sample_truncated"]:
            lines.append(f"  truncated in {name}: {counts['source_truncated']} sources, "
                         f"{counts['sample_truncated']} samples")
    lines.append(f"  outputs in {summary['output_dir']} (summary.json, metrics.jsonl, loss.png, train_config.json)")
    print("\n".join(lines), file=sys.stdout, flush=True)


# ---------------------------------------------------------------- CLI


FLAGS = ("--resume", "--overwrite", "--debug", "--trust-pickle")
LAUNCH_HELP = ("train on several devices through python -m paddle.distributed.launch (data parallel); only rank 0 "
               "writes outputs")


def split_flags(tokens: Sequence[str]) -> tuple[list[str], set[str]]:
    """Our own flags may come after the config among the overrides; pull them out."""
    flags = {token for token in tokens if token in FLAGS}
    return [token for token in tokens if token not in FLAGS], flags


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # nargs="?": without a config argparse would also call the optional overrides required; run() asks for it
    parser.add_argument("config", nargs="?", help="run_finetune-style JSON config, e.g. configs/tiny_cpu.json")
    parser.add_argument("--resume", action="store_true",
                        help="continue from the last complete checkpoint-N in output_dir")
    parser.add_argument("--overwrite", action="store_true",
                        help="start again in an output_dir that holds checkpoints or results (deletes them)")
    parser.add_argument("--devices", metavar="IDS", default=None,
                        help=f"GPU ids such as 0,1: {LAUNCH_HELP}")
    parser.add_argument("--nproc_per_node", metavar="N", default=None,
                        help="number of processes for paddle.distributed.launch (scripts/train.sh: NPROC=N); on "
                             "Paddle's CPU build the processes exchange gradients over gloo")
    parser.add_argument("--dry-run", action="store_true",
                        help="with --devices / --nproc_per_node: print the launcher command instead of running it")
    parser.add_argument("overrides", nargs=argparse.REMAINDER, metavar="--key value",
                        help="config keys overriding the JSON, e.g. --lora_rank 4 --max_steps 10")


def launch_training(config: str, overrides: Sequence[str], flags: Sequence[str], request: Any) -> int:
    """Check the config and output folder once here, then start ``request.processes`` training processes with
    paddle.distributed.launch (or only print that command with ``--dry-run``). Returns the exit code."""
    import shlex

    from . import launch

    user_threads = os.environ.get("OMP_NUM_THREADS")  # before load_config sets it for this process
    requested_mmap_threshold()  # a bad value is named here, not in every training process after it started
    cfg = load_config(config, overrides)
    device_count = 1
    if cfg.device == "gpu":
        import paddle

        device_count = paddle.device.cuda.device_count()
    launch.check_devices(request, cfg.device, device_count)
    check_run_outputs(cfg, resume="--resume" in flags, overwrite="--overwrite" in flags)
    log_dir = cfg.output_dir / launch.LAUNCH_LOG_DIR
    command = launch.launch_command(request, config, overrides, sorted(flags), log_dir)
    if request.dry_run:
        print(shlex.join(command), flush=True)
        return 0
    return launch.run_launcher(command, launch.launch_environment(request, cfg.device, user_threads), log_dir)


def run(args: argparse.Namespace) -> int:
    from .launch import DRY_RUN, split_launch_options

    if args.config is None:
        raise ConfigError("train needs a config: address-completion train CONFIG.json [--key value ...], e.g. "
                          "configs/tiny_cpu.json")
    overrides, flags = split_flags(args.overrides)
    flags |= {flag for flag, given in (("--resume", args.resume), ("--overwrite", args.overwrite),
                                       ("--debug", args.debug), ("--trust-pickle", getattr(args, "trust_pickle", False)))
              if given}
    overrides, request = split_launch_options(overrides + ([DRY_RUN] if args.dry_run else []), args.devices,
                                              args.nproc_per_node)
    if request is not None:  # this process only checks and launches; the launched processes train
        return launch_training(args.config, overrides, sorted(flags), request)
    if "--trust-pickle" in flags:
        from ..model.modeling import TRUST_PICKLE_ENV

        os.environ[TRUST_PICKLE_ENV] = "1"  # runtime setup, as cli.main does for --trust-pickle before the config
    if "--debug" in flags and not args.debug:
        from ..runtime import configure_logging

        args.debug = True
        configure_logging(debug=True)
    train(args.config, overrides, resume="--resume" in flags, overwrite="--overwrite" in flags, debug=args.debug)
    return 0
