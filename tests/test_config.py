"""Config validation: keys, types, lengths, dataset folder, output folder choice, overrides, device warnings."""

from __future__ import annotations

import json
import re
import logging
from pathlib import Path

import pytest

from address_completion.training.checkpoints import checkpoint_is_complete, resume_checkpoint
from address_completion.training.config import load_config
from address_completion.training.config_keys import parse_overrides
from address_completion.errors import ConfigError, DataError, OutputExistsError, closest_match
from address_completion.flags import FALSE_WORDS, TRUE_WORDS, parse_bool

REPO = Path(__file__).resolve().parents[1]

# PaddleNLP's llm/config/qwen/lora_argument_0p5b.json, the seed tutorial's config (paths go in per test).
SEED_CONFIG = {
    "per_device_train_batch_size": 2, "gradient_accumulation_steps": 8, "per_device_eval_batch_size": 2,
    "eval_accumulation_steps": 32, "num_train_epochs": 3, "learning_rate": 3e-04, "warmup_steps": 30,
    "logging_steps": 1, "evaluation_strategy": "epoch", "save_strategy": "epoch", "src_length": 1024,
    "max_length": 2048, "fp16": True, "fp16_opt_level": "O2", "do_train": True, "do_eval": True,
    "disable_tqdm": True, "load_best_model_at_end": True, "eval_with_do_generation": False,
    "metric_for_best_model": "accuracy", "recompute": True, "save_total_limit": 1, "tensor_parallel_degree": 1,
    "pipeline_parallel_degree": 1, "lora": True, "unified_checkpoint": True, "zero_padding": False,
    "use_flash_attention": False, "pissa": False,
}


@pytest.fixture
def paths(tmp_path: Path) -> dict[str, str]:
    """A model folder that passes the path check (never loaded here) and a dataset with train/dev."""
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (model / "model_state.pdparams").write_bytes(b"")
    data = tmp_path / "data"
    data.mkdir()
    pair = {"src": "碑林区扬子江南路467-6号", "tgt": "陕西省西安市碑林区扬子江南路467-6号"}
    for name in ("train.json", "dev.json"):
        (data / name).write_text(json.dumps(pair, ensure_ascii=False) + "\n", encoding="utf-8")
    return {"model_name_or_path": str(model), "dataset_name_or_path": str(data), "output_dir": str(tmp_path / "out")}


