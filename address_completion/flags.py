"""Command-line conventions every command shares: one boolean vocabulary, kebab-case flags.

- :func:`parse_bool` is the one reading of a true/false word (PaddleNLP's merge_lora_params ``strtobool``
  vocabulary): command flags (``--safe-serialization false``) and environment switches use it.
- Flags are spelled ``--kebab-case`` first, with PaddleNLP's underscore spelling as an alias where PaddleNLP users
  type it (``parser.add_argument("--lora-path", "--lora_path", ...)``: argparse fills the same destination).
  Messages name a flag as ``--help`` lists it first, the kebab spelling (:func:`flag_name`); only train's
  ``--key value`` overrides, run_finetune's config keys, keep their underscores
  (tests/test_layout.py walks the package's strings for underscore flags).
"""

from __future__ import annotations

import argparse

TRUE_WORDS = ("1", "true", "t", "yes", "y", "on")
FALSE_WORDS = ("0", "false", "f", "no", "n", "off")


def is_true_word(text: str) -> bool | None:
    """True / False for a word of :data:`TRUE_WORDS` / :data:`FALSE_WORDS` (any case, surrounding blanks
    ignored); None for anything else."""
    value = str(text).strip().lower()
    if value in TRUE_WORDS:
        return True
    if value in FALSE_WORDS:
        return False
    return None


def flag_name(name: str) -> str:
    """The flag as ``--help`` lists it first: ``--max-input-chars`` for ``max_input_chars`` (an argparse
    destination or settings key) or for its underscore alias."""
    return "--" + name.lstrip("-").replace("_", "-")


def parse_bool(text: str) -> bool:
    """An argparse ``type``: merge_lora_params.py's strtobool (true/false, yes/no, 1/0, on/off, t/f, y/n);
    raises ArgumentTypeError naming the value for anything else."""
    value = is_true_word(text)
    if value is None:
        raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
    return value
