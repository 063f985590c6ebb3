"""``address-completion`` — one command, one subcommand per stage, and the demo that runs them all.

The stage commands, their parser and their error handling are commands.py's (the demo runs its steps through
them too); this file adds the ``demo`` subcommand on top.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from . import commands
from .commands import STAGES

# subcommand -> (module, one-line help). Order is the order of the pipeline.
COMMANDS: dict[str, tuple[str, str]] = {
    **STAGES,
    "demo": ("address_completion.pipeline", "the main job on the embedded offline default, end to end"),
}


def build_parser() -> argparse.ArgumentParser:
    """The ``address-completion`` parser: every stage and the demo."""
    return commands.build_parser(COMMANDS)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``address-completion`` with ``argv`` (``sys.argv[1:]`` when None); returns the exit code."""
    return commands.run_command(argv, COMMANDS)


if __name__ == "__main__":
    sys.exit(main())
