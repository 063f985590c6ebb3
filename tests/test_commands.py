"""The stage commands (address_completion/commands.py): one table, one parser, one way a command runs and fails."""

from pathlib import Path

import pytest

from address_completion import cli, commands
from address_completion.errors import DataError

ROOT = Path(__file__).resolve().parents[1]


def test_the_command_line_is_the_stages_and_the_demo():
    assert "demo" not in commands.STAGES
    assert list(cli.COMMANDS) == [*commands.STAGES, "demo"]
    assert cli.COMMANDS["demo"][0] == "address_completion.pipeline"


def test_a_stage_error_is_one_line_and_debug_shows_the_traceback(tmp_path, capsys):
    argv = ["split", str(tmp_path / "missing.jsonl"), "--output", str(tmp_path / "data")]
    assert commands.run_command(argv) == 2
    assert capsys.readouterr().err == f"error: {tmp_path / 'missing.jsonl'}: file not found\n"
    with pytest.raises(DataError, match="file not found"):
        commands.run_command([*argv, "--debug"])


def test_the_stage_parser_has_no_demo():
    """The demo runs its steps through the stage parser: a step can never start another demo."""
    with pytest.raises(SystemExit) as stop:
        commands.run_command(["demo", "--help"])
    assert stop.value.code == 2  # argparse: invalid choice


def test_the_demo_prints_each_command_and_stops_at_the_step_that_fails(tmp_path, capsys):
    out = tmp_path / "demo"
    (out / "pairs-poi.jsonl").mkdir(parents=True)  # the first step's output is a folder: prepare refuses it
    argv = ["demo", "--quick", "--output", str(out), "--force", "--model", str(tmp_path / "no-model"),
            "--train-config", str(ROOT / "configs" / "tiny_cpu.json"),
            "--eval-config", str(ROOT / "configs" / "eval_tiny.yaml")]
    assert cli.main(argv) == 2
    captured = capsys.readouterr()
    assert f"$ address-completion prepare --poi --ambiguous-rate 0.6 --num 2000 --seed 42 --output {out / 'pairs-poi.jsonl'} --force" \
        in captured.out
    assert "[2/" not in captured.out, "no step after the failed one"
    assert captured.err.splitlines() == [
        f"error: --output {out / 'pairs-poi.jsonl'} is a folder; name a file to write "
        f"(e.g. {out / 'pairs-poi.jsonl' / 'pairs.jsonl'})",
        "error: step 1 (prepare) failed with exit code 2; its message is above"]
    assert sorted(path.name for path in out.iterdir()) == ["pairs-poi.jsonl"] and (out / "pairs-poi.jsonl").is_dir()


@pytest.mark.parametrize("argv, message", [
    (["split", "pairs.jsonl", "--seed", "1", "--seed", "2"], "--seed is given twice: --seed 1 and --seed 2"),
    (["prepare", "--num", "5", "--num", "6"], "--num is given twice: --num 5 and --num 6"),
    (["predict", "--model", "a", "--model", "b", "x"], "--model is given twice: --model a and --model b"),
    (["serve", "--port", "8000", "--port", "9000"], "--port is given twice: --port 8000 and --port 9000"),
    (["export", "--lora-path", "a", "--lora_path", "b"], "--lora-path is given twice: --lora-path a and --lora-path b"),
])
def test_a_flag_given_twice_is_refused_by_every_command(capsys, argv, message):
    """Found by a fresh-user attack: argparse kept the last of two uses of a flag silently."""
    with pytest.raises(SystemExit) as stop:
        commands.run_command(argv)
    assert stop.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (f"address-completion {argv[0]}: error: {message}; "
                                                                "give it once")
