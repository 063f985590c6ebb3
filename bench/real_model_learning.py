#!/usr/bin/env python
"""Does a real pretrained model learn the task — and learn to choose? Before and after a fixed LoRA budget.

Takes a training config (default: configs/smollm2_135m_cpu.json, LoRA on the real SmolLM2-135M-Instruct
imported from its GGUF file) and:
  1. completes the first --limit pairs of the test file with the base model, once per decoding mode
     (free: greedy generation, on the first --free-limit of them, as it is slow; constrained: the model scores
     the gazetteer's candidates), with the config's grounding (the prompt the model is trained with);
  2. trains the config for exactly --steps optimizer steps (no evaluation or checkpoints during training);
  3. completes the same pairs with the base model + the new adapter, in each decoding mode.
Prints exact match (with its 95% Wilson interval), decoding and training speed, and — on the inputs with two or
more candidates, where something is chosen — each model next to the prior (the gazetteer's first-ranked
candidate) and the city-frequency baseline (the candidate whose chain was the answer most often in the training
split): exact there, where the prior is wrong, and where the right candidate is not the first the prompt lists
(the position bias). Writes everything as JSON. Heavy: run it alone (flock /work/heavy.lock ...).

    python bench/real_model_learning.py                      # the config's steps, first 200 test pairs
    python bench/real_model_learning.py --steps 20 --limit 50 --output-dir outputs/bench-quick --force
    python bench/real_model_learning.py --steps 200 --choices-only --limit 400 --decodings constrained -- --dataset_name_or_path outputs/choice/data
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from address_completion.errors import AddressCompletionError  # noqa: E402

DECODINGS = ("free", "constrained")
RESULTS_FILE = "results.json"


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def decoding_list(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in DECODINGS]
    if not names or unknown:
        raise argparse.ArgumentTypeError(f"expected decodings from {', '.join(DECODINGS)} separated by commas, "
                                         f"got {text!r}")
    return list(dict.fromkeys(names))


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--config", default=str(ROOT / "configs" / "smollm2_135m_cpu.json"),
                        help="training config (its model, data, LoRA and grounding settings are used)")
    parser.add_argument("--steps", type=positive_int, default=None,
                        help="optimizer steps of training (the budget); default: the config's max_steps")
    parser.add_argument("--limit", type=positive_int, default=200, help="first N pairs of the test file")
    parser.add_argument("--choices-only", action="store_true",
                        help="keep only the test pairs whose input has two or more candidates (before --limit): "
                             "the model-vs-prior table on every choice of the file")
    parser.add_argument("--free-limit", type=positive_int, default=None,
                        help="free decoding on the first N of those only (it generates token by token); default: all")
    parser.add_argument("--test-file", default=None, help="src/tgt pairs; default: test.json of the config's dataset")
    parser.add_argument("--train-file", default=None,
                        help="pairs the city-frequency baseline counts; default: train.json of the config's dataset")
    parser.add_argument("--decodings", type=decoding_list, default=list(DECODINGS), help="decoding modes to measure")
    parser.add_argument("--batch-size", type=positive_int, default=16, help="addresses per decoding batch")
    parser.add_argument("--max-new-tokens", type=positive_int, default=None,
                        help="free decoding limit; default: the longest expected answer + 2 tokens")
    parser.add_argument("--output-dir", default=str(ROOT / "outputs" / "bench-real-model"),
                        help=f"adapter (lora/) and {RESULTS_FILE}")
    parser.add_argument("--force", action="store_true", help="replace an earlier run in --output-dir")
    parser.add_argument("overrides", nargs=argparse.REMAINDER, metavar="--key value",
                        help="training config overrides after --, e.g. -- --learning_rate 1e-3 --lora_rank 16")
    args = parser.parse_args(argv)
    if args.overrides[:1] == ["--"]:
        args.overrides = args.overrides[1:]
    return args


# ---------------------------------------------------------------- measuring


def wilson(correct: int, total: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion (shares in [0, 1])."""
    if total == 0:
        return float("nan"), float("nan")
    share = correct / total
    denominator = 1 + z * z / total
    centre = (share + z * z / (2 * total)) / denominator
    half = z * ((share * (1 - share) / total + z * z / (4 * total * total)) ** 0.5) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def measure(completer: Any, pairs: Sequence[dict[str, str]], decoding: str, batch_size: int,
            contexts: Sequence[Any]) -> dict[str, Any]:
    """Exact match and speed of ``completer`` in ``decoding`` mode on ``pairs`` (one pass, timed), and its
    :func:`metrics.versus_prior` on the inputs with ≥ 2 candidates (``contexts`` align with ``pairs``)."""
    from address_completion.evaluation.metrics import exact_match, versus_prior

    mode = dataclasses.replace(completer, decoding=decoding)
    started = time.perf_counter()
    completions = mode.complete_detailed([pair["src"] for pair in pairs], batch_size=batch_size)
    seconds = time.perf_counter() - started
    flags = [exact_match(completion.text, pair["tgt"]) and not completion.abstained
             for completion, pair in zip(completions, pairs)]
    correct = sum(flags)
    generated = sum(completion.completion_tokens for completion in completions if completion.decoding != "constrained")
    low, high = wilson(correct, len(pairs))
    return {"decoding": decoding, "grounding": mode.grounding, "pairs": len(pairs), "exact": correct,
            "exact_match": correct / len(pairs), "ci95": [low, high], "seconds": seconds,
            "addresses_per_second": len(pairs) / seconds if seconds else float("nan"),
            "generated_tokens": generated,
            "generated_tokens_per_second": generated / seconds if generated and seconds else None,
            "model_chose": sum(len(completion.candidates) >= 2 for completion in completions),
            "free_fallback": sum(completion.decoding == "free_fallback" for completion in completions),
            "hit_token_limit": sum(completion.finish_reason == "length" for completion in completions),
            "versus_prior": versus_prior(flags, contexts[:len(pairs)]),
            "examples": [{"src": pair["src"], "tgt": pair["tgt"], "predict": completion.text}
                         for pair, completion in list(zip(pairs, completions))[:3]]}


