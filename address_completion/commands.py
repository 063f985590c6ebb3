"""The stage commands: which module each one is, the parser, and how one command runs.

Each stage module exposes ``add_arguments(parser)`` and ``run(args) -> int``. The modules are named here, not
imported: the parser imports them by name, so this module sits under them (and under the demo, which runs every
stage through :func:`run_command`, and cli.py, which adds the demo). A command's
:class:`AddressCompletionError` becomes a one-line message (``--debug`` shows the traceback). Stage modules
import paddle lazily, so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Mapping, Sequence

from . import __version__
from .errors import AddressCompletionError
from .flags import GivenOnce
from .model.modeling import TRUST_PICKLE_ENV
from .runtime import configure_logging

# stage command -> (module, one-line help). Order is the order of the pipeline (cli.py adds the demo last).
STAGES: dict[str, tuple[str, str]] = {
    "prepare": ("address_completion.data.prepare", "synthesize (short -> full) address pairs from the gazetteer"),
    "split": ("address_completion.data.split", "split pairs into train/dev/test without leakage"),
    "build-model": ("address_completion.model.default_model", "build the tiny offline default model (real Qwen2.5 tokenizer)"),
    "train": ("address_completion.training.train", "LoRA / full SFT from a run_finetune-style JSON config"),
    "merge": ("address_completion.training.merge", "merge a LoRA adapter into its base model and verify the result"),
    "export": ("address_completion.model.export", "export a model as a Hugging Face folder or a GGUF file, verified"),
    "predict": ("address_completion.inference.predict", "complete addresses with a model (arguments, file, stdin or prompt)"),
    "serve": ("address_completion.inference.serve", "HTTP server (OpenAI-compatible) for a model"),
    "evaluate": ("address_completion.evaluation.evaluate", "accuracy report: fine-tuned vs base, larger and rule-based systems"),
}
# The pinned stack every stage imports lazily: missing, it is an environment problem, not a bug.
STACK_MODULES = ("paddle", "paddlenlp", "safetensors", "tokenizers", "yaml", "fastapi", "uvicorn")
# Commands that load model or adapter weights, and so may meet pickled (.pdparams) ones.
LOADING_COMMANDS = ("train", "merge", "export", "predict", "serve", "evaluate", "demo")


def build_parser(commands: Mapping[str, tuple[str, str]] = STAGES) -> argparse.ArgumentParser:
    """The ``address-completion`` parser with one subcommand per entry of ``commands`` (name -> (module, help))."""
    parser = argparse.ArgumentParser(
        prog="address-completion",
        description="Fine-tune and evaluate a small LLM that completes Chinese postal addresses "
                    "(碑林区扬子江南路467-6号 -> 陕西省西安市碑林区扬子江南路467-6号).",
        epilog="Run 'address-completion COMMAND --help' for the options of one stage.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, summary) in commands.items():
        add_command(subparsers, name, module_name, summary)
    return parser


def add_command(subparsers: argparse._SubParsersAction, name: str, module_name: str, summary: str) -> None:
    """Subcommand ``name``: the module's ``add_arguments`` and ``run``, its docstring as the description, plus
    ``--debug`` (and ``--trust-pickle`` where weights load). Every flag that stores a value is a
    :class:`~address_completion.flags.GivenOnce`: given twice, it is refused."""
    module = importlib.import_module(module_name)
    sub = subparsers.add_parser(name, help=summary, description=(module.__doc__ or summary).strip().split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    for default in (None, "store"):  # a flag given twice is refused, not the last one kept silently
        sub.register("action", default, GivenOnce)
    sub.add_argument("--debug", action="store_true", help="show full tracebacks and debug logging")
    if name in LOADING_COMMANDS:
        sub.add_argument("--trust-pickle", action="store_true",
                         help="load pickled .pdparams weights without the warning (same as "
                              "ADDRESS_COMPLETION_TRUST_PICKLE=1); only for files from a trusted source")
    module.add_arguments(sub)
    sub.set_defaults(_run=module.run)


def run_command(argv: Sequence[str] | None = None, commands: Mapping[str, tuple[str, str]] = STAGES) -> int:
    """Parse ``argv`` (``sys.argv[1:]`` when None) as one of ``commands`` and run it; returns the exit code.

    Without a command the help is printed (exit code 2); a user error is one line on stderr (exit code 2).
    """
    parser = build_parser(commands)
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    configure_logging(debug=args.debug)
    if getattr(args, "trust_pickle", False):
        os.environ[TRUST_PICKLE_ENV] = "1"  # read where weights load (modeling.check_pickled_weights)
    return run_parsed(args)


def run_parsed(args: argparse.Namespace) -> int:
    """Run a parsed command, turning the errors a user can fix into one line on stderr (``--debug``: raise)."""
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
