"""Progress in logs: rate and ETA lines at a bounded interval when stderr is not a terminal."""

from __future__ import annotations

import json
import re

import pytest

from address_completion import cli
from address_completion.data import dataio
from address_completion.errors import ConfigError
from address_completion.progress import INTERVAL_ENV, LogProgress, duration, log_interval

LINE = re.compile(r": [\d,]+/[\d,]+ (addr|pair) \(\d+%\), [\d.e+]+ (addr|pair)/s, ETA \d+(m\d\ds|s)")


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_log_lines_come_at_most_once_per_interval_with_rate_and_eta():
    clock, lines = Clock(), []
    with LogProgress(100, "completing", "addr", interval=10, clock=clock, emit=lines.append) as bar:
        for _ in range(100):
            clock.now += 0.5  # 2 addresses per second
            bar.update(1)
    assert lines[0] == "completing: 20/100 addr (20%), 2 addr/s, ETA 40s"
    assert lines[1] == "completing: 40/100 addr (40%), 2 addr/s, ETA 30s"
    assert len(lines) == 5 and lines[-1] == "completing: 100 addr done in 50s (2 addr/s)"


def test_short_work_logs_nothing_and_durations_read_well():
    clock, lines = Clock(), []
    with LogProgress(3, "x", "addr", interval=30, clock=clock, emit=lines.append) as bar:
        bar.update(3)
    assert lines == []
    assert [duration(s) for s in (0.4, 42, 125.3, 3725)] == ["0s", "42s", "2m05s", "1h02m05s"]


@pytest.mark.parametrize("value", ["0", "-1", "soon", "inf"])
def test_a_bad_interval_is_one_line_naming_the_variable(monkeypatch, value):
    monkeypatch.setenv(INTERVAL_ENV, value)
    with pytest.raises(ConfigError, match=f"{INTERVAL_ENV}={value!r}: expected a number of seconds > 0"):
        log_interval()


def test_predict_on_a_file_logs_progress(default_model_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(INTERVAL_ENV, "0.000001")
    source = tmp_path / "in.txt"
    source.write_text("".join(f"碑林区扬子江南路{n}号\n" for n in range(4)), encoding="utf-8")
    assert cli.main(["predict", "--model", str(default_model_dir), "--input", str(source), "--output",
                     str(tmp_path / "out.jsonl"), "--batch_size", "1"]) == 0
    err = capsys.readouterr().err
    progress = [line for line in err.splitlines() if "completing:" in line]
    assert progress and all(LINE.search(line) or "done in" in line for line in progress), err


def test_evaluate_logs_progress_per_system(tmp_path, monkeypatch, capsys):
    import yaml

    monkeypatch.setenv(INTERVAL_ENV, "0.000001")
    pairs = [("碑林区扬子江南路467-6号", "陕西省西安市碑林区扬子江南路467-6号"), ("北京朝阳区建国路88号", "北京市朝阳区建国路88号")]
    test = tmp_path / "test.json"
    dataio.write_jsonl(test, [{"src": src, "tgt": tgt} for src, tgt in pairs])
    config = tmp_path / "eval.yaml"
    config.write_text(yaml.safe_dump({"test_file": str(test), "output_dir": str(tmp_path / "out"),
                                      "settings": {"batch_size": 1},
                                      "systems": [{"kind": "rules", "engine": "gazetteer"}]}), encoding="utf-8")
    assert cli.main(["evaluate", str(config)]) == 0
    err = capsys.readouterr().err
    assert re.search(r"system gazetteer: 1/2 addr \(50%\), .* addr/s, ETA", err), err


def test_training_log_lines_carry_rate_and_eta(default_model_dir, tmp_path, capsys):
    from address_completion.data.synthesis import synthesize

    pairs = synthesize(8, seed=2)
    data = tmp_path / "data"
    dataio.write_jsonl(data / "train.json", pairs)
    config = tmp_path / "run.json"
    config.write_text(json.dumps({
        "model_name_or_path": str(default_model_dir), "dataset_name_or_path": str(data),
        "output_dir": str(tmp_path / "run"), "per_device_train_batch_size": 4, "learning_rate": 2e-2,
        "warmup_steps": 0, "logging_steps": 1, "src_length": 128, "max_length": 192, "do_train": True, "lora": True,
        "lora_rank": 4, "max_steps": 3, "report_to": "none"}), encoding="utf-8")
    assert cli.main(["train", str(config)]) == 0
    err = capsys.readouterr().err
    assert re.search(r"step 3/3 .* steps/s, ETA 0s", err), err


def test_prepare_logs_progress(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(INTERVAL_ENV, "0.000001")
    assert cli.main(["prepare", "--num", "2000", "--output", str(tmp_path / "pairs.jsonl")]) == 0
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("prepare: ")]
    assert lines and LINE.search(lines[0]) and lines[-1].startswith("prepare: 2,000 pair done in ")


def test_the_install_step_says_it_is_still_running_in_a_log(tmp_path):
    """scripts/_env.sh's heartbeat wraps the quiet pip install: in a log, one line per interval, the command's
    status kept (a failing install still fails the script)."""
    import os
    import subprocess
    from pathlib import Path

    env_sh = Path(__file__).resolve().parent.parent / "scripts" / "_env.sh"
    environ = {**os.environ, INTERVAL_ENV: "1"}
    done = subprocess.run(["bash", "-c", f'source "{env_sh}"; heartbeat "installing x" sleep 3; echo ok'],
                          capture_output=True, text=True, env=environ, timeout=60)
    assert done.returncode == 0 and done.stdout == "ok\n"
    lines = done.stderr.splitlines()
    assert lines and all(re.fullmatch(r">> installing x: \d+ s elapsed", line) for line in lines), lines
    failed = subprocess.run(["bash", "-c", f'source "{env_sh}"; heartbeat "installing x" false; echo reached'],
                            capture_output=True, text=True, env=environ, timeout=60)
    assert failed.returncode == 1 and failed.stdout == ""
