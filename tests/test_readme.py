"""The README's commands stay true: every script exists, every subcommand and flag it shows is accepted.

The commands are run for real elsewhere: the demo (tests/test_pipeline.py) runs every stage, and each
stage's tests run its command. Here each README command line is parsed by the real CLI parser.
"""

import re
import shlex
from pathlib import Path

import pytest

from address_completion.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
SCRIPT_COMMANDS = {"prepare": "prepare", "split": "split", "build_model": "build-model", "train": "train",
                   "merge": "merge", "serve": "serve", "evaluate": "evaluate", "demo": "demo"}


def readme_commands() -> list[str]:
    """Shell command lines inside ```bash blocks, with backslash continuations joined."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                commands.append(line)
    return commands


def as_cli_arguments(command: str) -> list[str] | None:
    """The address-completion argv a README line runs, or None for lines that are not ours (pip, …)."""
    words = shlex.split(command)
    if words[:1] == ["bash"] and words[1].startswith("scripts/"):
        script = ROOT / words[1]
        assert script.exists(), f"README runs {words[1]}, which does not exist"
        name = Path(words[1]).stem
        if name == "test":
            return None
        return [SCRIPT_COMMANDS[name], *words[2:]]
    if words[:2] == ["python", "scripts/predict.py"]:
        return ["predict", *words[2:]]
    if words[:1] == ["address-completion"]:
        return words[1:]
    return None


def test_readme_has_the_two_fresh_machine_commands():
    commands = readme_commands()
    assert "bash scripts/demo.sh" in commands
    assert "bash scripts/test.sh" in commands
    assert (ROOT / ".ci" / "run").read_text().strip().endswith("bash scripts/test.sh")


@pytest.mark.parametrize("command", [c for c in readme_commands() if as_cli_arguments(c) is not None])
def test_readme_command_is_accepted_by_the_cli(command):
    argv = as_cli_arguments(command)
    args = build_parser().parse_args(argv)  # exits (SystemExit) on an unknown subcommand or flag
    assert args.command == argv[0]


def test_scripts_are_thin_wrappers():
    for script in (ROOT / "scripts").glob("*.sh"):
        if script.name.startswith("_"):
            continue
        body = [line for line in script.read_text().splitlines() if line.strip() and not line.startswith("#")]
        assert len(body) <= 5, f"{script.name} should only wrap the CLI"
