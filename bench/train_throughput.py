#!/usr/bin/env python
"""LoRA training throughput and peak memory on address-length samples.

Shapes (random weights, nothing is downloaded): the Qwen2.5-0.5B shape (24 layers, hidden 896, 14 heads /
2 KV heads, intermediate 4864, vocab 151,936, tied embeddings) and the default model's shape. Samples are
synthesized address pairs put through the real Qwen2.5 tokenizer and chat template, exactly as
``address-completion train`` builds them (so a sample is ~60 tokens, most of them prompt). A step is what
the trainer does: forward, loss on the answer tokens, backward, AdamW update of the LoRA weights.

Columns: tokens/s counts every token fed (prompt + answer), answer tok/s the tokens the loss is on;
peak RSS is the process's maximum resident memory (``resource.getrusage``), so every shape and loss runs
in its own subprocess. ``--loss full`` measures PaddleNLP's own loss (logits for every position) instead
of the trainer's answer-only projection; ``--loss both`` shows the difference.

Quick run (about a minute on 2 cores):   python bench/train_throughput.py --shapes default --steps 2
Full run (several minutes on 2 cores):   python bench/train_throughput.py
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from address_completion.runtime import prepare_environment  # noqa: E402


def shapes() -> dict:
    from address_completion.model.default_model import ModelShape

    return {
        "default": ModelShape(),
        "0.5b": ModelShape(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                           num_key_value_heads=2),
    }


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def measure(shape_name: str, loss_kind: str, steps: int, warmup: int, batch_size: int, lora_rank: int,
            seed: int) -> dict:
    """Train ``warmup + steps`` LoRA steps in this process; time the last ``steps``."""
    prepare_environment(offline=True)
    import paddle
    from paddlenlp.peft import LoRAConfig, LoRAModel
    from paddlenlp.transformers import AutoTokenizer

    from address_completion.model import tokenizer as qwen_tokenizer
    from address_completion.model.default_model import create_model
    from address_completion.data.synthesis import synthesize
    from address_completion.training.train import PaddingCollator, answer_loss, encode_pairs, lora_target_patterns

    paddle.seed(seed)
    with tempfile.TemporaryDirectory() as folder:
        tokenizer = AutoTokenizer.from_pretrained(str(qwen_tokenizer.write_qwen25_tokenizer(folder)))
    features = encode_pairs(tokenizer, synthesize(batch_size * (steps + warmup), seed=seed), 1024, 2048).features
    collate = PaddingCollator(tokenizer.pad_token_id)
    model = create_model(shapes()[shape_name], seed)
    config = LoRAConfig(target_modules=lora_target_patterns(None, model), r=lora_rank, lora_alpha=2 * lora_rank,
                        lora_dropout=0.0, dtype="float32")
    model = LoRAModel(model, config)
    model.train()
    optimizer = paddle.optimizer.AdamW(learning_rate=3e-4,
                                       parameters=[p for p in model.parameters() if not p.stop_gradient])
    tokens = answer_tokens = 0
    started = None
    for step in range(warmup + steps):
        if step == warmup:
            started = time.perf_counter()
        batch = collate(features[step * batch_size:(step + 1) * batch_size])
        inputs = {key: paddle.to_tensor(value) for key, value in batch.items()}
        loss = answer_loss(model, inputs) if loss_kind == "answer" else model(**inputs)[0]
        loss.backward()
        optimizer.step()
        optimizer.clear_grad()
        if step >= warmup:
            tokens += int(batch["attention_mask"].sum())
            answer_tokens += int((batch["labels"] != -100).sum())
    seconds = time.perf_counter() - started
    shape = shapes()[shape_name]
    return {"shape": shape_name, "layers": shape.num_hidden_layers, "hidden": shape.hidden_size, "loss": loss_kind,
            "batch": batch_size, "steps": steps, "s_per_step": seconds / steps,
            "samples_per_s": batch_size * steps / seconds,
            "tokens_per_s": tokens / seconds, "answer_tokens_per_s": answer_tokens / seconds,
            "tokens_per_sample": tokens / (batch_size * steps), "peak_rss_mb": peak_rss_mb()}


def print_table(rows: list[dict]) -> None:
    header = f"{'shape':<8} {'loss':<7} {'batch':>5} {'s/step':>8} {'samples/s':>10} {'tokens/s':>9} " \
             f"{'answer tok/s':>12} {'tok/sample':>10} {'peak RSS MB':>11}"
    print(header)
    print("-" * len(header))
    for row in rows:
        print(f"{row['shape']:<8} {row['loss']:<7} {row['batch']:>5} {row['s_per_step']:>8.2f} "
              f"{row['samples_per_s']:>10.2f} {row['tokens_per_s']:>9.1f} {row['answer_tokens_per_s']:>12.1f} "
              f"{row['tokens_per_sample']:>10.1f} {row['peak_rss_mb']:>11.0f}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--steps", type=int, default=3, help="measured training steps per shape")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lora-rank", type=int, default=8)
    parser.add_argument("--shapes", default="default,0.5b", help="comma-separated: default, 0.5b")
    parser.add_argument("--loss", choices=("answer", "full", "both"), default="answer")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print the rows as JSON lines instead of a table")
    parser.add_argument("--worker", nargs=2, metavar=("SHAPE", "LOSS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.steps < 1 or args.warmup < 0 or args.batch_size < 1:
        parser.error("--steps and --batch-size must be at least 1, --warmup at least 0")
    unknown = set(args.shapes.split(",")) - {"default", "0.5b"}
    if unknown:
        parser.error(f"unknown shape(s): {', '.join(sorted(unknown))}; choose from default, 0.5b")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        row = measure(args.worker[0], args.worker[1], args.steps, args.warmup, args.batch_size, args.lora_rank,
                      args.seed)
        print(json.dumps(row))
        return 0
    losses = ("answer", "full") if args.loss == "both" else (args.loss,)
    rows = []
    for shape in args.shapes.split(","):
        for loss in losses:
            command = [sys.executable, str(Path(__file__).resolve()), "--worker", shape, loss, "--steps",
                       str(args.steps), "--warmup", str(args.warmup), "--batch-size", str(args.batch_size),
                       "--lora-rank", str(args.lora_rank), "--seed", str(args.seed)]
            result = subprocess.run(command, capture_output=True, text=True)
            if result.returncode != 0:
                print(result.stderr[-3000:], file=sys.stderr)
                return result.returncode
            rows.append(json.loads(result.stdout.strip().splitlines()[-1]))
            if args.json:
                print(json.dumps(rows[-1]), flush=True)
    if not args.json:
        print_table(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
