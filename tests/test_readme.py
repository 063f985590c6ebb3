"""The README's commands stay true: every script exists, every subcommand and flag it shows is accepted.

The commands are run for real elsewhere: the demo (tests/test_pipeline.py) runs every stage, and each
stage's tests run its command. Here each README command line is parsed by the real CLI parser.
"""

import re
import shlex
from pathlib import Path

import pytest

from address_completion.cli import COMMANDS, build_parser

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


def test_each_script_runs_the_subcommand_it_is_named_for():
    """as_cli_arguments reads `bash scripts/X.sh …` as subcommand SCRIPT_COMMANDS[X]: the script must run exactly
    that subcommand, with the user's arguments passed through."""
    scripts = {path.stem for path in (ROOT / "scripts").glob("*.sh") if not path.name.startswith("_")}
    assert scripts == set(SCRIPT_COMMANDS) | {"test"}
    for name, command in SCRIPT_COMMANDS.items():
        body = [line.strip() for line in (ROOT / "scripts" / f"{name}.sh").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
        assert body[-1] == f'ac {command} "$@"', f"scripts/{name}.sh should end with: ac {command} \"$@\""
        assert [line for line in body if line.startswith("ac ")] == [body[-1]], f"scripts/{name}.sh runs more"
    test_body = (ROOT / "scripts" / "test.sh").read_text().splitlines()
    assert test_body[-1] == '"$PY" -m pytest "$@"'


DOCS = ["configs/README.md", *sorted(str(path.relative_to(ROOT)) for path in (ROOT / "docs").glob("*.md"))]


def documented_commands(relative: str) -> list[str]:
    """Our command lines in a document: lines of its ```bash blocks and `inline code` that starts like one,
    split at `&&`."""
    text = (ROOT / relative).read_text(encoding="utf-8")
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        lines += [line.split("#", 1)[0] for line in re.sub(r"\\\n\s*", " ", block).splitlines()]
    lines += re.findall(r"(?<!`)`((?:bash scripts/|address-completion |python scripts/predict\.py)[^`]*)`", text)
    return [part.strip() for line in lines for part in line.split("&&") if part.strip()]


@pytest.mark.parametrize("document", DOCS)
def test_every_command_in_the_docs_is_accepted_by_the_cli(document):
    commands = [command for command in documented_commands(document) if as_cli_arguments(command) is not None]
    assert commands, f"{document} shows none of our commands"
    for command in commands:
        argv = as_cli_arguments(command)
        if len(argv) == 1 and argv[0] != "--help":  # the command named in prose ("`address-completion evaluate` answers …")
            assert argv[0] in COMMANDS, f"{document}: no subcommand {argv[0]!r}"
            continue
        try:
            args = build_parser().parse_args(argv)
        except SystemExit as stop:
            if not (stop.code == 0 and argv[-1] == "--help"):
                raise AssertionError(f"{document}: {command!r} is refused by the CLI") from None
            continue
        assert args.command == argv[0], command


def readme_block(language: str, containing: str) -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = [block for block in re.findall(rf"```{language}\n(.*?)```", text, flags=re.S) if containing in block]
    assert blocks, f"README has no {language} block with {containing!r}"
    return blocks[0]


def test_readme_curl_and_openai_examples_work_against_the_server(default_model_dir, start_server):
    """Start the server as the README does (our model folder, a free port) and run its examples verbatim."""
    import json
    import os
    import subprocess
    import sys

    serve_block = readme_block("bash", "scripts/serve.sh --model outputs/tiny-merged --port 8000 --api-key")
    serve_line, *curl_lines = [line for line in serve_block.splitlines() if line.strip()]
    argv = as_cli_arguments(serve_line)
    assert argv[0] == "serve"
    argv = [str(default_model_dir) if word == "outputs/tiny-merged" else word for word in argv[1:]]
    argv[argv.index("--port") + 1] = "0"
    server = start_server(*argv, "--model-name", "tiny-merged", "--max_new_tokens", "8")
    for curl in curl_lines:
        output = subprocess.run(curl.replace(":8000", f":{server.port}"), shell=True, check=True,
                                capture_output=True, text=True, timeout=120).stdout
        reply = json.loads(output)
        assert reply.get("choices") or reply.get("results"), reply
    script = readme_block("python", "from openai import OpenAI").replace(":8000", f":{server.port}")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"})
    assert done.returncode == 0, done.stderr


# ---------------------------------------------------------------- --help never imports paddle

HELP_CHECK = """
import contextlib, io, sys
from address_completion import cli

for argv in [["--help"]] + [[name, "--help"] for name in cli.COMMANDS]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            cli.main(argv)
        except SystemExit as stop:
            assert stop.code == 0, (argv, stop.code)
    assert "usage: address-completion" in out.getvalue(), argv
    print(argv[0], "ok")
assert not [name for name in sys.modules if name.split(".")[0] in ("paddle", "paddlenlp")], "paddle imported"
"""


def test_every_subcommand_help_runs_without_importing_paddle():
    import subprocess
    import sys

    from address_completion.cli import COMMANDS

    done = subprocess.run([sys.executable, "-c", HELP_CHECK], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [word for name in ["--help", *COMMANDS] for word in (name, "ok")]


def test_demo_script_help_runs_without_importing_paddle():
    """`bash scripts/demo.sh --help` as a user runs it (this interpreter instead of the script's venv)."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "ADDRESS_COMPLETION_NO_VENV": "1", "PYTHONPROFILEIMPORTTIME": "1",
           "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")}
    done = subprocess.run(["bash", str(ROOT / "scripts" / "demo.sh"), "--help"], capture_output=True, text=True,
                          timeout=300, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: address-completion demo")
    imported = [line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")]
    assert "address_completion.cli" in imported  # the import log is real (importlib's imports are not in it,
    # but every import statement they run is)
    assert not [name for name in imported if name.split(".")[0] in ("paddle", "paddlenlp")]
