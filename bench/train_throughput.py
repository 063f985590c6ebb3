#!/usr/bin/env python
"""LoRA training throughput and peak memory on address-length samples, optionally against HF PEFT on torch.

Shapes (random weights, nothing is downloaded): the Qwen2.5-0.5B shape (24 layers, hidden 896, 14 heads /
2 KV heads, intermediate 4864, vocab 151,936, tied embeddings) and the default model's shape. Samples are
synthesized address pairs put through the real Qwen2.5 tokenizer and chat template, exactly as
``address-completion train`` builds them (grounding, length grouping and padding as its defaults). A step is
what the trainer does: forward, loss on the answer tokens, backward, AdamW update of the LoRA weights.

The batches are built once per widths setting and written to a file, so every measured process trains on the
same token ids with the same padding:
  varied   a seeded shuffle, each batch padded to its longest row (the trainer with group_by_length false,
           pad_to_multiple_of null)
  fixed    the same batches, all padded to one width (the longest of them, rounded up)
  grouped  the trainer's default: batches of similar lengths (group_by_length), widths rounded up to
           --pad-to-multiple-of

Every configuration (widths x Paddle variant, plus the peer with --peer) runs in its own subprocess, so
peak RSS is per process; --rounds repeats them alternately (the order reversed every other round), and the
table prints the median with its min-max over the rounds. Ratios are paired per round (this machine drifts).
--peer runs the same work in Hugging Face transformers + PEFT on torch CPU, in its own environment
(bench/peer-requirements.txt says why and how; found at .venv-peer or given with --peer-python): the same shape and weights (the step-1 losses printed side by side show it), LoRA r/alpha/targets, batches,
answer-only loss, AdamW on the LoRA weights and thread count.

Columns: tokens/s counts every real token fed (prompt + answer, not padding); peak RSS is the process's
maximum resident memory (``resource.getrusage``); "RSS by step" is the resident memory after each step, and the
minor page faults of each step count the memory it touched for the first time (``ru_minflt``).

Quick run (about a minute on 2 cores):   python bench/train_throughput.py --shapes default --steps 2
Against the peer:                        python bench/train_throughput.py --shapes 0.5b --peer
Memory across widths:                    python bench/train_throughput.py --shapes 0.5b --widths varied,fixed,grouped
A patch, paired:                         python bench/train_throughput.py --shapes 0.5b --variants stock,rmsnorm_square
Patches step by step in one process:     python bench/train_throughput.py --shapes 0.5b --interleave --variants stock,default
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from address_completion.model import speedups  # noqa: E402  (imports no paddle)
from address_completion.errors import ConfigError  # noqa: E402
from address_completion.memory import HeapTrimmer, requested_mmap_threshold, set_mmap_threshold  # noqa: E402
from address_completion.runtime import prepare_environment, usable_cores  # noqa: E402

WIDTHS = ("varied", "fixed", "grouped")
PEER_PACKAGES = ("torch", "transformers", "peft")
PEER_VENV = Path(__file__).resolve().parents[1] / ".venv-peer" / "bin" / "python"
LEARNING_RATE = 3e-4
NO_TRIM = "BENCH_NO_TRIM"  # a variant item BENCH_NO_TRIM=1 leaves out training's HeapTrimmer (what it buys)
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")  # PaddleNLP's Qwen2 set


def shapes() -> dict:
    from address_completion.model.default_model import ModelShape

    return {
        "default": ModelShape(),
        "0.5b": ModelShape(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                           num_key_value_heads=2),
    }


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def current_rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


# ---------------------------------------------------------------- batches (shared by every process)


def build_batches(job: dict) -> dict:
    """The batches of one widths setting as arrays; written to ``job['path']`` (.npz)."""
    prepare_environment(offline=True)
    import numpy as np
    from paddlenlp.transformers import AutoTokenizer

    from address_completion.model import tokenizer as qwen_tokenizer
    from address_completion.data.synthesis import synthesize
    from address_completion.training.train import GROUP_BATCHES, PaddingCollator, batch_order, encode_pairs

    count = job["batch_size"] * job["batches"]
    pool = max(count, job["batch_size"] * GROUP_BATCHES)  # the grouping sees what a training epoch gives it
    with tempfile.TemporaryDirectory() as folder:
        tokenizer = AutoTokenizer.from_pretrained(str(qwen_tokenizer.write_qwen25_tokenizer(folder)))
    features = encode_pairs(tokenizer, synthesize(pool, seed=job["seed"]), 1024, 2048, job["grounding"]).features
    lengths = [len(feature["input_ids"]) for feature in features]
    grouped = job["widths"] == "grouped"
    order = batch_order(lengths, job["batch_size"], job["seed"], 0, group_by_length=grouped,
                        drop_last=True)[: job["batches"]]
    multiple = job["pad_to_multiple_of"] if job["widths"] != "varied" else None
    fixed = max(lengths[index] for batch in order for index in batch) if job["widths"] == "fixed" else None
    collate = PaddingCollator(int(tokenizer.pad_token_id), pad_to_multiple_of=multiple, pad_to_length=fixed)
    arrays = {}
    for step, batch in enumerate(order):
        for key, value in collate([features[index] for index in batch]).items():
            arrays[f"{key}_{step}"] = value
    np.savez(job["path"], **arrays)
    widths = [arrays[f"input_ids_{step}"].shape[1] for step in range(len(order))]
    return {"widths": widths, "path": job["path"]}


def load_batches(path: str) -> list[dict]:
    import numpy as np

    with np.load(path) as data:
        steps = len([key for key in data.files if key.startswith("input_ids_")])
        return [{key: data[f"{key}_{step}"] for key in ("input_ids", "labels", "attention_mask")}
                for step in range(steps)]


# ---------------------------------------------------------------- the two trainers


def train_paddle(job: dict) -> dict:
    """LoRA steps on Paddle, as the trainer takes them (answer-only loss, AdamW, glibc's mmap threshold)."""
    prepare_environment(offline=True)
    set_mmap_threshold()  # as training's set_up does (a variant item ADDRESS_COMPLETION_MMAP_THRESHOLD=N changes it)
    import paddle
    from paddlenlp.peft import LoRAConfig, LoRAModel

    from address_completion.model.default_model import create_model
    from address_completion.training.train import answer_loss, lora_target_patterns

    speedups.apply(job.get("patches", []))
    paddle.seed(job["seed"])
    model = create_model(shapes()[job["shape"]], job["seed"])
    config = LoRAConfig(target_modules=lora_target_patterns(None, model), r=job["lora_rank"],
                        lora_alpha=2 * job["lora_rank"], lora_dropout=0.0, dtype="float32")
    model = LoRAModel(model, config)
    model.train()
    optimizer = paddle.optimizer.AdamW(learning_rate=LEARNING_RATE,
                                       parameters=[p for p in model.parameters() if not p.stop_gradient])

    # as training's callback does: grouped batches put the widest first (train.batch_order), fixed are all one width
    trimmer = None if os.environ.get(NO_TRIM) else HeapTrimmer(widest_first=job["widths"] != "varied")

    def step(batch: dict) -> float:
        inputs = {key: paddle.to_tensor(value) for key, value in batch.items()}
        loss = answer_loss(model, inputs) if job["loss"] == "answer" else model(**inputs)[0]
        loss.backward()
        optimizer.step()
        optimizer.clear_grad()
        value = float(loss)
        if trimmer is not None:
            trimmer.after_step()
        return value

    if job["engine"] == "interleaved":
        return interleaved_steps(job, step)
    return run_steps(job, step, threads=int(os.environ.get("OMP_NUM_THREADS", "0")))


def interleaved_steps(job: dict, step) -> dict:
    """Every batch once per variant, back to back (order reversed every other batch), patches switched between
    steps: pairs seconds apart instead of minutes, for speed only (one process, so one peak RSS)."""
    batches = load_batches(job["batches_path"])
    seconds = {variant: [] for variant in job["variants"]}
    for index, batch in enumerate(batches[: job["warmup"] + job["steps"]]):
        order = job["variants"][:: -1 if index % 2 else 1]
        for variant in order:
            speedups.remove()
            speedups.apply(variant_patches(variant))
            started = time.perf_counter()
            step(batch)
            if index >= job["warmup"]:
                seconds[variant].append(time.perf_counter() - started)
    tokens = [int(batch["attention_mask"].sum()) for batch in batches[job["warmup"]: job["warmup"] + job["steps"]]]
    return {"shape": job["shape"], "widths": job["widths"], "tokens": tokens, "seconds": seconds,
            "peak_rss_mb": peak_rss_mb()}


def print_interleaved(shape: str, row: dict, args: argparse.Namespace) -> None:
    first = args.variants[0]
    print(f"\nshape {shape}, {row['widths']} widths, batch {args.batch_size}, {args.threads} threads, variants "
          f"interleaved step by step in one process ({args.steps} batches each after {args.warmup}); this machine "
          f"({platform.processor() or platform.machine()}, shared), {time.strftime('%Y-%m-%d')}")
    header = f"{'variant':<50} {'tokens/s':>9} {'step time vs ' + first:>28}"
    print(header)
    print("-" * len(header))
    for variant, times in row["seconds"].items():
        ratios = [reference / time_ for reference, time_ in zip(row["seconds"][first], times)]
        shown = "(reference)" if variant == first else spread(ratios)  # > 1: faster than the reference
        print(f"{variant:<50} {sum(row['tokens']) / sum(times):>9.1f} {shown:>28}")
    print("ratio = reference step time / variant step time on the same batch (> 1: faster); median (min-max)")


def torch_weights(model, shape, seed: int):
    """Copy the Paddle model's initial weights (same generator, same order) into the HF model."""
    import torch

    from address_completion.model.default_model import iter_initial_weights

    parameters = dict(model.named_parameters())  # the tied lm_head is listed once, as embed_tokens
    paddle_shapes = {}
    for name, parameter in parameters.items():
        transposed = parameter.dim() == 2 and "embed_tokens" not in name  # torch Linear is [out, in]
        paddle_name = "qwen2." + name[len("model."):] if name.startswith("model.") else name
        paddle_shapes[paddle_name] = (tuple(parameter.shape[::-1]) if transposed else tuple(parameter.shape),
                                      name, transposed)
    with torch.no_grad():
        for paddle_name, values in iter_initial_weights({key: item[0] for key, item in paddle_shapes.items()}, seed,
                                                        shape.num_hidden_layers):
            _, name, transposed = paddle_shapes[paddle_name]
            parameters[name].copy_(torch.from_numpy(values.T if transposed else values))


def train_torch(job: dict) -> dict:
    """The same LoRA steps in transformers + PEFT on torch CPU."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from address_completion.model.default_model import model_config

    torch.set_num_threads(job["threads"])
    torch.manual_seed(job["seed"])
    shape = shapes()[job["shape"]]
    values = model_config(shape)
    config = Qwen2Config(**{key: values[key] for key in (
        "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
        "num_key_value_heads", "hidden_act", "max_position_embeddings", "rms_norm_eps", "rope_theta",
        "attention_dropout", "use_sliding_window", "tie_word_embeddings", "bos_token_id", "eos_token_id",
        "pad_token_id")}, dtype=torch.float32)
    model = Qwen2ForCausalLM(config)
    torch_weights(model, shape, job["seed"])
    lora = LoraConfig(r=job["lora_rank"], lora_alpha=2 * job["lora_rank"], lora_dropout=0.0,
                      target_modules=list(LORA_TARGETS), bias="none")
    model = get_peft_model(model, lora)
    model.train()
    causal_lm = model.get_base_model()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=LEARNING_RATE)

    def answer_loss(inputs: dict):
        hidden = causal_lm.model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                                 use_cache=False).last_hidden_state
        labels = inputs["labels"].reshape(-1)
        positions = torch.nonzero(labels != -100).reshape(-1)
        logits = causal_lm.lm_head(hidden.reshape(-1, hidden.shape[-1])[positions]).float()
        return torch.nn.functional.cross_entropy(logits, labels[positions])

    def full_loss(inputs: dict):  # PaddleNLP's labels are already shifted: the same unshifted cross-entropy
        logits = causal_lm(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                           use_cache=False).logits.float()
        return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), inputs["labels"].reshape(-1),
                                                 ignore_index=-100)

    def step(batch: dict) -> float:
        inputs = {key: torch.from_numpy(value) for key, value in batch.items()}
        loss = answer_loss(inputs) if job["loss"] == "answer" else full_loss(inputs)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return float(loss)

    return run_steps(job, step, threads=torch.get_num_threads())


def run_steps(job: dict, step, threads) -> dict:
    """Time ``job['steps']`` steps after ``job['warmup']`` untimed ones; resident memory after each."""
    batches = load_batches(job["batches_path"])
    tokens = answer_tokens = 0
    losses, rss, faults = [], [], []
    started = None
    for index, batch in enumerate(batches[: job["warmup"] + job["steps"]]):
        if index == job["warmup"]:
            started = time.perf_counter()
        faulted = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        losses.append(step(batch))
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faulted)
        rss.append(round(current_rss_mb()))
        if index >= job["warmup"]:
            tokens += int(batch["attention_mask"].sum())
            answer_tokens += int((batch["labels"] != -100).sum())
    seconds = time.perf_counter() - started
    return {"engine": job["engine"], "shape": job["shape"], "widths": job["widths"], "variant": job["variant"],
            "loss": job["loss"], "batch": job["batch_size"], "steps": job["steps"], "threads": threads,
            "s_per_step": seconds / job["steps"], "tokens_per_s": tokens / seconds,
            "answer_tokens_per_s": answer_tokens / seconds, "first_loss": losses[0],
            "peak_rss_mb": peak_rss_mb(), "rss_by_step_mb": rss, "faults_by_step": faults}


# ---------------------------------------------------------------- orchestration


def peer_missing(python: str) -> list[str]:
    """The peer packages ``python`` cannot import (all of them when it does not run)."""
    check = "import importlib.util as u, sys; print(','.join(n for n in sys.argv[1:] if u.find_spec(n) is None))"
    try:
        result = subprocess.run([python, "-c", check, *PEER_PACKAGES], capture_output=True, text=True, timeout=120)
    except OSError:
        return list(PEER_PACKAGES)
    return [name for name in result.stdout.strip().split(",") if name] if result.returncode == 0 \
        else list(PEER_PACKAGES)


def default_peer_python() -> str:
    return str(PEER_VENV) if PEER_VENV.is_file() else sys.executable


def run_worker(job: dict, threads: int, python: str = sys.executable) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), **job.get("env", {}))
    command = [python, str(Path(__file__).resolve()), "--worker", json.dumps(job)]
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise RuntimeError(f"{job['engine']} worker failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def configurations(args: argparse.Namespace, shape: str, peer: bool) -> list[dict]:
    """Every measured process of one round, in run order."""
    jobs = []
    for loss in ("answer", "full") if args.loss == "both" else (args.loss,):
        for widths in args.widths:
            for variant in args.variants:
                jobs.append({"engine": "paddle", "widths": widths, "variant": variant, "loss": loss})
            if peer:
                jobs.append({"engine": "torch", "widths": widths, "variant": "peft", "loss": loss})
    common = {"shape": shape, "steps": args.steps, "warmup": args.warmup,
              "batch_size": args.batch_size, "lora_rank": args.lora_rank, "seed": args.seed, "threads": args.threads}
    for job in jobs:
        job.update(common, patches=variant_patches(job["variant"]) if job["engine"] == "paddle" else [],
                   env=variant_env(job["variant"]) if job["engine"] == "paddle" else {})
    return jobs


def variant_patches(variant: str) -> list[str]:
    """stock: PaddleNLP as is; default: the patches training applies; else patch names joined by +.

    Items with ``=`` are environment variables of the worker (Paddle reads ``FLAGS_*`` from there), e.g.
    ``default+FLAGS_use_system_allocator=1``.
    """
    patches = []
    for item in variant.split("+"):
        if item == "default":
            patches += list(speedups.DEFAULT)
        elif item != "stock" and "=" not in item:
            patches.append(item)
    return patches


def variant_env(variant: str) -> dict[str, str]:
    return dict(item.split("=", 1) for item in variant.split("+") if "=" in item)


def label(row: dict) -> str:
    return f"{row['engine']}:{row['variant']}" if row["engine"] == "paddle" else "torch:peft"


def spread(values: list[float], digits: int = 2) -> str:
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def summarize(results: list[list[dict]], peer: bool) -> list[dict]:
    """One line per configuration: medians and min-max over rounds, ratios paired within each round."""
    lines = []
    for index, first in enumerate(results[0]):
        rows = [round_rows[index] for round_rows in results]
        if peer:
            reference = next(i for i, row in enumerate(results[0]) if row["engine"] == "torch"
                             and row["widths"] == first["widths"] and row["loss"] == first["loss"])
        else:
            reference = 0
        ratios = [round_rows[index]["tokens_per_s"] / round_rows[reference]["tokens_per_s"] for round_rows in results]
        memory = [round_rows[index]["peak_rss_mb"] / round_rows[reference]["peak_rss_mb"] for round_rows in results]
        lines.append({"config": label(first), "widths": first["widths"], "loss": first["loss"],
                      "tokens_per_s": [row["tokens_per_s"] for row in rows],
                      "s_per_step": [row["s_per_step"] for row in rows],
                      "peak_rss_mb": [row["peak_rss_mb"] for row in rows], "ratio": ratios, "rss_ratio": memory,
                      "is_reference": index == reference, "first_loss": first["first_loss"],
                      "rss_by_step_mb": rows[-1]["rss_by_step_mb"], "faults_by_step": rows[-1]["faults_by_step"],
                      "threads": first["threads"]})
    return lines


def print_table(shape: str, lines: list[dict], args: argparse.Namespace, widths: dict[str, list[int]],
                peer: bool) -> None:
    reference = "peer (torch)" if peer else lines[0]["config"]
    print(f"\nshape {shape}, batch {args.batch_size}, LoRA r={args.lora_rank}, {args.threads} "
          f"threads, {args.steps} timed steps after {args.warmup}, {args.rounds} round(s); "
          f"absolute figures: this machine ({platform.processor() or platform.machine()}, shared), "
          f"{time.strftime('%Y-%m-%d')}")
    for name, values in widths.items():
        print(f"  {name} batch widths: {values}")
    header = (f"{'configuration':<32} {'widths':<8} {'loss':<6} {'tokens/s':>22} {'ratio vs ' + reference:>24} "
              f"{'peak RSS MB':>20} {'RSS ratio':>18} {'step-1 loss':>11}")
    print(header)
    print("-" * len(header))
    for line in lines:
        ratio = "(reference)" if line["is_reference"] else spread(line["ratio"])
        rss_ratio = "(reference)" if line["is_reference"] else spread(line["rss_ratio"])
        print(f"{line['config']:<32} {line['widths']:<8} {line['loss']:<6} {spread(line['tokens_per_s'], 1):>22} {ratio:>24} "
              f"{spread(line['peak_rss_mb'], 0):>20} {rss_ratio:>18} {line['first_loss']:>11.4f}")
    print("RSS (MB) after each step, last round:")
    for line in lines:
        print(f"  {line['config']:<32} {line['widths']:<8} {line['loss']:<6} {line['rss_by_step_mb']}")
    print("minor page faults in each step (thousands; memory touched for the first time), last round:")
    for line in lines:
        print(f"  {line['config']:<32} {line['widths']:<8} {line['loss']:<6} "
              f"{[round(count / 1000) for count in line['faults_by_step']]}")
    if args.rounds > 1:
        print("median (min-max) over rounds; ratios are taken within each round, then summarized")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--steps", type=int, default=3, help="measured training steps per process")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lora-rank", type=int, default=8)
    parser.add_argument("--shapes", default="default,0.5b", help="comma-separated: default, 0.5b")
    parser.add_argument("--loss", choices=("answer", "full", "both"), default="answer",
                        help="answer: the trainer's answer-only projection; full: logits for every position")
    parser.add_argument("--peer", action="store_true",
                        help="also run HF transformers + PEFT on torch (the bench extra) on the same batches")
    parser.add_argument("--peer-python", default=None,
                        help="interpreter with torch, transformers and peft (default: .venv-peer/bin/python when it "
                             "exists, else this one)")
    parser.add_argument("--rounds", type=int, default=None,
                        help="alternated repetitions of every configuration (default: 3 with --peer or several "
                             "configurations, else 1)")
    parser.add_argument("--widths", default="grouped", help=f"comma-separated batch-width settings: {', '.join(WIDTHS)}")
    parser.add_argument("--pad-to-multiple-of", type=int, default=8,
                        help="width rounding for fixed and grouped (the trainer's pad_to_multiple_of default)")
    parser.add_argument("--variants", default="default",
                        help="comma-separated Paddle variants: stock (PaddleNLP as is), default (the patches "
                             f"training applies), or patch names joined by + ({', '.join(speedups.PATCHES)}); "
                             "NAME=VALUE items set the worker's environment (e.g. FLAGS_use_system_allocator=1)")
    parser.add_argument("--interleave", action="store_true",
                        help="time the Paddle variants step by step in ONE process (patches switched between "
                             "steps, each batch run once per variant): tight pairing on a busy machine, speed only")
    parser.add_argument("--grounding", choices=("candidates", "none"), default="candidates",
                        help="prompt mode of the samples (the trainer's default: candidates)")
    parser.add_argument("--threads", type=int, default=None,
                        help="OMP_NUM_THREADS / torch.set_num_threads of every process (default: usable cores)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print every process's row as a JSON line too")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return args
    if args.steps < 1 or args.warmup < 0 or args.batch_size < 1 or args.lora_rank < 1:
        parser.error("--steps, --batch-size and --lora-rank must be at least 1, --warmup at least 0")
    if args.rounds is not None and args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if args.pad_to_multiple_of < 1:
        parser.error("--pad-to-multiple-of must be at least 1")
    if args.threads is not None and args.threads < 1:
        parser.error("--threads must be at least 1")
    unknown = set(args.shapes.split(",")) - {"default", "0.5b"}
    if unknown:
        parser.error(f"unknown shape(s): {', '.join(sorted(unknown))}; choose from default, 0.5b")
    args.widths = args.widths.split(",")
    unknown = [name for name in args.widths if name not in WIDTHS]
    if unknown:
        parser.error(f"unknown --widths {', '.join(unknown)}; choose from {', '.join(WIDTHS)}")
    args.variants = args.variants.split(",")
    for variant in args.variants:
        bad = [name for name in variant_patches(variant) if name not in speedups.PATCHES]
        if bad or not variant:
            parser.error(f"unknown --variants entry {variant!r}: use stock, default or patch names joined by + "
                         f"({', '.join(speedups.PATCHES)})")
    for variant in args.variants:  # a bad heap setting is named here, not in a worker's traceback
        try:
            requested_mmap_threshold({**os.environ, **variant_env(variant)})
        except ConfigError as exc:
            parser.error(f"--variants {variant}: {exc}" if variant_env(variant) else str(exc))
    if args.interleave and (args.peer or len(args.variants) < 2 or any(variant_env(v) for v in args.variants)):
        parser.error("--interleave compares two or more --variants of patches (no NAME=VALUE items, no --peer)")
    if args.threads is None:
        args.threads = int(os.environ.get("OMP_NUM_THREADS") or usable_cores())
    if args.peer_python is None:
        args.peer_python = default_peer_python()
    if args.rounds is None:
        several = args.loss == "both" or len(args.widths) * len(args.variants) > 1
        args.rounds = 3 if args.peer or several else 1
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        job = json.loads(args.worker)
        kinds = {"batches": build_batches, "paddle": train_paddle, "interleaved": train_paddle, "torch": train_torch}
        print(json.dumps(kinds[job["engine"]](job)))
        return 0
    peer = args.peer
    missing = peer_missing(args.peer_python) if peer else []
    if missing:
        print(f"peer skipped: {', '.join(missing)} not importable by {args.peer_python} (see "
              "bench/peer-requirements.txt); running Paddle alone", flush=True)
        peer = False
    with tempfile.TemporaryDirectory(prefix="train-bench-") as folder:
        batch_files, widths = {}, {}
        for name in args.widths:
            job = {"engine": "batches", "widths": name, "batch_size": args.batch_size,
                   "batches": args.warmup + args.steps, "seed": args.seed, "grounding": args.grounding,
                   "pad_to_multiple_of": args.pad_to_multiple_of, "path": str(Path(folder) / f"{name}.npz")}
            built = run_worker(job, args.threads)
            batch_files[name], widths[name] = built["path"], built["widths"]
        for shape in args.shapes.split(","):
            if args.interleave:
                for name in args.widths:
                    job = {"engine": "interleaved", "shape": shape, "widths": name, "variants": args.variants,
                           "loss": "answer" if args.loss == "both" else args.loss, "steps": args.steps,
                           "warmup": args.warmup, "batch_size": args.batch_size, "lora_rank": args.lora_rank,
                           "seed": args.seed, "batches_path": batch_files[name]}
                    print_interleaved(shape, run_worker(job, args.threads), args)
                continue
            jobs = configurations(args, shape, peer)
            results = []
            for round_index in range(args.rounds):
                order = list(range(len(jobs)))[:: -1 if round_index % 2 else 1]  # ABBA: drift cancels out
                rows = [None] * len(jobs)
                for index in order:
                    job = {**jobs[index], "batches_path": batch_files[jobs[index]["widths"]]}
                    python = args.peer_python if job["engine"] == "torch" else sys.executable
                    rows[index] = run_worker(job, args.threads, python)
                    if args.json:
                        print(json.dumps({"round": round_index, **rows[index]}), flush=True)
                results.append(rows)
            print_table(shape, summarize(results, peer), args, widths, peer)
    return 0


if __name__ == "__main__":
    sys.exit(main())
