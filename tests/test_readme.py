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
    while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S*", words[0]):  # NPROC=2 bash scripts/train.sh …
        words = words[1:]  # an environment assignment in front of the command
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
    lines += re.findall(r"(?<!`)`((?:[A-Z_][A-Z0-9_]*=\S* )*"
                        r"(?:bash scripts/|address-completion |python scripts/predict\.py)[^`]*)`", text)
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


def test_readme_and_docs_use_the_kebab_case_spellings():
    """Issue 24: `--force` replaces a result in every command and flags are --kebab-case; the older or PaddleNLP
    spellings (--overwrite, --nproc_per_node) are named at most once, as an alias for readers who know them, and
    never in a command line."""
    documents = ["README.md", *(str(path.relative_to(ROOT)) for path in sorted((ROOT / "docs").glob("*.md")))]
    for alias in ("--overwrite", "--nproc_per_node"):
        mentions = {document: (ROOT / document).read_text(encoding="utf-8").count(alias) for document in documents}
        assert sum(mentions.values()) <= 1, f"{alias} written {mentions}; use its kebab-case or --force spelling"
        commands = [command for document in documents for command in documented_commands(document)
                    if re.search(rf"{alias}(?![\w-])", command)]
        assert not commands, f"commands with {alias}: {commands}"


def test_documented_test_commands_select_tests():
    """Each `bash scripts/test.sh ARGS` line in README.md and the docs: pytest collects at least one test with ARGS,
    and every marker a -m expression names is declared in pytest.ini (pytest would take an unknown one as a
    marker no test has, and `-m "not slow"` would then quietly run everything)."""
    import configparser
    import subprocess
    import sys

    lines = [command for document in ["README.md", *DOCS] for command in documented_commands(document)
             if command.startswith("bash scripts/test.sh")]
    assert "bash scripts/test.sh" in lines and 'bash scripts/test.sh -m "not slow"' in lines, lines
    ini = configparser.ConfigParser()
    ini.read(ROOT / "pytest.ini", encoding="utf-8")
    declared = {line.split(":", 1)[0].strip() for line in ini["pytest"]["markers"].splitlines() if line.strip()}
    for command in set(lines):
        arguments = shlex.split(command)[2:]
        if "-m" in arguments:
            expression = arguments[arguments.index("-m") + 1]
            named = set(re.findall(r"\w+", expression)) - {"and", "or", "not"}
            assert named <= declared, f"{command}: undeclared markers {named - declared}"
        done = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                               *arguments], cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"{command}: {done.stdout[-500:]}{done.stderr[-500:]}"
        assert re.search(r"^\d+(/\d+)? tests? collected", done.stdout, flags=re.M), f"{command}: {done.stdout[-300:]}"


def doc_block(document: str, language: str, containing: str) -> str:
    """The first ```language block of a document (README.md, docs/serving.md, …) that contains a string."""
    text = (ROOT / document).read_text(encoding="utf-8")
    blocks = [block for block in re.findall(rf"```{language}\n(.*?)```", text, flags=re.S) if containing in block]
    assert blocks, f"{document} has no {language} block with {containing!r}"
    return blocks[0]


def run_curl_lines(lines: list[str], port: int) -> None:
    """Each documented curl line, verbatim but for the port, gets an answer with completions."""
    import json
    import subprocess

    assert lines
    for curl in lines:
        output = subprocess.run(curl.replace(":8000", f":{port}"), shell=True, check=True,
                                capture_output=True, text=True, timeout=120).stdout
        reply = json.loads(output)
        assert reply.get("choices") or reply.get("results"), reply


def serve_arguments(serve_line: str, model: Path) -> list[str]:
    """A documented `bash scripts/serve.sh --model FOLDER --port 8000 …` line as serve's arguments, on our model
    folder and a free port; the served name stays the documented folder's name, as the curl lines send it."""
    argv = as_cli_arguments(serve_line)
    assert argv[0] == "serve"
    documented = argv[argv.index("--model") + 1]
    argv = [str(model) if word == documented else word for word in argv[1:]]
    argv[argv.index("--port") + 1] = "0"
    return [*argv, "--model-name", Path(documented).name]