def choices_only(pairs: Sequence[dict[str, str]], contexts: Sequence[Any]) -> tuple[list, list]:
    """The pairs (and their :func:`metrics.choice_context`) whose input has two or more candidates."""
    kept = [(pair, context) for pair, context in zip(pairs, contexts) if context.candidates >= 2]
    return [pair for pair, _ in kept], [context for _, context in kept]


def evaluate_model(model: str, lora_path: str | None, pairs: Sequence[dict[str, str]], args: argparse.Namespace,
                   grounding: str, max_new_tokens: int | None, contexts: Sequence[Any]
                   ) -> tuple[list[dict[str, Any]], int]:
    """Every decoding mode of one model (loaded once). Returns the rows and the max_new_tokens used."""
    from address_completion.inference.generate import Completer
    from address_completion.data.prompt import answer_ids

    completer = Completer.load(model, lora_path=lora_path, grounding=grounding)
    free_pairs = pairs[: args.free_limit or len(pairs)]
    if max_new_tokens is None:
        max_new_tokens = max(len(answer_ids(completer.tokenizer, pair["tgt"])) for pair in free_pairs) + 2
    completer = dataclasses.replace(completer, max_new_tokens=max_new_tokens)
    return [measure(completer, free_pairs if decoding == "free" else pairs, decoding, args.batch_size, contexts)
            for decoding in args.decodings], max_new_tokens