def write_config(tmp_path: Path, values: dict, name: str = "config.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(values, indent=2), encoding="utf-8")
    return path


def load(tmp_path: Path, values: dict, overrides=(), **kwargs):
    return load_config(write_config(tmp_path, values), overrides, device="cpu", **kwargs)


def test_unknown_key_names_the_closest_valid_key(tmp_path, paths):
    path = write_config(tmp_path, {**paths, "do_train": True, "lora": True, "lora_rnak": 4})
    with pytest.raises(ConfigError, match=r"config.json:\d+: unknown key 'lora_rnak'; did you mean 'lora_rank'"):
        load_config(path, device="cpu")
    with pytest.raises(ConfigError, match=r"command line --learning_rat.*did you mean 'learning_rate'"):
        load_config(write_config(tmp_path, {**paths, "do_train": True}), ["--learning_rat", "1e-3"], device="cpu")
    assert closest_match("per_device_train_batchsize", ["per_device_train_batch_size", "seed"]) \
        == "per_device_train_batch_size"


@pytest.mark.parametrize("key, value, message", [
    ("lora_rank", "8", r"lora_rank must be an integer, got \"8\" \(a string\)"),
    ("learning_rate", "fast", r"learning_rate must be a number"),
    ("lora", "yes", r"lora must be true or false"),
    ("num_train_epochs", True, r"num_train_epochs must be a number, got true \(a boolean\)"),
    ("evaluation_strategy", "epcoh", r"evaluation_strategy must be one of no, steps, epoch.*did you mean 'epoch'"),
    ("detail", "folded", r"detail must be one of verbatim, clean"),
])
def test_wrong_types_are_errors_naming_the_key(tmp_path, paths, key, value, message):
    with pytest.raises(ConfigError, match=message):
        load(tmp_path, {**paths, "do_train": True, key: value})


@pytest.mark.parametrize("values, message", [
    ({"save_steps": 0}, r"save_steps must be at least 1 with save_strategy steps, got 0"),
    ({"weight_decay": -0.01}, r"weight_decay must be >= 0, got -0.01"),
    ({"warmup_ratio": 1.5}, r"warmup_ratio must be between 0 and 1 \(a fraction of the steps\), got 1.5"),
    ({"warmup_steps": -5}, r"warmup_steps must be >= 0, got -5"),
    ({"adam_beta2": 1.0}, r"adam_beta2 must be in \[0, 1\), got 1.0"),
    ({"adam_epsilon": 0.0}, r"adam_epsilon must be positive, got 0.0"),
])
def test_optimizer_and_schedule_values_out_of_range_name_the_key_and_line(tmp_path, paths, values, message):
    with pytest.raises(ConfigError, match=r"config.json:\d+: " + message):
        load(tmp_path, {**paths, "do_train": True, **values})


def test_do_eval_false_with_an_evaluation_strategy_is_named(tmp_path, paths):
    with pytest.raises(ConfigError, match=r"command line --do_eval: do_eval is false, but evaluation_strategy 'steps' "
                                          r"evaluates anyway .* also set evaluation_strategy no"):
        load(tmp_path, {**paths, "do_train": True, "evaluation_strategy": "steps"}, ["--do_eval", "false"])
    assert load(tmp_path, {**paths, "do_train": True, "evaluation_strategy": "no"},
                ["--do_eval", "false"]).values["do_eval"] is False


def test_save_steps_zero_is_fine_when_nothing_is_saved_by_steps(tmp_path, paths):
    assert load(tmp_path, {**paths, "do_train": True, "save_steps": 0, "save_strategy": "no"}).values["save_steps"] == 0


def test_source_length_must_be_below_max_length(tmp_path, paths):
    with pytest.raises(ConfigError, match=r"src_length \(2048\) must be smaller than max_length \(2048\)"):
        load(tmp_path, {**paths, "do_train": True, "src_length": 2048, "max_length": 2048})


def test_command_line_overrides_are_typed_and_win(tmp_path, paths):
    cfg = load(tmp_path, {**paths, "do_train": True, "lora": True, "lora_rank": 8, "learning_rate": 3e-4},
               ["--lora_rank", "4", "--learning_rate=1e-3", "--recompute", "--report_to", "visualdl",
                "--target_modules", "q_proj,v_proj", "--eval_samples", "null"])
    assert cfg.model_args.lora_rank == 4 and cfg.training_args.learning_rate == 1e-3
    assert cfg.training_args.recompute is True and cfg.training_args.report_to == ["visualdl"]
    assert cfg.extras["target_modules"] == ["q_proj", "v_proj"] and cfg.extras["eval_samples"] is None
    with pytest.raises(ConfigError, match=r"command line --lora_rank: lora_rank must be an integer, got 'four'"):
        load(tmp_path, {**paths, "do_train": True}, ["--lora_rank", "four"])
    assert parse_overrides(["--lora", "--max_steps", "5"]) == {"lora": "true", "max_steps": "5"}
    for forgotten in (["--output_dir"], ["--output_dir", "--lora"], ["--lora_rank"]):  # output_dir was "true"
        with pytest.raises(ConfigError, match=rf"command line {forgotten[0]}: {forgotten[0][2:]} needs a value"):
            load(tmp_path, {**paths, "do_train": True}, forgotten)
    assert load(tmp_path, {**paths, "do_train": True}, ["--lora"]).values["lora"] is True
    with pytest.raises(ConfigError, match="overrides are written --key value"):
        parse_overrides(["lora_rank", "4"])


@pytest.mark.parametrize("word, expected", [(word, True) for word in (*TRUE_WORDS, "ON", "Yes")]
                         + [(word, False) for word in (*FALSE_WORDS, "OFF", "No")])
def test_command_line_booleans_take_the_words_of_flags_parse_bool(tmp_path, paths, word, expected):
    """--do_train off / --lora y: a true/false key reads a command-line word as every command's flags do
    (flags.parse_bool, merge_lora_params' strtobool vocabulary); anything else names the key and where it came from."""
    cfg = load(tmp_path, {**paths, "do_train": not expected, "do_eval": True, "lora": not expected},
               ["--do_train", word, "--lora", word])
    assert cfg.values["do_train"] is expected and cfg.values["lora"] is expected
    assert parse_bool(word) is expected


def test_a_command_line_boolean_that_is_no_word_names_the_key(tmp_path, paths):
    with pytest.raises(ConfigError, match=r"^command line --do_train: do_train must be true or false, got 'maybe'$"):
        load(tmp_path, {**paths, "do_train": True}, ["--do_train", "maybe"])


def test_dataset_folder_and_files_are_checked(tmp_path, paths):
    with pytest.raises(ConfigError, match="is not a folder; it must hold train.json and dev.json"):
        load(tmp_path, {**paths, "dataset_name_or_path": str(tmp_path / "missing"), "do_train": True})
    Path(paths["dataset_name_or_path"], "dev.json").unlink()
    with pytest.raises(ConfigError, match="has no dev.json .*the run evaluates"):
        load(tmp_path, {**paths, "do_train": True, "do_eval": True})
    load(tmp_path, {**paths, "do_train": True})  # no evaluation: dev.json not needed
    Path(paths["dataset_name_or_path"], "train.json").unlink()
    with pytest.raises(ConfigError, match="has no train.json .*do_train is true"):
        load(tmp_path, {**paths, "do_train": True})


def test_missing_model_folder_fails_before_anything_else(tmp_path, paths):
    with pytest.raises(ConfigError, match="model folder .* does not exist"):
        load(tmp_path, {**paths, "model_name_or_path": str(tmp_path / "nowhere"), "lora_rnak": 1})


def make_checkpoint(folder: Path, step: int, complete: bool = True) -> Path:
    checkpoint = folder / f"checkpoint-{step}"
    checkpoint.mkdir(parents=True)
    names = ("trainer_state.json", "scheduler.pdparams", "rng_state.pth") if complete else ("trainer_state.json",)
    for name in names:
        (checkpoint / name).write_text("{}")
    return checkpoint


def test_output_dir_with_checkpoints_needs_an_explicit_choice(tmp_path, caplog):
    out = tmp_path / "out"
    assert resume_checkpoint(out, resume=False, overwrite=False) is None  # fresh folder
    with pytest.raises(ConfigError, match="no complete checkpoint"):
        resume_checkpoint(out, resume=True, overwrite=False)
    make_checkpoint(out, 10)
    make_checkpoint(out, 20)
    with pytest.raises(OutputExistsError, match=r"checkpoint-20.*--resume.*--force"):
        resume_checkpoint(out, resume=False, overwrite=False)
    assert resume_checkpoint(out, resume=True, overwrite=False) == out / "checkpoint-20"
    assert resume_checkpoint(out, resume=False, overwrite=True) is None
    with pytest.raises(ConfigError, match="exclude each other"):
        resume_checkpoint(out, resume=True, overwrite=True)
    partial = make_checkpoint(out, 30, complete=False)  # killed while saving
    assert not checkpoint_is_complete(partial)
    with caplog.at_level(logging.WARNING, logger="address_completion"):
        assert resume_checkpoint(out, resume=True, overwrite=False) == out / "checkpoint-20"
    assert "incomplete" in caplog.text


def test_finished_run_needs_force(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "summary.json").write_text("{}")
    with pytest.raises(OutputExistsError, match="summary.json.*--force"):
        resume_checkpoint(out, resume=False, overwrite=False)


def test_seed_config_runs_with_only_paths_changed(tmp_path, paths, caplog):
    with caplog.at_level(logging.WARNING, logger="address_completion"):
        cfg = load(tmp_path, {**SEED_CONFIG, **paths})
    args = cfg.training_args
    assert (args.per_device_train_batch_size, args.gradient_accumulation_steps, args.num_train_epochs) == (2, 8, 3)
    assert args.learning_rate == 3e-4 and args.warmup_steps == 30 and args.save_total_limit == 1
    assert args.load_best_model_at_end and args.metric_for_best_model == "accuracy" and args.recompute
    assert (cfg.data_args.src_length, cfg.data_args.max_length) == (1024, 2048)
    # fp16 does nothing on CPU: exactly one warning, and float32 training.
    assert not args.fp16 and not args.bf16 and cfg.dtype == "float32"
    assert [note for note in cfg.warnings if "fp16" in note] == [note for note in cfg.warnings]
    assert caplog.text.count("fp16 is not supported on CPU") == 1
    assert cfg.extras["lora_alpha"] == 16.0  # run_finetune's 2 * lora_rank


def test_bundled_configs_load(tmp_path, paths):
    for name in ("lora_0p5b.json", "tiny_cpu.json"):
        raw = json.loads((REPO / "configs" / name).read_text(encoding="utf-8"))
        assert raw["_comment"].count("scripts/train.sh configs/" + name) == 1
        cfg = load_config(REPO / "configs" / name, [f"--{key}={value}" for key, value in paths.items()],
                          device="cpu")
        assert cfg.model_args.lora and cfg.dtype == "float32"
    lora = json.loads((REPO / "configs" / "lora_0p5b.json").read_text(encoding="utf-8"))
    assert {key: lora[key] for key in SEED_CONFIG if key not in ("fp16", "disable_tqdm")} \
        == {key: value for key, value in SEED_CONFIG.items() if key not in ("fp16", "disable_tqdm")}
    assert lora["bf16"] is True and "fp16" not in lora


def test_keys_that_do_nothing_here_warn_once_each(tmp_path, paths):
    cfg = load(tmp_path, {**paths, "do_train": True, "use_flash_attention": True, "bf16": True,
                          "tensor_parallel_degree": 2, "sharding": "stage1"})
    assert len(cfg.warnings) == 4
    assert any("use_flash_attention needs a GPU" in note for note in cfg.warnings)
    assert any("tensor_parallel_degree=2 but only 1" in note for note in cfg.warnings)
    assert not cfg.training_args.bf16 and cfg.values["use_flash_attention"] is False


def test_detail_key_defaults_to_verbatim(tmp_path, paths):
    assert load(tmp_path, {**paths, "do_train": True}).extras["detail"] == "verbatim"
    assert load(tmp_path, {**paths, "do_train": True, "detail": "clean"}).extras["detail"] == "clean"


def test_lora_choices(tmp_path, paths):
    with pytest.raises(ConfigError, match="pissa=true is not supported: PiSSA replaces the base weights"):
        load(tmp_path, {**paths, "do_train": True, "lora": True, "pissa": True})
    assert load(tmp_path, {**paths, "do_train": True, "lora": True, "rslora": True}).extras["lora_alpha"] == 4.0
    assert load(tmp_path, {**paths, "do_train": True, "lora": True, "lora_alpha": 32}).extras["lora_alpha"] == 32.0
    with pytest.raises(ConfigError, match="target_modules applies to LoRA training"):
        load(tmp_path, {**paths, "do_train": True, "target_modules": ["q_proj"]})
    with pytest.raises(ConfigError, match="metric_for_best_model must be one of"):
        load(tmp_path, {**paths, "do_train": True, "do_eval": True, "metric_for_best_model": "bleu"})


def test_safe_serialization_decides_unified_checkpoint(tmp_path, paths, caplog):
    """Safetensors (unified checkpoints) unless safe_serialization is false; a disagreeing unified_checkpoint warns."""
    base = {**paths, "do_train": True, "lora": True}
    cfg = load(tmp_path, base)
    assert cfg.extras["safe_serialization"] is True and cfg.training_args.unified_checkpoint is True
    assert cfg.warnings == [] and cfg.resolved()["unified_checkpoint"] is True
    cfg = load(tmp_path, base, ["--safe_serialization", "false"])
    assert cfg.extras["safe_serialization"] is False and cfg.training_args.unified_checkpoint is False
    with caplog.at_level(logging.WARNING, logger="address_completion"):
        cfg = load(tmp_path, {**base, "unified_checkpoint": False})
    assert cfg.training_args.unified_checkpoint is True
    assert len(cfg.warnings) == 1 and cfg.warnings[0].endswith(
        "config.json:7: unified_checkpoint false is overridden by safe_serialization true "
        "(true: safetensors in unified checkpoints; false: the pickled .pdparams layout)")
    assert caplog.text.count("overridden by safe_serialization") == 1
    with pytest.raises(ConfigError, match="safe_serialization must be"):
        load(tmp_path, base, ["--safe_serialization", "maybe"])


def test_checkpoint_is_complete_with_json_or_pickled_scheduler_state(tmp_path):
    for scheduler in ("scheduler.json", "scheduler.pdparams"):
        checkpoint = tmp_path / scheduler / "checkpoint-2"
        checkpoint.mkdir(parents=True)
        for name in ("trainer_state.json", "rng_state.pth"):
            (checkpoint / name).write_text("{}")
        assert not checkpoint_is_complete(checkpoint)  # the scheduler state is written last
        (checkpoint / scheduler).write_text("{}")
        assert checkpoint_is_complete(checkpoint)


def test_comments_are_ignored_and_resolved_config_loads_again(tmp_path, paths):
    cfg = load(tmp_path, {"_comment": "run: bash scripts/train.sh x.json", **paths, "do_train": True, "lora": True})
    resolved = cfg.resolved()
    assert resolved["_comment"].startswith("resolved from") and resolved["lora_alpha"] == 16.0
    again = load_config(write_config(tmp_path, resolved, "resolved.json"), device="cpu")
    assert again.extras == cfg.extras and again.model_args.lora_rank == cfg.model_args.lora_rank


def test_no_candidate_rate_is_a_share(tmp_path, paths):
    assert load(tmp_path, {**paths, "do_train": True}).extras["no_candidate_rate"] == 0.1
    assert load(tmp_path, {**paths, "do_train": True}, ["--no_candidate_rate", "0"]).extras["no_candidate_rate"] == 0
    for bad in (1.5, -0.1):
        with pytest.raises(ConfigError, match="no_candidate_rate must be between 0 and 1"):
            load(tmp_path, {**paths, "do_train": True, "no_candidate_rate": bad})


def test_batches_are_length_grouped_and_padded_to_a_multiple_of_8_by_default(tmp_path, paths):
    cfg = load(tmp_path, {**paths, "do_train": True, "lora": True})
    assert cfg.extras["group_by_length"] is True and cfg.data_args.pad_to_multiple_of == 8
    assert cfg.resolved()["group_by_length"] is True and cfg.resolved()["pad_to_multiple_of"] == 8
    cfg = load(tmp_path, {**paths, "do_train": True, "pad_to_multiple_of": None, "group_by_length": False})
    assert cfg.extras["group_by_length"] is False and cfg.data_args.pad_to_multiple_of is None
    cfg = load(tmp_path, {**paths, "do_train": True}, ["--pad_to_multiple_of", "16", "--group_by_length", "false"])
    assert cfg.extras["group_by_length"] is False and cfg.data_args.pad_to_multiple_of == 16
    with pytest.raises(ConfigError, match="group_by_length must be true or false"):
        load(tmp_path, {**paths, "do_train": True, "group_by_length": "yes"})


def test_broken_json_names_the_line(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{\n  "lora": true,\n  "lora_rank": 8,,\n}\n')
    with pytest.raises(ConfigError, match=r"broken.json:3: broken JSON"):
        load_config(path, device="cpu")


def test_json_nested_past_the_recursion_limit_is_broken_json_not_a_traceback(tmp_path):
    path = tmp_path / "deep.json"
    path.write_text("[" * 5000 + "]" * 5000)
    with pytest.raises(ConfigError, match=r"deep.json:1: broken JSON \(nested deeper than Python's JSON parser "
                                          r"can follow\)"):
        load_config(path, device="cpu")


def test_an_empty_config_file_is_called_empty(tmp_path):
    path = tmp_path / "empty.json"
    path.write_text(" \n\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"empty.json is empty; write a JSON object of run_finetune keys"):
        load_config(path, device="cpu")


def test_non_finite_numbers_are_refused_naming_key_and_line(tmp_path, paths):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({**paths, "do_train": True}, indent=2)[:-2] + ',\n  "warmup_ratio": NaN\n}\n')
    with pytest.raises(ConfigError, match=r"config.json:6: warmup_ratio must be a finite number, got nan"):
        load_config(path, device="cpu")
    with pytest.raises(ConfigError, match=r"command line --learning_rate: learning_rate must be a finite number"):
        load(tmp_path, {**paths, "do_train": True}, ["--learning_rate", "inf"])


def test_config_file_that_is_not_utf8_names_file_and_line(tmp_path, paths, capsys):
    from address_completion import cli

    path = tmp_path / "config.json"
    path.write_bytes(b'{\n  "do_train": true,\n  "\xff": 1\n}\n')
    with pytest.raises(DataError, match=r"config.json:3: invalid UTF-8 at byte 4 of the line"):
        load_config(path, device="cpu")
    assert cli.main(["train", str(path)]) == 2  # one line, no traceback
    assert capsys.readouterr().err.strip().splitlines() == [
        f"error: {path}:3: invalid UTF-8 at byte 4 of the line (the file must be UTF-8 encoded)"]


def test_a_key_given_twice_is_an_error(tmp_path, paths):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({**paths, "do_train": True})[:-1] + ',\n"max_steps": 2,\n"max_steps": 3}',
                    encoding="utf-8")
    with pytest.raises(ConfigError, match=r"config.json: key 'max_steps' is given twice \(lines 2, 3\)"):
        load_config(path, device="cpu")


def test_a_yaml_config_is_told_to_be_json(tmp_path, paths):
    path = tmp_path / "config.yaml"
    path.write_text("model_name_or_path: x\nmax_steps: 2\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"config.yaml:1: broken JSON .*train takes a JSON config"):
        load_config(path, device="cpu")
    path = tmp_path / "sft.json"  # a PaddleFormers YAML under another name, opening with a comment
    path.write_text("# LoRA SFT\n---\nmodel_name_or_path: x\nmax_seq_len: 512\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"sft.json:1: broken JSON .*train takes a JSON config"):
        load_config(path, device="cpu")


def test_paddleformers_keys_are_named_together_with_what_to_write(tmp_path, paths):
    """Keys of PaddleFormers' examples/config/sft/lora.yaml, written as JSON: all named at once, each with its
    run_finetune spelling; its keys shared with run_finetune (lora, lora_rank) pass."""
    values = {**paths, "do_train": True, "lora": True, "lora_rank": 8, "stage": "SFT", "fine_tuning": "lora",
              "max_seq_len": 512, "train_dataset_path": "./train.jsonl"}
    with pytest.raises(ConfigError) as error:
        load(tmp_path, values)
    message = str(error.value)
    assert message.startswith("PaddleFormers keys, which this trainer (PaddleNLP run_finetune's vocabulary) does not "
                              "read: ")
    assert "stage: only supervised fine-tuning exists here" in message
    assert "fine_tuning: write lora: true" in message and "max_seq_len: write max_length" in message
    assert re.search(r"config.json:\d+: train_dataset_path: give dataset_name_or_path", message)
    assert "lora_rank" not in message
    values = {key: value for key, value in values.items()
              if key not in ("stage", "fine_tuning", "max_seq_len", "train_dataset_path")}
    assert load(tmp_path, {**values, "max_length": 512, "src_length": 256}).values["max_length"] == 512


@pytest.mark.parametrize("value", [0, -2])
def test_max_steps_that_would_silently_train_whole_epochs_is_an_error(tmp_path, paths, value):
    """PaddleNLP trains num_train_epochs for any max_steps <= 0: --max_steps 0 trained 320 steps."""
    with pytest.raises(ConfigError, match=rf"command line --max_steps: max_steps must be at least 1, or -1 \(the "
                                          rf"default\) to train num_train_epochs; got {value}"):
        load(tmp_path, {**paths, "do_train": True}, ["--max_steps", str(value)])
    assert load(tmp_path, {**paths, "do_train": True, "max_steps": -1}).values["max_steps"] == -1


@pytest.mark.parametrize("tokens", [["--max_steps", "3", "--max_steps", "4"], ["--max_steps=3", "--max-steps", "4"]])
def test_an_override_given_twice_is_refused(tokens):
    """Found by a fresh-user check: train CONFIG --max_steps 3 --max_steps 4 trained 4 steps without a word."""
    from address_completion.training.config_keys import parse_overrides

    with pytest.raises(ConfigError, match=r"^--max_steps is given twice on the command line: 3 and 4; give it once$"):
        parse_overrides(tokens)
