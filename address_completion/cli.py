"""``address-completion`` — one command, one subcommand per stage.

Each stage module exposes ``add_arguments(parser)`` and ``run(args) -> int``; this file only wires
them together and turns :class:`AddressCompletionError` into a one-line message (``--debug`` shows
the traceback). Stage modules import paddle lazily, so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from . import __version__
from .errors import AddressCompletionError
from .model.modeling import TRUST_PICKLE_ENV
from .runtime import configure_logging

# subcommand -> (module, one-line help). Order is the order of the pipeline.
COMMANDS: dict[str, tuple[str, str]] = {
    "prepare": ("address_completion.data.prepare", "synthesize (short -> full) address pairs from the gazetteer"),
    "split": ("address_completion.data.split", "split pairs into train/dev/test without leakage"),
    "build-model": ("address_completion.model.default_model", "build the tiny offline default model (real Qwen2.5 tokenizer)"),
    "train": ("address_completion.training.train", "LoRA / full SFT from a run_finetune-style JSON config"),
    "merge": ("address_completion.training.merge", "merge a LoRA adapter into its base model and verify the result"),
    "export": ("address_completion.model.export", "export a model as a Hugging Face folder or a GGUF file, verified"),
    "predict": ("address_completion.inference.predict", "complete addresses with a model (arguments, file, stdin or prompt)"),
    "serve": ("address_completion.inference.serve", "HTTP server (OpenAI-compatible) for a model"),
    "evaluate": ("address_completion.evaluation.evaluate", "accuracy report: fine-tuned vs base, larger and rule-based systems"),
    "demo": ("address_completion.pipeline", "the main job on the embedded offline default, end to end"),
}
# The pinned stack every stage imports lazily: missing, it is an environment problem, not a bug.
STACK_MODULES = ("paddle", "paddlenlp", "safetensors", "tokenizers", "yaml", "fastapi", "uvicorn")
# Commands that load model or adapter weights, and so may meet pickled (.pdparams) ones.
LOADING_COMMANDS = ("train", "merge", "export", "predict", "serve", "evaluate", "demo")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="address-completion",
        description="Fine-tune and evaluate a small LLM that completes Chinese postal addresses "
                    "(碑林区扬子江南路467-6号 -> 陕西省西安市碑林区扬子江南路467-6号).",
        epilog="Run 'address-completion COMMAND --help' for the options of one stage.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, summary) in COMMANDS.items():
        module = importlib.import_module(module_name)
        sub = subparsers.add_parser(name, help=summary, description=(module.__doc__ or summary).strip().split("\n\n")[0],
                                    formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        sub.add_argument("--debug", action="store_true", help="show full tracebacks and debug logging")
        if name in LOADING_COMMANDS:
            sub.add_argument("--trust-pickle", action="store_true",
                             help="load pickled .pdparams weights without the warning (same as "
                                  "ADDRESS_COMPLETION_TRUST_PICKLE=1); only for files from a trusted source")
        module.add_arguments(sub)
        sub.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    configure_logging(debug=args.debug)
    if getattr(args, "trust_pickle", False):
        import os

        os.environ[TRUST_PICKLE_ENV] = "1"  # read where weights load (modeling.check_pickled_weights)
    try:
        return int(args._run(args) or 0)
    except AddressCompletionError as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:
        if args.debug or (exc.name or "").split(".")[0] not in STACK_MODULES:
            raise
        print(f"error: {exc.name} is not installed in this Python ({sys.executable}); run the command with the "
              "project's environment: .venv/bin/python -m address_completion (bash scripts/demo.sh or "
              "`source scripts/_env.sh && ensure_env` creates .venv)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into head & co.: stop quietly like other CLI tools
        sys.stderr.close()
        return 141


if __name__ == "__main__":
    sys.exit(main())
