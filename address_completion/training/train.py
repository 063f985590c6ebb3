"""LoRA or full fine-tuning from a run_finetune-style JSON config: train CONFIG.json [--key value ...].

Reads ``train.json`` / ``dev.json`` (JSON lines with ``src``/``tgt``) from ``dataset_name_or_path``,
trains with PaddleNLP's SFTTrainer and writes into ``output_dir``: the adapter (``lora_config.json`` +
safetensors weights) or the full model, the tokenizer, ``train_config.json`` (the resolved config),
``metrics.jsonl`` and ``summary.json``. Evaluation during training decodes dev greedily and reports exact-match
``eval_accuracy`` (PaddleNLP's own "accuracy" is teacher-forced token accuracy) and ``eval_loss``.
An output_dir with checkpoints needs --resume or --force. Command-line ``--key value`` pairs after
the config override its keys; see configs/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from .. import files, flags
from ..data import dataio
from ..errors import ConfigError
from ..model.modeling import TRUST_PICKLE_ENV, check_pickled_weights, load_tokenizer
from ..memory import requested_mmap_threshold, set_mmap_threshold
from ..runtime import configure_logging, distributed_rank, logger, quiet_paddlenlp_logs
from . import launch
from .checkpoints import (RUN_OUTPUT_FILES, SUMMARY_FILE, checkpoint_step, checkpoint_step_is_final, checkpoints_in,
                          clear_previous_run, final_weight_files, finished_summary, remove_killed_writes,
                          remove_new_files, remove_partial_outputs, resume_checkpoint, resumed_loss_sum)
from .config import TrainConfig, load_config
from .curves import LOSS_PLOT, plot_loss
from .launch import DRY_RUN, split_launch_options
from .lora import build_model
from .samples import EncodedSplit, encode_pairs, pack_features, read_split, sample_pairs
from .summary import make_summary, plain, print_summary

METRICS_FILE = "metrics.jsonl"
RESOLVED_CONFIG_FILE = "train_config.json"


# ---------------------------------------------------------------- the recipe, in the order it runs


def train(config_path: str | Path | None, overrides: Sequence[str] | dict[str, Any] = (), *, resume: bool = False,
          overwrite: bool = False, device: str | None = None) -> dict[str, Any]:
    """Validate, train, evaluate and write every output; returns the summary (also in summary.json).

    ``overwrite``: replace an earlier run in output_dir (``--force``). Under paddle.distributed.launch every
    process runs this; only rank 0 checks the output folder for an earlier run (the others would find rank 0's
    fresh files), clears it and writes.
    """
    started = time.time()
    cfg = load_config(config_path, overrides, device=device)  # also checks model source and dataset folder
    requested_mmap_threshold()  # a bad value is named before --force clears anything (set_up applies it)
    rank, _ = distributed_rank()
    # One run per output_dir, held from before the folder is inspected to the last file written (rank 0 writes;
    # the other processes of a multi-process run belong to it).
    with files.output_lock(cfg.output_dir, "output_dir") if rank == 0 else contextlib.nullcontext():
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
    files.check_apart({"output_dir": cfg.output_dir},
                       {"model_name_or_path": cfg.model_args.model_name_or_path,
                        "dataset_name_or_path": cfg.data_args.dataset_name_or_path,
                        "lora_path": cfg.model_args.lora_path})
    files.check_output_folder(cfg.output_dir, flag="output_dir")
    if cfg.values.get("resume_from_checkpoint"):  # an explicit checkpoint in the config is an explicit choice
        return Path(cfg.values["resume_from_checkpoint"]).expanduser()
    if cfg.training_args.do_train:
        return resume_checkpoint(cfg.output_dir, resume=resume, overwrite=overwrite)
    return None


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


@dataclass
class PreparedData:
    train: EncodedSplit | None
    dev: EncodedSplit | None
    test: EncodedSplit | None


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


def set_up(cfg: TrainConfig, pairs: dict[str, list[dict[str, str]]], checkpoint: Path | None) -> TrainingRun:
    """Tokenizer, samples, model and trainer (seeded before the LoRA weights are drawn)."""
    # paddle lazy: these import paddle/PaddleNLP, which `train --help` and the config checks do without
    from paddlenlp.trainer import set_seed
    from . import trainer as trainers  # paddle lazy (imports paddle/PaddleNLP at module level)

    set_mmap_threshold()  # 32 MiB unless ADDRESS_COMPLETION_MMAP_THRESHOLD says otherwise: before the model is built
    set_seed(cfg.training_args.seed)
    key = "tokenizer_name_or_path" if cfg.model_args.tokenizer_name_or_path else "model_name_or_path"
    tokenizer = load_tokenizer(getattr(cfg.model_args, key), flag=f"--{key}")  # train's override spelling of the key
    data = prepare_data(cfg, tokenizer, pairs)
    model = build_model(cfg)
    train_data = eval_data = None
    if data.train is not None:
        features = data.train.features
        if cfg.data_args.zero_padding:
            features = pack_features(features, cfg.data_args.max_length)
        train_data = trainers.make_dataset(features)
    if data.dev is not None:
        eval_data = trainers.make_dataset(data.dev.features, trainers.generation_eval(cfg, tokenizer, data.dev))
    cfg.output_dir.mkdir(parents=True, exist_ok=True)
    recorder = trainers.MetricsRecorder(cfg.output_dir / METRICS_FILE,
                                        checkpoint_step(checkpoint) if checkpoint else None,
                                        progress_bar=not cfg.training_args.disable_tqdm,
                                        write=distributed_rank()[0] == 0)
    # batch_order puts the widest batch first; a resumed run starts mid-epoch
    widest_first = cfg.extras["group_by_length"] and distributed_rank()[0] == 0 and checkpoint is None
    trainer = trainers.make_trainer(cfg, model, tokenizer, train_data, eval_data,
                                    [recorder, trainers.HeapTrimming(widest_first)])
    if checkpoint is not None:
        trainer.loss_sum_before = resumed_loss_sum(checkpoint, cfg.warnings)
        trainer.steps_before = checkpoint_step(checkpoint)
    return TrainingRun(cfg, tokenizer, data, trainer, recorder)


def _train_and_report(cfg: TrainConfig, pairs: dict[str, list[dict[str, str]]], checkpoint: Path | None,
                      started: float, *, final: bool = False) -> dict[str, Any]:
    run = set_up(cfg, pairs, checkpoint)
    # paddle lazy (imported by set_up already): the trainer's helpers for the final checkpoint and the test split
    from .trainer import generation_eval, make_dataset, restore_final_checkpoint
    writer = distributed_rank()[0] == 0
    if writer:
        dataio.write_json(cfg.output_dir / RESOLVED_CONFIG_FILE, cfg.resolved())

    train_metrics: dict[str, Any] = {}
    if final:  # PaddleNLP would train one step past the end (9/8) from a checkpoint at max_steps
        restore_final_checkpoint(cfg, run.trainer, checkpoint)
        run.trainer.save_model(str(cfg.output_dir))
        if writer:
            files.apply_umask_to_files(cfg.output_dir.glob("*.safetensors"))
    elif cfg.training_args.do_train:
        result = run.trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
        train_metrics = dict(result.metrics)
        run.trainer.save_model(str(cfg.output_dir))  # PaddleNLP saves on rank 0 only
        if writer:
            files.apply_umask_to_files(cfg.output_dir.glob("*.safetensors"))  # Paddle writes them 0600
    final_eval = final_evaluation(cfg, run.trainer, run.recorder.records)
    test_metrics = {}
    if run.data.test is not None:
        test_data = make_dataset(run.data.test.features, generation_eval(cfg, run.tokenizer, run.data.test))
        test_metrics = run.trainer.evaluate(test_data, metric_key_prefix="test")
    summary = make_summary(cfg, run.trainer, run.data, train_metrics, final_eval, test_metrics, started, checkpoint)
    if writer:
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


def final_evaluation(cfg: TrainConfig, trainer: Any, records: list[dict[str, Any]]) -> dict[str, Any]:
    """Eval metrics of the model as saved: the best checkpoint's when it was reloaded, else a fresh evaluation
    unless the last logged evaluation already was at the final step."""
    if not cfg.evaluates:
        return {}
    evaluations = [record for record in records if "eval_loss" in record]
    state = trainer.state
    if cfg.training_args.load_best_model_at_end and state.best_model_checkpoint:
        step = checkpoint_step(Path(state.best_model_checkpoint))
        best = [record for record in evaluations if record["step"] == step]
        if best:
            return best[-1]
    if evaluations and evaluations[-1]["step"] == state.global_step and cfg.training_args.do_train:
        return evaluations[-1]
    metrics = trainer.evaluate()
    return {"step": int(state.global_step), **{key: plain(value) for key, value in metrics.items()}}


# ---------------------------------------------------------------- CLI


FLAGS = ("--resume", "--force", "--debug", "--trust-pickle")
# Older spellings of train's own flags, accepted among the overrides too: --overwrite is --force.
FLAG_ALIASES = {"--overwrite": "--force"}
LAUNCH_HELP = ("train on several devices through python -m paddle.distributed.launch (data parallel); only rank 0 "
               "writes outputs")


def split_flags(tokens: Sequence[str]) -> tuple[list[str], set[str]]:
    """Our own flags may come after the config among the overrides; pull them out."""
    flags = {FLAG_ALIASES.get(token, token) for token in tokens if FLAG_ALIASES.get(token, token) in FLAGS}
    return [token for token in tokens if FLAG_ALIASES.get(token, token) not in FLAGS], flags


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # nargs="?": without a config argparse would also call the optional overrides required; run() asks for it
    parser.add_argument("config", nargs="?", type=flags.user_path, help="run_finetune-style JSON config, e.g. configs/tiny_cpu.json")
    parser.add_argument("--resume", action="store_true",
                        help="continue from the last complete checkpoint-N in output_dir")
    parser.add_argument("--force", "--overwrite", dest="force", action="store_true",
                        help="replace an earlier run: start again in an output_dir that holds checkpoints or results "
                             "(deletes them; --overwrite is the older spelling)")
    parser.add_argument("--devices", metavar="IDS", default=None,
                        help=f"GPU ids such as 0,1: {LAUNCH_HELP}")
    parser.add_argument("--nproc-per-node", "--nproc_per_node", dest="nproc_per_node", metavar="N", default=None,
                        help="number of processes for paddle.distributed.launch (scripts/train.sh: NPROC=N); on "
                             "Paddle's CPU build the processes exchange gradients over gloo")
    parser.add_argument("--dry-run", action="store_true",
                        help="with --devices / --nproc-per-node: print the launcher command instead of running it")
    parser.add_argument("overrides", nargs=argparse.REMAINDER, metavar="--key value",
                        help="config keys overriding the JSON, e.g. --lora_rank 4 --max_steps 10")


def launch_training(config: str, overrides: Sequence[str], flags: Sequence[str], request: Any) -> int:
    """Check the config and output folder once here, then start ``request.processes`` training processes with
    paddle.distributed.launch (or only print that command with ``--dry-run``). Returns the exit code."""
    import shlex

    user_threads = os.environ.get("OMP_NUM_THREADS")  # before load_config sets it for this process
    requested_mmap_threshold()  # a bad value is named here, not in every training process after it started
    cfg = load_config(config, overrides)
    device_count = 1
    if cfg.device == "gpu":
        import paddle

        device_count = paddle.device.cuda.device_count()
    launch.check_devices(request, cfg.device, device_count)
    check_run_outputs(cfg, resume="--resume" in flags, overwrite="--force" in flags)
    log_dir = cfg.output_dir / launch.LAUNCH_LOG_DIR
    command = launch.launch_command(request, config, overrides, sorted(flags), log_dir)
    if request.dry_run:
        print(shlex.join(command), flush=True)
        return 0
    return launch.run_launcher(command, launch.launch_environment(request, cfg.device, user_threads), log_dir)


def run(args: argparse.Namespace) -> int:
    if args.config is None:
        raise ConfigError("train needs a config: address-completion train CONFIG.json [--key value ...], e.g. "
                          "configs/tiny_cpu.json")
    overrides, flags = split_flags(args.overrides)
    flags |= {flag for flag, given in (("--resume", args.resume), ("--force", args.force), ("--debug", args.debug),
                                       ("--trust-pickle", getattr(args, "trust_pickle", False))) if given}
    overrides, request = split_launch_options(overrides + ([DRY_RUN] if args.dry_run else []), args.devices,
                                              args.nproc_per_node)
    if request is not None:  # this process only checks and launches; the launched processes train
        return launch_training(args.config, overrides, sorted(flags), request)
    if "--trust-pickle" in flags:
        os.environ[TRUST_PICKLE_ENV] = "1"  # as commands.run_command does for --trust-pickle, before the config
    if "--debug" in flags and not args.debug:
        args.debug = True
        configure_logging(debug=True)
    train(args.config, overrides, resume="--resume" in flags, overwrite="--force" in flags)
    return 0
