"""loss.png in every training run, VisualDL logs by default (report_to none: off), a missing report_to package
in one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from address_completion import cli
from address_completion.data import dataio
from address_completion.errors import ConfigError
from address_completion.training.curves import check_report_to, plot_loss

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_plot_loss_draws_train_eval_and_accuracy(tmp_path):
    import matplotlib.image

    records = [{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.5}, {"step": 2, "eval_loss": 1.7, "eval_accuracy": 0.5},
               {"step": 3, "loss": 1.0}, {"step": 4, "loss": float("nan")}]
    path = plot_loss(records, tmp_path / "loss.png")
    assert path == tmp_path / "loss.png" and path.read_bytes().startswith(PNG_MAGIC)
    assert matplotlib.image.imread(path).shape[:2] == (400, 700)
    assert plot_loss([{"step": 0, "learning_rate": 0.1}], tmp_path / "none.png") is None
    assert not (tmp_path / "none.png").exists()


@pytest.mark.parametrize("name, package", [("tensorboard", "tensorboardX"), ("wandb", "wandb")])
def test_a_missing_report_to_package_is_one_line_naming_it(name, package):
    with pytest.raises(ConfigError) as caught:
        check_report_to([name], "command line --report_to")
    assert str(caught.value) == (f"command line --report_to: report_to {name} needs the Python package {package}, "
                                 f"which is not installed: pip install {package}, or set report_to to none")
    check_report_to(["visualdl"], "config")  # installed with PaddleNLP


def small_run(model: Path, tmp_path: Path, **values) -> Path:
    from address_completion.data.synthesis import synthesize

    pairs = synthesize(12, seed=5)
    data = tmp_path / "data"
    dataio.write_jsonl(data / "train.json", pairs[:8])
    dataio.write_jsonl(data / "dev.json", pairs[8:])
    config = tmp_path / "run.json"
    config.write_text(json.dumps({
        "model_name_or_path": str(model), "dataset_name_or_path": str(data), "output_dir": str(tmp_path / "run"),
        "per_device_train_batch_size": 4, "per_device_eval_batch_size": 4, "learning_rate": 2e-2,
        "warmup_steps": 0, "logging_steps": 1, "src_length": 128, "max_length": 192, "do_train": True, "lora": True,
        "lora_rank": 4, "seed": 3, "max_steps": 2, **values}), encoding="utf-8")
    return config


def test_train_command_refuses_a_missing_report_to_package_in_one_line(default_model_dir, tmp_path, capsys):
    config = small_run(default_model_dir, tmp_path)
    assert cli.main(["train", str(config), "--report_to", "tensorboard"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("error: command line --report_to: report_to tensorboard needs the Python package tensorboardX, "
                   "which is not installed: pip install tensorboardX, or set report_to to none")
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_training_writes_loss_png_and_visualdl_logs_by_default(default_model_dir, tmp_path):
    from address_completion.training.train import train

    config = small_run(default_model_dir, tmp_path, evaluation_strategy="steps", eval_steps=2, eval_samples=2)
    train(config, device="cpu")
    output = tmp_path / "run"
    assert (output / "loss.png").read_bytes().startswith(PNG_MAGIC)
    assert list((output / "runs").rglob("vdlrecords*")), "VisualDL logs are on by default"


@pytest.mark.slow
def test_report_to_none_turns_visualdl_off_and_still_plots(default_model_dir, tmp_path):
    from address_completion.training.train import train

    train(small_run(default_model_dir, tmp_path, report_to="none"), device="cpu")
    output = tmp_path / "run"
    assert (output / "loss.png").is_file()
    assert not (output / "runs").exists()