@pytest.mark.slow
def test_serving_doc_curl_and_openai_examples_work_against_the_server(default_model_dir, start_server):
    """Start the server as docs/serving.md does (our model folder, a free port) and run its examples verbatim."""
    import os
    import subprocess
    import sys

    serve_block = doc_block("docs/serving.md", "bash", "scripts/serve.sh --model")
    serve_line, *curl_lines = [line for line in serve_block.splitlines() if line.strip()]
    server = start_server(*serve_arguments(serve_line, default_model_dir), "--max_new_tokens", "8")
    run_curl_lines(curl_lines, server.port)
    script = doc_block("docs/serving.md", "python", "from openai import OpenAI").replace(":8000", f":{server.port}")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"})
    assert done.returncode == 0, done.stderr


# Appended to the page's train command: a few steps instead of the config's 120, the same code path.
SHORT_TRAINING = ["--max_steps", "2", "--eval_steps", "2", "--save_steps", "2", "--logging_steps", "1"]


@pytest.mark.slow
def test_readme_own_addresses_page_runs_as_written(tmp_path, monkeypatch, start_server):
    """README "Your own addresses -> a served model": every command of the page, in its order, from a folder holding
    only a file of full addresses (training shortened to 2 steps); then the page's server answers its curl lines."""
    import json

    from address_completion.cli import main

    section = (ROOT / "README.md").read_text(encoding="utf-8").split("## Your own addresses", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, flags=re.S)
    steps = [line.split("#", 1)[0].strip() for line in blocks[0].splitlines() if line.strip()]
    assert [as_cli_arguments(step)[0] for step in steps] == ["prepare", "split", "build-model", "train", "merge",
                                                            "evaluate", "serve"]
    addresses = shlex.split(steps[0])[shlex.split(steps[0]).index("--input") + 1]
    full = [json.loads(line)["tgt"] for line in (ROOT / "data" / "test.json").read_text(encoding="utf-8").splitlines()]
    (tmp_path / addresses).write_text("\n".join(full[:60]) + "\n", encoding="utf-8")
    (tmp_path / "configs").symlink_to(ROOT / "configs")
    monkeypatch.chdir(tmp_path)
    for step in steps[:-1]:
        argv = as_cli_arguments(step)
        if argv[0] == "train":
            argv += SHORT_TRAINING
        assert main(argv) == 0, step
    merged = tmp_path / "outputs" / "my-merged"
    assert (merged / "config.json").is_file()
    report = json.loads((tmp_path / "outputs" / "my-eval" / "report.json").read_text(encoding="utf-8"))
    assert [(entry["name"], entry["status"]) for entry in report["systems"]] == [("trained", "ok"), ("gazetteer", "ok")]
    server = start_server(*serve_arguments(steps[-1], merged), "--max_new_tokens", "8")
    curl_lines = [line.strip() for line in blocks[1].splitlines() if line.strip()]
    assert all(line.startswith("curl ") for line in curl_lines)
    run_curl_lines(curl_lines, server.port)


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


def heading_anchors(text: str) -> set[str]:
    """GitHub's anchors for a Markdown file's headings: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    return {re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
            for heading in re.findall(r"^#+ (.+)$", text, flags=re.M)}


@pytest.mark.parametrize("document", ["README.md", *DOCS])
def test_relative_links_and_anchors_resolve(document):
    """Sections moved between README.md and docs/: every relative link names a file that exists and, with #anchor,
    a heading it has."""
    source = ROOT / document
    text = source.read_text(encoding="utf-8")
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        resolved = (source.parent / path).resolve() if path else source
        assert resolved.exists(), f"{document}: link to {target}, which does not exist"
        if anchor:
            assert anchor in heading_anchors(resolved.read_text(encoding="utf-8")), f"{document}: no #{anchor}"
