"""The trainer of a run, its sampler and callbacks: PaddleNLP's SFTTrainer subclassed at the points this
project changes (loss over the answer only, exact-match evaluation by real decoding, a seeded resumable batch
order, the step loss kept across a resume, JSON scheduler state), a metrics recorder and the heap trimmer.

Imports paddle and PaddleNLP at module level: ``train`` imports this module only once a run starts.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import paddle
import paddle.nn.functional as functional
from paddle.io import DistributedBatchSampler
from paddlenlp.datasets import MapDataset
from paddlenlp.trainer import PrinterCallback, TrainerCallback
from paddlenlp.trainer.trainer_callback import TrainerState
from paddlenlp.trl import SFTTrainer
from tqdm import tqdm

from ..data import dataio
from ..data.matching import exact_match
from ..data.prompt import address_candidates, strip_prefix
from ..inference.generate import Completer, body_and_head
from ..memory import HeapTrimmer
from ..progress import duration
from ..runtime import logger
from .checkpoints import CHECKPOINT_PREFIX, LOSS_SUM_FILE, SCHEDULER_STATE_FILES
from .config import TrainConfig
from .launch import shard
from .samples import IGNORE_INDEX, EncodedSplit, answer_token_budget, batch_order, make_collator
from .summary import UNLOGGED_KEYS, format_record, plain, train_speeds


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


def generation_eval(cfg: TrainConfig, tokenizer: Any, split: EncodedSplit) -> GenerationEval:
    budget = cfg.extras["eval_max_new_tokens"] or answer_token_budget(split, cfg.data_args.max_length)
    if cfg.extras["decoding"] == "constrained":
        warn_if_model_never_chooses(split.pairs, cfg.training_args.metric_for_best_model)
    return GenerationEval(tokenizer, split.pairs, cfg.training_args.per_device_eval_batch_size, budget,
                          grounding=cfg.extras["grounding"], decoding=cfg.extras["decoding"],
                          detail=cfg.extras["detail"])


def warn_if_model_never_chooses(pairs: Sequence[dict[str, str]], metric: str | None) -> int:
    """With constrained decoding, the dev inputs the model decides are those with ≥ 2 candidates; when there
    are none, eval_accuracy measures the gazetteer alone — say so once. Returns that number of inputs."""
    chosen = sum(len(address_candidates(strip_prefix(pair["src"]))) >= 2 for pair in pairs)  # src as read
    if not chosen:
        logger.warning("warning: none of the %d evaluation inputs has two or more candidates, so eval_accuracy "
                       "(constrained decoding) measures the gazetteer's candidates, not the model%s", len(pairs),
                       "; metric_for_best_model: accuracy cannot choose a checkpoint" if metric and "accuracy" in metric
                       else "")
    return chosen


def make_dataset(features: list[dict[str, list[int]]], generation: GenerationEval | None = None) -> Any:
    dataset = MapDataset(features)
    dataset.generation = generation
    return dataset


# ---------------------------------------------------------------- loss


def answer_loss(model: Any, inputs: dict[str, Any]) -> Any | None:
    """Mean cross-entropy over answer tokens, projecting only those positions onto the vocabulary.

    The causal LM's own loss computes logits for every position, prompt included; with Qwen2.5's
    151,936-word vocabulary that projection dominates a small model's step. The result is the same
    loss (labels are already shifted). Returns None for models without the usual base/lm_head layout.
    """
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


# ---------------------------------------------------------------- sampler and trainer


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
    """PaddleNLP's SFTTrainer with the answer-only loss, generation-based accuracy, a seeded resumable data order,
    the summed step loss kept across a resume and JSON scheduler state in checkpoints.

    ``group_by_length``, ``safe_serialization`` and ``save_generation_output`` come from the run's config.
    """

    tokens_trained = 0
    loss_sum = 0.0  # this process's step losses, added up as PaddleNLP adds them for train_loss
    loss_sum_before: float | None = 0.0  # the resumed checkpoint's sum (None: an older checkpoint without it)
    steps_before = 0  # the resumed checkpoint's step

    def __init__(self, *args: Any, group_by_length: bool = True, safe_serialization: bool = True,
                 save_generation_output: bool = False, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.group_by_length = group_by_length
        self.safe_serialization = safe_serialization
        self.save_generation_output = save_generation_output

    def _get_train_sampler(self):
        return EpochSeededSampler(self.train_dataset, self.args.per_device_train_batch_size, self.args.seed,
                                  self.args.dataloader_drop_last, self.group_by_length,
                                  replicas=max(1, self.args.dataset_world_size),
                                  rank=max(0, self.args.dataset_rank))

    def training_step(self, model, inputs, *args, **kwargs):
        mask = inputs.get("attention_mask")
        if mask is not None and len(mask.shape) == 2:
            self.tokens_trained += int(mask.sum())
        else:
            self.tokens_trained += int((inputs["input_ids"] != self.tokenizer.pad_token_id).sum())
        loss = super().training_step(model, inputs, *args, **kwargs)
        self.loss_sum += float(loss)
        return loss

    def mean_train_loss(self) -> float | None:
        """The loss averaged over every step of the run, the steps before a resume included (as an uninterrupted
        run reports it); after a checkpoint that does not record its loss sum, over the steps trained since.
        None before any step."""
        steps = int(self.state.global_step)
        if self.loss_sum_before is None:
            steps_here = self.steps_since_resume()
            return self.loss_sum / steps_here if steps_here > 0 else None
        return (self.loss_sum_before + self.loss_sum) / steps if steps else None

    def steps_since_resume(self) -> int:
        """The steps this run trained (all of them, unless it resumed from a checkpoint)."""
        return max(0, int(self.state.global_step) - self.steps_before)

    def log(self, logs: dict[str, float], **kwargs: Any) -> None:
        """Every log, with the closing one's train_loss replaced by :meth:`mean_train_loss` and its speeds by
        :func:`train_speeds` of the steps since a resume (as summary.json has them): PaddleNLP divides the loss
        summed since a resume, and every step of the run, by the resumed part's runtime. Changed in place, so
        train()'s metrics agree with the progress line and metrics.jsonl the callbacks write from it."""
        if "train_loss" in logs:
            mean = self.mean_train_loss()
            if mean is not None:
                logs["train_loss"] = mean
        if "train_runtime" in logs:
            speeds = train_speeds(self.args, self.steps_since_resume(), float(logs["train_runtime"]))
            logs.update({key: round(value, 4) for key, value in speeds.items()})  # PaddleNLP's rounding
        super().log(logs, **kwargs)

    def _save_checkpoint(self, model, metrics=None):
        super()._save_checkpoint(model, metrics=metrics)
        folder = Path(self.args.output_dir) / f"{CHECKPOINT_PREFIX}{self.state.global_step}"
        if not self.args.should_save:  # another process of a multi-process run: rank 0 writes
            return
        if self.safe_serialization:
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
            if self.save_generation_output and self.args.should_save:
                dataio.write_jsonl(Path(self.args.output_dir) / f"{metric_key_prefix}_predictions.jsonl",
                                   generation.records())
        return output