def baselines(pairs: Sequence[dict[str, str]], train_file: Path, contexts: Sequence[Any]) -> list[dict[str, Any]]:
    """The prior and the city-frequency baseline (counted on ``train_file``) on ``pairs``: the evaluator's
    ``prior`` systems, scored as the models are."""
    from address_completion.data.prompt import strip_prefix
    from address_completion.evaluation.baselines import PriorSystem
    from address_completion.evaluation.metrics import exact_match, versus_prior
    from address_completion.evaluation.systems import EvalSettings, SystemSpec, as_answer

    rows, addresses = [], [strip_prefix(pair["src"]) for pair in pairs]  # the systems take bare addresses
    for name, options in (("prior", {}), ("city-frequency", {"train_file": str(train_file)})):
        system = PriorSystem(SystemSpec(name, "prior", options), EvalSettings())
        answers = [as_answer(answer, name) for answer in system.predict(addresses)]
        flags = [exact_match(answer["predict"], pair["tgt"]) and not answer["abstained"]
                 for answer, pair in zip(answers, pairs)]
        low, high = wilson(sum(flags), len(pairs))
        rows.append({"system": name, "pairs": len(pairs), "exact": sum(flags), "exact_match": sum(flags) / len(pairs),
                     "ci95": [low, high], "versus_prior": versus_prior(flags, contexts)})
    return rows


def train_adapter(args: argparse.Namespace, steps: int, lora_dir: Path) -> dict[str, Any]:
    """Exactly ``steps`` steps of the config, nothing evaluated or checkpointed on the way; its summary."""
    from address_completion.training.train import train

    overrides = [*args.overrides, "--max_steps", str(steps), "--output_dir", str(lora_dir), "--do_eval", "false",
                 "--evaluation_strategy", "no", "--save_strategy", "no", "--load_best_model_at_end", "false",
                 "--do_predict", "false"]
    summary = train(args.config, overrides, overwrite=args.force and lora_dir.exists())
    records = [json.loads(line) for line in (lora_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
               if line.strip()]
    losses = [record["loss"] for record in records if "loss" in record]
    return {"steps": summary["global_step"], "epochs": summary["epoch"], "train_runtime_s": summary[
        "train_runtime_seconds"], "train_tokens": summary["train_tokens"], "train_tokens_per_second": summary[
        "train_tokens_per_second"], "train_samples_per_second": summary["train_samples_per_second"],
        "train_loss_mean": summary["train_loss"], "first_logged_loss": losses[0] if losses else None,
        "last_logged_loss": losses[-1] if losses else None, "trainable_parameters": summary["trainable_parameters"],
        "total_parameters": summary["total_parameters"]}


# ---------------------------------------------------------------- report


def rate_text(rate: dict[str, Any] | None) -> str:
    """``45.0% [38.1-52.1] (45/100)`` or ``-`` when there is nothing to count."""
    if not rate or not rate["total"]:
        return "-"
    low, high = rate["ci95"]
    return f"{100 * rate['value']:.1f}% [{100 * low:.1f}-{100 * high:.1f}] ({rate['count']}/{rate['total']})"


def print_table(header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows)]
    for cells in [header, ["-" * width for width in widths], *rows]:
        print("  ".join(cell.ljust(width) for cell, width in zip(cells, widths)))


def print_report(results: dict[str, Any]) -> None:
    print(f"{results['model']}  ({results['config']}, grounding {results['grounding']}, first {results['pairs']} "
          f"pairs of {results['test_file']})")
    training = results["training"]
    print(f"training: {training['steps']} steps ({training['epochs']} epochs), {training['train_tokens_per_second']} "
          f"tokens/s, {training['train_runtime_s']} s; logged loss {training['first_logged_loss']} -> "
          f"{training['last_logged_loss']}")
    rows = []
    for stage in ("before", "after"):
        for row in results[stage]:
            tokens = row["generated_tokens_per_second"]
            rows.append([stage, row["decoding"], f"{100 * row['exact_match']:.1f}% [{100 * row['ci95'][0]:.1f}-"
                         f"{100 * row['ci95'][1]:.1f}] ({row['exact']}/{row['pairs']})", str(row["model_chose"]),
                         f"{row['addresses_per_second']:.2f}", f"{tokens:.1f}" if tokens else "-",
                         str(row["hit_token_limit"])])
    print_table(["model", "decoding", "exact match (95% CI)", "model chose", "addr/s", "gen tokens/s", "hit limit"],
                rows)
    choices = results.get("choices")
    if not choices or not choices["ambiguous"]:
        print("none of these test pairs has two or more candidates: no choice to compare with the prior")
        return
    print(f"\ninputs with >= 2 candidates: {choices['ambiguous']} (answer among them {choices['answer_among_candidates']}"
          f", prior right {choices['prior_right']}, answer listed first in the prompt {choices['listed_first']})")
    rows = []
    for label, row in ([(row["system"], row) for row in results.get("baselines", [])]
                       + [(f"{stage} {row['decoding']}", row) for stage in ("before", "after")
                          for row in results.get(stage, [])]):
        versus = row.get("versus_prior") or {}
        rows.append([label, rate_text(versus.get("exact")), rate_text(versus.get("prior_wrong")),
                     rate_text(versus.get("not_listed_first"))])
    print_table(["system", "exact (>= 2 candidates)", "where the prior is wrong", "answer not listed first"], rows)


