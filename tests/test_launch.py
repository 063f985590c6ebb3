"""Data-parallel training through python -m paddle.distributed.launch: options, the command it runs, and a real
two-process run on CPU (Paddle's CPU build runs the processes over gloo; GPUs cannot be tried here)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from address_completion.data import dataio
from address_completion.cli import main
from address_completion.errors import ConfigError
from address_completion.training.launch import LaunchRequest, launch_command, parse_devices, shard, split_launch_options

from address_completion.runtime import usable_cores

ROOT = Path(__file__).resolve().parents[1]
# On CPU, train refuses more processes than usable cores (one each): the 2-process runs need 2 cores.
needs_two_cores = pytest.mark.skipif(usable_cores() < 2, reason="2 CPU processes need 2 usable cores; this machine "
                                                                "has fewer")


# ---------------------------------------------------------------- options (no paddle)


def test_devices_and_nproc_are_pulled_out_of_the_overrides():
    rest, request = split_launch_options(["--max_steps", "2", "--devices", "0,1", "--lora_rank=4"])
    assert rest == ["--max_steps", "2", "--lora_rank=4"]
    assert request == LaunchRequest(devices=(0, 1)) and request.processes == 2
    rest, request = split_launch_options(["--nproc_per_node=3", "--dry-run"])
    assert rest == [] and request == LaunchRequest(nproc_per_node=3, dry_run=True) and request.processes == 3
    assert split_launch_options(["--max_steps", "2"]) == (["--max_steps", "2"], None)
    assert split_launch_options([], devices="2, 3")[1].devices == (2, 3)  # written before the config


@pytest.mark.parametrize("tokens, message", [
    (["--devices", "abc"], "--devices 'abc': expected device ids separated by commas, such as 0,1"),
    (["--devices="], "--devices '': expected device ids separated by commas, such as 0,1"),
    (["--devices", "0,,1"], "--devices '0,,1': expected device ids separated by commas, such as 0,1"),
    (["--devices", "-1"], "--devices '-1': expected device ids separated by commas, such as 0,1"),
    (["--devices"], "--devices needs a value, e.g. --devices 0,1"),
    (["--devices", "1,1"], "--devices '1,1': device 1 is named twice; name each device once"),
    (["--nproc_per_node", "0"], "--nproc-per-node '0' (NPROC in scripts/train.sh): expected a positive number of "
                                "processes, such as 2"),
    (["--nproc_per_node", "two"], "--nproc-per-node 'two' (NPROC in scripts/train.sh): expected a positive number "
                                  "of processes, such as 2"),
    (["--devices", "0", "--nproc_per_node", "1"], "give --devices (which devices) or --nproc-per-node (how many "
                                                  "processes), not both"),
    (["--dry-run"], "--dry-run prints the paddle.distributed.launch command: give --devices or --nproc-per-node "
                    "with it"),
])
def test_bad_launch_options_are_one_line_errors(tokens, message):
    with pytest.raises(ConfigError) as caught:
        split_launch_options(tokens)
    assert str(caught.value) == message


def test_parse_devices_keeps_the_order_given():
    assert parse_devices("3,0,2") == (3, 0, 2)


def test_shards_are_disjoint_equal_and_cover_the_order():
    order = [7, 3, 9, 1, 4, 8, 0]
    shards = [shard(order, 3, rank) for rank in range(3)]
    assert shards == [[7, 1, 0], [3, 4, 7], [9, 8, 3]]  # 7 samples -> 9 slots: the first two wrap around
    assert sorted(set(sum(shards, []))) == sorted(order)
    assert shard(order, 1, 0) == order


def test_launch_command_runs_the_cli_as_each_process_script(tmp_path):
    command = launch_command(LaunchRequest(devices=(0, 1)), "configs/x.json", ["--max_steps", "2"], ["--force"],
                             tmp_path / "logs", python="/py")
    assert command == ["/py", "-m", "paddle.distributed.launch", "--devices", "0,1", "--log_dir", str(tmp_path / "logs"),
                       "/py", "-m", "address_completion", "train", "configs/x.json", "--max_steps", "2", "--force"]


# ---------------------------------------------------------------- through the CLI


@pytest.fixture(scope="module")
def small_run(tmp_path_factory, default_model_dir):
    """A dataset of 32 training and 4 dev pairs and a config for a few LoRA steps on the default model."""
    from address_completion.data.synthesis import synthesize

    folder = tmp_path_factory.mktemp("launch")
    pairs = synthesize(36, seed=3)
    dataio.write_jsonl(folder / "data" / "train.json", pairs[:32])
    dataio.write_jsonl(folder / "data" / "dev.json", pairs[32:])

    def config(name: str, batch_size: int) -> Path:
        values = {"model_name_or_path": str(default_model_dir), "dataset_name_or_path": str(folder / "data"),
                  "output_dir": str(folder / name), "per_device_train_batch_size": batch_size,
                  "per_device_eval_batch_size": 8, "learning_rate": 2e-2, "warmup_steps": 0, "logging_steps": 2,
                  "src_length": 128, "max_length": 192, "do_train": True, "do_eval": True,
                  "evaluation_strategy": "steps", "eval_steps": 4, "max_steps": 4, "save_strategy": "steps",
                  "save_steps": 2, "lora": True, "lora_rank": 8, "seed": 11, "device": "cpu"}
        path = folder / f"{name}.json"
        path.write_text(json.dumps(values), encoding="utf-8")
        return path

    return config


@needs_two_cores
def test_dry_run_prints_the_launcher_command_and_trains_nothing(small_run, capsys):
    config = small_run("dry", 4)
    assert main(["train", str(config), "--max_steps", "2", "--nproc_per_node", "2", "--dry-run"]) == 0
    printed = capsys.readouterr().out.strip()
    log_dir = config.parent / "dry" / "launch_logs"
    assert printed == (f"{sys.executable} -m paddle.distributed.launch --nproc_per_node 2 --log_dir {log_dir} "
                       f"{sys.executable} -m address_completion train {config} --max_steps 2")
    assert not (config.parent / "dry").exists()


def test_devices_on_a_cpu_build_says_to_use_nproc(small_run, capsys):
    assert main(["train", str(small_run("cpu-devices", 4)), "--devices", "0,1"]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: --devices 0,1: Paddle sees no GPU here (CPU build, no CUDA device, or the config's device is cpu); "
        "on CPU use --nproc-per-node N to run N processes over gloo")


@needs_two_cores
def test_an_earlier_run_is_refused_before_anything_is_launched(small_run, capsys):
    config = small_run("earlier", 4)
    (config.parent / "earlier").mkdir()
    (config.parent / "earlier" / "summary.json").write_text("{}", encoding="utf-8")
    assert main(["train", str(config), "--nproc-per-node", "2"]) == 2
    assert "holds the results of an earlier run (summary.json); pass --force" in capsys.readouterr().err
    assert not (config.parent / "earlier" / "launch_logs").exists()


def run_train_script(arguments: list[str], nproc: str | None = None) -> subprocess.CompletedProcess:
    """`[NPROC=n] bash scripts/train.sh …` with this interpreter as the environment's Python."""
    env = {**os.environ, "ADDRESS_COMPLETION_NO_VENV": "1",
           "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")}
    env.pop("NPROC", None)
    if nproc is not None:
        env["NPROC"] = nproc
    return subprocess.run(["bash", str(ROOT / "scripts" / "train.sh"), *arguments], capture_output=True, text=True,
                          timeout=600, env=env, cwd=ROOT)