def make_trainer(cfg: TrainConfig, model: Any, tokenizer: Any, train_data: Any, eval_data: Any,
                 callbacks: list[Any]) -> Any:
    """PaddleNLP's SFTTrainer with generation-based accuracy and a seeded, resumable data order."""
    trainer = AddressTrainer(model=model, args=cfg.training_args, train_dataset=train_data, eval_dataset=eval_data,
                             tokenizer=tokenizer, data_collator=make_collator(cfg, tokenizer), callbacks=callbacks,
                             group_by_length=cfg.extras["group_by_length"],
                             safe_serialization=cfg.extras["safe_serialization"],
                             save_generation_output=cfg.data_args.save_generation_output)
    if cfg.training_args.disable_tqdm:
        trainer.pop_callback(PrinterCallback)  # MetricsRecorder logs one readable line instead of raw dicts
    logger.debug("trainer callbacks: %s", trainer.callback_handler.callback_list)
    return trainer


def restore_final_checkpoint(cfg: TrainConfig, trainer: Any, checkpoint: Path) -> None:
    """The trainer as it ended: the final checkpoint's weights and state, then the best checkpoint's weights when
    load_best_model_at_end asks for them (what PaddleNLP's train() does after its last step)."""
    trainer._load_from_checkpoint(str(checkpoint))
    trainer.state = TrainerState.load_from_json(str(checkpoint / "trainer_state.json"))
    trainer.loss_sum = 0.0
    best = trainer.state.best_model_checkpoint
    if cfg.training_args.load_best_model_at_end and best and Path(best).is_dir() and Path(best) != checkpoint:
        trainer._load_from_checkpoint(best)


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


# ---------------------------------------------------------------- callbacks


class HeapTrimming(TrainerCallback):
    """Runs :class:`memory.HeapTrimmer` after every optimizer step (peak RSS stays put); ``widest_first``: this
    process's first batch is its widest (length-grouped batches on rank 0)."""

    def __init__(self, widest_first: bool):
        self.trimmer = HeapTrimmer(widest_first=widest_first)

    def on_step_end(self, args, state, control, **kwargs):
        self.trimmer.after_step()


class MetricsRecorder(TrainerCallback):
    """Appends every log (step, epoch, loss, learning rate, eval metrics) to ``path``.

    PaddleNLP's ``state.log_history`` stays empty, so this is where metrics are kept. On resume, records
    after the checkpoint's step (written by the interrupted run) are dropped. ``write`` false (a process other
    than rank 0 of a multi-process run) keeps the records in memory only and logs nothing.
    """

    def __init__(self, path: Path, keep_until_step: int | None, progress_bar: bool = False, write: bool = True):
        self.path, self.progress_bar, self.write = path, progress_bar, write
        self.records: list[dict[str, Any]] = []
        if keep_until_step is not None and path.is_file():
            records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
            self.records = [record for record in records if record.get("step", 0) <= keep_until_step]
        self.baseline: tuple[float, int] | None = None  # (time, step) when this process's first step began

    def on_step_begin(self, args, state, control, **kwargs):
        if self.baseline is None:  # after a resume, global_step is the checkpoint's step here
            self.baseline = (time.monotonic(), int(state.global_step))

    def on_log(self, args, state, control, logs=None, **kwargs):
        values = {key: plain(value) for key, value in (logs or {}).items() if key not in UNLOGGED_KEYS}
        record = {"step": int(state.global_step), "epoch": round(float(state.epoch or 0.0), 4), **values}
        self.records.append(record)
        if not self.write:
            return
        dataio.write_jsonl(self.path, self.records)
        if self.progress_bar:  # a line printed between bar updates would tear the bar
            tqdm.write(format_record(record, state.max_steps), file=sys.stderr)
        else:  # a log: the rate and ETA a bar would show
            logger.info("%s%s", format_record(record, state.max_steps), self.eta(record["step"], state.max_steps))

    def eta(self, step: int, max_steps: int) -> str:
        """"  0.52 steps/s, ETA 3m10s" from the steps this process ran (empty before the first one ended)."""
        if self.baseline is None or step <= self.baseline[1] or not max_steps:
            return ""
        rate = (step - self.baseline[1]) / max(1e-9, time.monotonic() - self.baseline[0])
        return f"  {rate:.3g} steps/s, ETA {duration(max(0, max_steps - step) / rate)}"