def run(args: argparse.Namespace) -> dict[str, Any]:
    from address_completion import files
    from address_completion.data import dataio
    from address_completion.evaluation.evaluate import choice_counts
    from address_completion.data.prompt import strip_prefix
    from address_completion.evaluation.metrics import choice_context
    from address_completion.training.config import load_config
    from address_completion.runtime import setup_runtime

    output_dir = Path(args.output_dir)
    files.check_writable(output_dir / RESULTS_FILE, args.force)
    cfg = load_config(args.config, args.overrides)  # checked before any model loads
    model, grounding = cfg.model_args.model_name_or_path, cfg.extras["grounding"]
    test_file = Path(args.test_file) if args.test_file else cfg.dataset_dir / "test.json"
    train_file = Path(args.train_file) if args.train_file else cfg.dataset_dir / "train.json"
    pairs = dataio.read_records(test_file, required=("src", "tgt")).records
    contexts = [choice_context(strip_prefix(pair["src"]), pair["tgt"]) for pair in pairs]
    if args.choices_only:  # the model-vs-prior comparison on every choice of the file, not on the first N pairs
        pairs, contexts = choices_only(pairs, contexts)
    pairs, contexts = pairs[: args.limit], contexts[: args.limit]
    if not pairs:
        raise AddressCompletionError(f"{test_file}: no src/tgt pairs" + (" with two or more candidates"
                                                                         if args.choices_only else ""))
    setup_runtime(model=model)
    lora_dir = output_dir / "lora"
    results: dict[str, Any] = {
        "complete": False, "model": model, "config": str(args.config), "overrides": list(args.overrides),
        "grounding": grounding, "test_file": str(test_file), "train_file": str(train_file), "pairs": len(pairs),
        "free_pairs": min(len(pairs), args.free_limit or len(pairs)), "batch_size": args.batch_size,
        "started_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(["python", "bench/real_model_learning.py", *sys.argv[1:]]), "adapter": str(lora_dir),
        "choices": choice_counts(contexts), "baselines": baselines(pairs, train_file, contexts)}
    # Written after each stage ("complete": false until the end), so a run stopped midway keeps what it measured.
    results["before"], results["max_new_tokens"] = evaluate_model(model, None, pairs, args, grounding,
                                                                  args.max_new_tokens, contexts)
    dataio.write_json(output_dir / RESULTS_FILE, results)
    results["training"] = train_adapter(args, args.steps or cfg.training_args.max_steps, lora_dir)
    dataio.write_json(output_dir / RESULTS_FILE, results)
    results["after"], _ = evaluate_model(model, str(lora_dir), pairs, args, grounding, results["max_new_tokens"],
                                         contexts)
    results["complete"] = True
    dataio.write_json(output_dir / RESULTS_FILE, results)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    from address_completion.runtime import configure_logging

    configure_logging()
    try:
        results = run(args)
    except AddressCompletionError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print_report(results)
    print(f"results: {Path(args.output_dir) / RESULTS_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