@needs_two_cores
def test_train_script_passes_nproc_to_the_launcher(small_run):
    config = small_run("script", 4)
    done = run_train_script([str(config), "--dry-run"], nproc="2")
    assert done.returncode == 0, done.stderr
    assert " -m paddle.distributed.launch --nproc_per_node 2 --log_dir " in done.stdout
    assert done.stdout.strip().endswith(f"-m address_completion train {config}")
    bad = run_train_script([str(config)], nproc="abc")
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines()[-1] == ("error: --nproc-per-node 'abc' (NPROC in scripts/train.sh): expected "
                                                   "a positive number of processes, such as 2")


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.mark.slow
@needs_two_cores
def test_two_processes_on_cpu_train_like_one_process_with_their_batches_together(small_run):
    """2 processes x 4 samples per step through the launcher, against 1 process x 8 samples: each process gets its
    half of the same order, so the logged (all-process) losses follow the single run; only rank 0 writes."""
    together, alone = small_run("dp", 4), small_run("single", 8)
    assert main(["train", str(together), "--nproc_per_node", "2"]) == 0
    assert main(["train", str(alone)]) == 0
    output = together.parent / "dp"
    summary = json.loads((output / "summary.json").read_text(encoding="utf-8"))
    assert summary["processes"] == 2 and summary["global_step"] == 4
    assert summary["epoch"] == 1.0  # 4 steps x 2 processes x 4 samples = the 32 training pairs once
    single = json.loads((together.parent / "single" / "summary.json").read_text(encoding="utf-8"))
    assert summary["train_tokens"] == single["train_tokens"]  # the same samples, counted over both processes
    logs = output / "launch_logs"
    assert (logs / "workerlog.0").is_file() and (logs / "workerlog.1").is_file()
    assert "Traceback" not in (logs / "workerlog.1").read_text(encoding="utf-8", errors="replace")
    assert list(output.glob("peft_model*.safetensors")) and (output / "checkpoint-4").is_dir()
    losses = [(record["step"], record["loss"]) for record in read_jsonl(output / "metrics.jsonl") if "loss" in record]
    single_losses = [(record["step"], record["loss"]) for record in read_jsonl(together.parent / "single" /
                                                                               "metrics.jsonl") if "loss" in record]
    assert [step for step, _ in losses] == [2, 4]  # written once (rank 0), not once per process
    for (_, loss), (_, expected) in zip(losses, single_losses):
        assert abs(loss - expected) < 0.01, (losses, single_losses)
    assert losses[-1][1] < losses[0][1]
    assert abs(summary["eval"]["eval_loss"] - single["eval"]["eval_loss"]) < 0.01


