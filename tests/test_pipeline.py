"""The main job (`bash scripts/demo.sh` = `address-completion demo`) end to end, at a small size."""

import json
from pathlib import Path

import pytest

from address_completion.cli import main


@pytest.mark.slow
def test_demo_runs_every_stage_and_ends_with_a_report(default_model_dir: Path, tmp_path: Path, capsys):
    out = tmp_path / "demo"
    argv = ["demo", "--quick", "--output", str(out), "--model", str(default_model_dir), "--num", "300",
            "--max-steps", "4", "--eval-limit", "16"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    for stage in ("prepare --poi", "prepare", "split", "train", "merge", "predict", "evaluate"):
        assert f"$ address-completion {stage} " in printed
    assert f"$ cat {out / 'pairs-poi.jsonl'} {out / 'pairs-synth.jsonl'} > {out / 'pairs.jsonl'}" in printed
    lines = (out / "pairs.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 300 and lines[:150] == (out / "pairs-poi.jsonl").read_text(encoding="utf-8").splitlines()
    assert "build-model" not in printed  # an existing default model is reused
    assert sorted(p.name for p in (out / "data").iterdir()) == ["dev.json", "test.json", "train.json"]
    assert (out / "lora" / "lora_config.json").exists()
    assert (out / "lora" / "loss.png").read_bytes().startswith(b"\x89PNG")  # the training curves
    assert list((out / "lora" / "runs").rglob("vdlrecords*")), "VisualDL logs by default"
    assert (out / "merged" / "config.json").exists()
    # the predict step prints real completions: constrained decoding over the gazetteer's candidates
    for answer in ("陕西省西安市碑林区扬子江南路467-6号", "陕西省宝鸡市扶风县法门镇法门寺", "上海市浦东新区张江路88号",
                   "广东省东莞市虎门镇连升路12号"):
        assert f"\n{answer}\n" in printed
    report = json.loads((out / "eval" / "report.json").read_text(encoding="utf-8"))
    names = [system["name"] for system in report["systems"]]
    assert {"trained", "trained-free", "untrained", "untrained-free", "prior", "city-frequency"} <= set(names)
    frequency = next(system for system in report["systems"] if system["name"] == "city-frequency")
    assert frequency["options"]["train_file"] == str(out / "data" / "train.json")  # the demo's own training split
    assert {"jionlp", "cpca", "gazetteer"} <= {name.split("-")[-1] for name in names}
    assert report["test_set"]["size"] == 16
    assert str(out / "eval" / "report.md") in printed

    # A second run refuses to overwrite the demo's results without --force.
    assert main(argv) == 2
    assert "--force" in capsys.readouterr().err


@pytest.mark.parametrize("flag", ["--num", "--max-steps", "--eval-limit"])
def test_demo_refuses_counts_below_one_before_the_first_step(flag, tmp_path, capsys):
    from address_completion.cli import main

    assert main(["demo", "--output", str(tmp_path / "demo"), flag, "0"]) == 2
    captured = capsys.readouterr()
    assert captured.err.strip() == f"error: {flag} must be at least 1, got 0" and "== [1/" not in captured.out
    assert not (tmp_path / "demo").exists()


def test_demo_refuses_a_bad_heap_setting_before_the_first_step(tmp_path, capsys, monkeypatch):
    """The train step reads it; found there, prepare and split had already written their outputs."""
    from address_completion.cli import main

    monkeypatch.setenv("ADDRESS_COMPLETION_MMAP_THRESHOLD", "1MB")
    assert main(["demo", "--output", str(tmp_path / "demo")]) == 2
    captured = capsys.readouterr()
    assert captured.err.strip().startswith("error: ADDRESS_COMPLETION_MMAP_THRESHOLD: expected a byte count")
    assert "== [1/" not in captured.out and not (tmp_path / "demo").exists()


@pytest.mark.parametrize("flag", ["--train-config", "--eval-config"])
def test_demo_refuses_a_missing_config_before_the_first_step(flag, tmp_path, capsys):
    """It was found missing only by its own step, after prepare, split and build-model had run."""
    from address_completion.cli import main

    missing = str(tmp_path / "nope.json")
    assert main(["demo", "--output", str(tmp_path / "demo"), flag, missing]) == 2
    captured = capsys.readouterr()
    assert captured.err.strip().startswith(f"error: {flag} {missing} not found") and "== [1/" not in captured.out
    assert not (tmp_path / "demo").exists()


@pytest.mark.parametrize("given, where", [
    ("nope.json", "{root}"), ("configs/nope.json", "{root}/configs"), ("/nope", "/"),
    ("../{root_name}/nope.json", "{root}"),  # one folder however it is spelled
])
def test_a_missing_config_names_each_folder_looked_in_once(given, where, monkeypatch, capsys):
    """Found by a fresh-user attack: run in the checkout, `demo --train-config /nope` said "looked in X and X"
    (the current folder and the checkout, the same), although an absolute path is looked for only where it says."""
    from address_completion.pipeline import PROJECT_ROOT

    monkeypatch.chdir(PROJECT_ROOT)
    given = given.format(root_name=PROJECT_ROOT.name)
    assert main(["demo", "--train-config", given]) == 2
    message = capsys.readouterr().err.strip()
    looked_in = where.format(root=PROJECT_ROOT)
    assert message.startswith(f"error: --train-config {given} not found (looked in {looked_in}); ")
    assert "\n" not in message


def test_demo_run_from_another_folder_finds_its_default_configs_in_the_checkout(tmp_path, monkeypatch):
    """The check looked for configs/tiny_cpu.json in the current folder and refused the defaults outside the
    checkout, although the steps would have found them there (pipeline.find_config)."""
    from address_completion.cli import build_parser
    from address_completion.pipeline import PROJECT_ROOT, apply_defaults, check_options, demo_steps

    monkeypatch.chdir(tmp_path)
    args = apply_defaults(build_parser().parse_args(["demo", "--quick", "--output", str(tmp_path / "d")]))
    check_options(args)
    steps = {argv[0]: argv for _, argv in demo_steps(args)}
    assert steps["train"][1] == str(PROJECT_ROOT / "configs" / "tiny_cpu.json")
    assert steps["evaluate"][1] == str(PROJECT_ROOT / "configs" / "eval_tiny.yaml")


def test_the_default_demo_trains_the_real_smollm2_and_quick_the_tiny_model(tmp_path):
    from address_completion.cli import build_parser
    from address_completion.pipeline import REAL_MODEL, apply_defaults, demo_steps

    real = demo_steps(apply_defaults(build_parser().parse_args(["demo", "--output", str(tmp_path / "d")])))
    assert [argv[0] for _, argv in real] == ["prepare", "prepare", "concat", "split", "train", "merge", "predict",
                                            "evaluate"]  # nothing to build
    poi, synthesized, concat = (argv for _, argv in real[:3])
    assert poi[:6] == ["prepare", "--poi", "--ambiguous-rate", "0.6", "--num", "1500"] and synthesized[:3] == ["prepare", "--num", "1500"]
    assert concat[1:] == [str(tmp_path / "d" / "pairs-poi.jsonl"), str(tmp_path / "d" / "pairs-synth.jsonl"),
                          str(tmp_path / "d" / "pairs.jsonl")]
    commands = {argv[0]: argv for _, argv in real}
    assert commands["train"][1].endswith("configs/smollm2_135m_cpu.json")
    assert commands["train"][commands["train"].index("--model_name_or_path") + 1] == REAL_MODEL
    assert commands["evaluate"][1].endswith("configs/eval_smollm2.yaml")
    assert f"systems.untrained-free.model={REAL_MODEL}" in commands["evaluate"]
    only_synthesized = demo_steps(apply_defaults(build_parser().parse_args(
        ["demo", "--output", str(tmp_path / "d"), "--poi-share", "0"])))
    assert [argv[:3] for _, argv in only_synthesized[:2]] == [["prepare", "--num", "3000"],
                                                              ["split", str(tmp_path / "d" / "pairs.jsonl"), "--output"]]
    quick = demo_steps(apply_defaults(build_parser().parse_args(
        ["demo", "--quick", "--output", str(tmp_path / "d"), "--model", str(tmp_path / "no-model-yet")])))
    commands = {argv[0]: argv for _, argv in quick}
    assert "build-model" in commands and commands["train"][1].endswith("configs/tiny_cpu.json")
    assert commands["evaluate"][1].endswith("configs/eval_tiny.yaml")


@pytest.mark.parametrize("flag", ["--poi-share", "--ambiguous-rate"])
@pytest.mark.parametrize("share", ["-0.1", "1.5"])
def test_demo_refuses_a_share_outside_0_to_1_before_the_first_step(flag, share, tmp_path, capsys):
    assert main(["demo", "--output", str(tmp_path / "demo"), flag, share]) == 2
    captured = capsys.readouterr()
    assert captured.err.strip() == f"error: {flag} must be between 0 and 1, got {float(share)}"
    assert "== [1/" not in captured.out and not (tmp_path / "demo").exists()


@pytest.mark.parametrize("flag, example", [("--train-config", "configs/tiny_cpu.json"),
                                           ("--eval-config", "configs/eval_tiny.yaml")])
@pytest.mark.parametrize("given, said", [
    ("", "{flag} is empty; give the config file (e.g. {example})"),
    (".", "{flag} . is a folder; give the config file (e.g. {example})"),
    ("{tmp}", "{flag} {tmp} is a folder; give the config file (e.g. {example})"),
    ("{tmp}/my configs/nope.json", "{flag} '{tmp}/my configs/nope.json' not found (looked in '{tmp}/my configs'); "
                                   "give the config file (e.g. {example})"),
], ids=["empty", "dot", "folder", "spaces"])
def test_a_bad_config_path_is_named_for_what_it_is(flag, example, given, said, tmp_path, monkeypatch):
    """Found by a fresh-user attack: `demo --train-config ''` said '--train-config  is not a file (looked in <the
    parent folder>)', `.` too; the example named a .json and a .yaml whichever flag failed."""
    from address_completion.errors import ConfigError
    from address_completion.pipeline import find_config

    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as error:
        find_config(flag, given.format(tmp=tmp_path))
    assert str(error.value) == said.format(flag=flag, example=example, tmp=tmp_path)
