"""Command-line conventions every command shares: one boolean vocabulary, kebab-case flags.

- :func:`parse_bool` is the one reading of a true/false word (PaddleNLP's merge_lora_params ``strtobool``
  vocabulary): command flags (``--safe-serialization false``) and environment switches use it.
- Flags are spelled ``--kebab-case`` first, with PaddleNLP's underscore spelling as an alias where PaddleNLP users
  type it (``parser.add_argument("--lora-path", "--lora_path", ...)``: argparse fills the same destination).
  Messages name a flag as ``--help`` lists it first, the kebab spelling (:func:`flag_name`); only train's
  ``--key value`` overrides, run_finetune's config keys, keep their underscores
  (tests/test_layout.py walks the package's strings for underscore flags).
- A flag is given once (:class:`GivenOnce`); a path on the command line may start with ``~`` (:func:`user_path`).
"""

from __future__ import annotations

import argparse
import os
import shlex

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


def shown_value(value: object) -> str:
    """A flag's parsed value as it would be typed again: ``5`` for 5.0, quoted for the shell when needed."""
    text = str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)
    return shlex.quote(text)


class GivenOnce(argparse.Action):
    """A store action refusing its flag's second use, where argparse keeps the last one silently
    (``--limit 3 --limit 4``): ``settings.limit is given twice: --limit 3 and --limit 4; give it once``, through
    ``parser.error`` like argparse's own flag errors (usage, one line, exit code 2).

    ``key`` names what the flag sets (the flag itself by default); ``hint`` is added after "give it once". The
    first use is remembered with the namespace it filled, so a parser parses many command lines."""

    def __init__(self, option_strings: list[str], dest: str, key: str | None = None, hint: str = "",
                 **kwargs: object) -> None:
        super().__init__(option_strings, dest, **kwargs)
        self.key = key
        self.hint = hint
        self._first: tuple[argparse.Namespace, str] | None = None

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: object,
                 option_string: str | None = None) -> None:
        typed = option_string or self.dest
        spelled = f"{typed if not typed.startswith('--') else flag_name(typed)} {shown_value(values)}"  # -o as typed
        if self._first is not None and self._first[0] is namespace:
            long_flag = next((option for option in self.option_strings if option.startswith("--")), typed)
            parser.error(f"{self.key or flag_name(long_flag)} is given twice: {self._first[1]} and "
                         f"{spelled}; give it once{f' ({self.hint})' if self.hint else ''}")
        self._first = (namespace, spelled)
        setattr(namespace, self.dest, values)


def user_path(text: str) -> str:
    """A path given on the command line with a leading ``~`` or ``~user`` expanded: the ``type=`` of every path
    argument. The shell leaves ``~`` alone after ``=`` (``--output=~/x``) and in quotes; anything else (a hub name,
    ``pkg:...``, an inner ``~``) is returned as given. argparse.ArgumentTypeError for ``~name`` of no user here
    (Path.expanduser would raise RuntimeError later, as a traceback)."""
    expanded = os.path.expanduser(text)
    if text.startswith("~") and expanded == text:
        user = text[1:].split("/", 1)[0]
        raise argparse.ArgumentTypeError(f"{text}: there is no user {user!r} here to expand ~{user}; give the full path")
    return expanded