def test_more_processes_than_cores_or_gpus_is_refused():
    """--nproc_per_node 100000 used to be passed on to the launcher, which would start that many processes."""
    from address_completion.runtime import usable_cores
    from address_completion.training.launch import check_devices

    cores = usable_cores()
    check_devices(LaunchRequest(nproc_per_node=cores), "cpu", 1)  # one per core is fine
    with pytest.raises(ConfigError, match=rf"^--nproc-per-node {cores + 1}: more processes than the {cores} usable "
                                          rf"CPU core\(s\) here; each process needs one of its own \(at most "
                                          rf"--nproc-per-node {cores}\)$"):
        check_devices(LaunchRequest(nproc_per_node=cores + 1), "cpu", 1)
    with pytest.raises(ConfigError, match=r"--nproc-per-node 3: more processes than the 2 GPU\(s\) here"):
        check_devices(LaunchRequest(nproc_per_node=3), "gpu", 2)


def test_too_many_processes_fail_before_anything_is_launched(small_run, capsys):
    config = small_run("too-many", 4)
    assert main(["train", str(config), "--nproc_per_node", "100000", "--dry-run"]) == 2
    assert "--nproc-per-node 100000: more processes than the" in capsys.readouterr().err


def test_train_without_a_config_asks_for_one_not_for_the_optional_overrides(capsys):
    assert main(["train"]) == 2
    assert capsys.readouterr().err.strip() == ("error: train needs a config: address-completion train CONFIG.json "
                                               "[--key value ...], e.g. configs/tiny_cpu.json")


def test_a_bad_heap_variable_is_named_before_anything_is_launched(small_run, capsys, monkeypatch):
    """ADDRESS_COMPLETION_MMAP_THRESHOLD is applied inside each training process; the launcher (and --dry-run)
    checks it first, so a bad value is one clear error, not a failure in every worker after it started."""
    config = small_run("bad-heap", 4)
    monkeypatch.setenv("ADDRESS_COMPLETION_MMAP_THRESHOLD", "64MB")
    assert main(["train", str(config), "--nproc_per_node", "1", "--dry-run"]) == 2
    assert "ADDRESS_COMPLETION_MMAP_THRESHOLD: expected a byte count from 0 (glibc's own policy) to 33554432 " \
           "(glibc's limit, 32 MiB; the default), got '64MB'" in \
        capsys.readouterr().err
    assert not (config.parent / "bad-heap").exists()


def test_train_flags_are_kebab_case_with_the_older_spellings_accepted():
    """Issue 24: --force replaces an earlier run (--overwrite kept as its alias), --nproc-per-node (PaddleNLP's and
    the launcher's --nproc_per_node accepted), before or after the config."""
    import argparse

    from address_completion.training.train import add_arguments, split_flags

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    for flag in ("--force", "--overwrite"):
        assert parser.parse_args([flag, "--nproc_per_node", "2", "c.json"]).force is True
    args = parser.parse_args(["--nproc-per-node", "3", "c.json"])
    assert args.nproc_per_node == "3" and args.force is False
    assert split_flags(["--max_steps", "2", "--overwrite", "--resume"]) == (["--max_steps", "2"],
                                                                            {"--force", "--resume"})
    assert split_flags(["--force"]) == ([], {"--force"})
    for spelling in ("--nproc-per-node", "--nproc_per_node"):
        assert split_launch_options(["--max_steps", "2", spelling, "2"]) == (["--max_steps", "2"],
                                                                               LaunchRequest(nproc_per_node=2))
