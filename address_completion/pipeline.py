"""The main job on the embedded offline default, end to end: prepare -> split -> build-model -> train ->
merge -> predict -> evaluate.

Each step is an ordinary ``address-completion`` command; the demo prints it before running it, so
every step can be repeated (or changed) on its own. Everything runs offline: the default model is
built locally with the real Qwen2.5 tokenizer, data come from the gazetteer.
"""

from __future__ import annotations

import argparse
import shlex
import time
from pathlib import Path

from .data.dataio import check_apart, check_output_folder
from .errors import AddressCompletionError, ConfigError, OutputExistsError
from .runtime import requested_mmap_threshold

SAMPLE_ADDRESSES = ("碑林区扬子江南路467-6号", "扶风法门镇法门寺", "浦东新区张江路88号", "东莞市虎门镇连升路12号")
PROJECT_ROOT = Path(__file__).resolve().parents[1]


def find_config(path: str) -> str:
    """A config path as given, or inside the project checkout when run from elsewhere."""
    if Path(path).exists():
        return path
    bundled = PROJECT_ROOT / path
    if bundled.exists():
        return str(bundled)
    raise ConfigError(f"config {path} not found (looked in {Path.cwd()} and {PROJECT_ROOT})")


def demo_steps(args: argparse.Namespace) -> list[tuple[str, list[str]]]:
    """(title, argv) of every step, in order."""
    out = Path(args.output)
    data, lora, merged = out / "data", out / "lora", out / "merged"
    force = ["--force"] if args.force else []
    steps = [
        ("synthesize address pairs from the gazetteer",
         ["prepare", "--num", str(args.num), "--seed", str(args.seed), "--output", str(out / "pairs.jsonl"), *force]),
        ("split into train/dev/test", ["split", str(out / "pairs.jsonl"), "--output", str(data),
                                       "--seed", str(args.seed), *force]),
    ]
    if args.rebuild_model or not (Path(args.model) / "config.json").exists():
        steps.append(("build the tiny default model (real Qwen2.5 tokenizer)",
                      ["build-model", "--output", args.model, *(["--force"] if args.rebuild_model else [])]))
    train = ["train", find_config(args.train_config), "--model_name_or_path", args.model,
             "--dataset_name_or_path", str(data), "--output_dir", str(lora)]
    if args.max_steps is not None:
        train += ["--max_steps", str(args.max_steps)]
    steps.append(("LoRA fine-tuning", train + (["--overwrite"] if args.force else [])))
    steps.append(("merge the adapter into the base model and verify it",
                  ["merge", "--model_name_or_path", args.model, "--lora_path", str(lora),
                   "--output_path", str(merged), *force]))
    steps.append(("complete a few addresses with the merged model",
                  ["predict", "--model", str(merged), *SAMPLE_ADDRESSES]))
    if not args.skip_eval:
        evaluate = ["evaluate", find_config(args.eval_config), "--test-file", str(data / "test.json"),
                    "--output-dir", str(out / "eval"),
                    "--set", f"systems.trained.model={merged}", "--set", "systems.trained.lora_path=null",
                    "--set", f"systems.trained-free.model={merged}", "--set", "systems.trained-free.lora_path=null",
                    "--set", f"systems.untrained.model={args.model}",
                    "--set", f"systems.untrained-free.model={args.model}", *force]
        if args.eval_limit is not None:
            evaluate += ["--limit", str(args.eval_limit)]
        steps.append(("evaluate trained vs untrained vs rule-based parsers", evaluate))
    return steps


def run_demo(args: argparse.Namespace) -> int:
    from .cli import main as cli_main

    for flag, value in (("--num", args.num), ("--max-steps", args.max_steps), ("--eval-limit", args.eval_limit)):
        if value is not None and value < 1:  # checked here, not by the step that would fail after the others ran
            raise ConfigError(f"{flag} must be at least 1, got {value}")
    for flag, config, used in (("--train-config", args.train_config, True),
                               ("--eval-config", args.eval_config, not args.skip_eval)):
        if used and not Path(config).is_file():  # else found missing by its step, after minutes of the others
            state = "is not a file" if Path(config).exists() else "not found"
            raise ConfigError(f"{flag} {config} {state}; give the config file (e.g. configs/tiny_cpu.json, "
                              "configs/eval_tiny.yaml)")
    requested_mmap_threshold()  # read by the train step, which would fail after prepare and split ran
    out = Path(args.output)
    check_apart({"--output": out}, {"--model": None if args.rebuild_model else args.model,
                                    "--train-config": args.train_config, "--eval-config": args.eval_config})
    check_output_folder(out, "--output")
    if out.exists() and any(out.iterdir()) and not args.force:
        raise OutputExistsError(out, "pass --force to redo the demo there, or choose another --output")
    started = time.time()
    steps = demo_steps(args)
    for number, (title, argv) in enumerate(steps, start=1):
        print(f"\n== [{number}/{len(steps)}] {title}\n$ address-completion {shlex.join(argv)}", flush=True)
        code = cli_main(argv + (["--debug"] if args.debug else []))
        if code != 0:
            raise AddressCompletionError(f"step {number} ({argv[0]}) failed with exit code {code}; "
                                         "its message is above")
    minutes = (time.time() - started) / 60
    print(f"\n== demo finished in {minutes:.1f} min. Outputs in {out}/")
    if not args.skip_eval:
        print(f"   accuracy report: {out / 'eval' / 'report.md'}")
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", default="outputs/demo", help="folder for every demo output")
    parser.add_argument("--model", default="outputs/default-model",
                        help="default model folder (built when missing)")
    parser.add_argument("--num", type=int, default=4000, help="address pairs to synthesize")
    parser.add_argument("--seed", type=int, default=42, help="seed for synthesis and split")
    parser.add_argument("--train-config", default="configs/tiny_cpu.json", help="training config")
    parser.add_argument("--eval-config", default="configs/eval_tiny.yaml", help="evaluation config")
    parser.add_argument("--max-steps", type=int, default=None, help="override the training config's step budget")
    parser.add_argument("--eval-limit", type=int, default=None, help="evaluate only the first N test pairs")
    parser.add_argument("--skip-eval", action="store_true", help="stop after predict")
    parser.add_argument("--rebuild-model", action="store_true", help="rebuild the default model even if present")
    parser.add_argument("--force", action="store_true", help="redo the demo in a non-empty --output")


def run(args: argparse.Namespace) -> int:
    return run_demo(args)
