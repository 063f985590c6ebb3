"""alpaca, sharegpt and OpenAI messages records read as src/tgt pairs by prepare, split and train."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from address_completion import DEFAULT_PROMPT_PREFIX, cli
from address_completion.data.dataio import read_records
from address_completion.errors import DataError

ADDRESS, FULL = "碑林区扬子江南路467-6号", "陕西省西安市碑林区扬子江南路467-6号"
PAIR = {"src": DEFAULT_PROMPT_PREFIX + ADDRESS, "tgt": FULL}


def write_jsonl(path: Path, objects: list) -> Path:
    path.write_text("".join(json.dumps(obj, ensure_ascii=False) + "\n" for obj in objects), encoding="utf-8")
    return path


def alpaca(src_address: str, full: str, instruction: str = "补齐五级行政地址") -> dict:
    return {"instruction": instruction, "input": src_address, "output": full}


def sharegpt(*turns: str) -> dict:
    speakers = ["human", "gpt"] * len(turns)
    return {"conversations": [{"from": who, "value": text} for who, text in zip(speakers, turns)]}


@pytest.mark.parametrize("name, record", [
    ("src_tgt", PAIR),
    ("alpaca", alpaca(ADDRESS, FULL)),
    ("alpaca", alpaca(ADDRESS, FULL, instruction="补齐五级行政地址: ")),
    ("alpaca", alpaca(ADDRESS, FULL, instruction="")),
    ("sharegpt", sharegpt(DEFAULT_PROMPT_PREFIX + ADDRESS, FULL)),
    ("sharegpt", {"conversations": [{"from": "system", "value": "你是地址助手"},
                                    {"from": "human", "value": DEFAULT_PROMPT_PREFIX + ADDRESS},
                                    {"from": "gpt", "value": FULL}]}),
    ("messages", {"messages": [{"role": "system", "content": "你是地址助手"},
                               {"role": "user", "content": DEFAULT_PROMPT_PREFIX + ADDRESS},
                               {"role": "assistant", "content": FULL}]}),
])
def test_each_format_becomes_the_projects_pair(tmp_path, name, record):
    path = write_jsonl(tmp_path / "data.jsonl", [record, record])
    result = read_records(path)
    assert result.records == [PAIR, PAIR] and result.layout == name and result.describe() == f"{name} (detected)"
    array = tmp_path / "data.json"  # LLaMA-Factory's files are JSON arrays
    array.write_text(json.dumps([record], ensure_ascii=False), encoding="utf-8")
    assert read_records(array).records == [PAIR]
    assert read_records(path, fmt=name).describe() == f"{name} (given)"


def test_another_instruction_is_kept_as_llama_factory_joins_it(tmp_path):
    path = write_jsonl(tmp_path / "data.jsonl", [alpaca(ADDRESS, FULL, instruction="请补全这个地址")])
    assert read_records(path).records == [{"src": "请补全这个地址\n" + ADDRESS, "tgt": FULL}]


def test_a_three_turn_sharegpt_conversation_is_refused_naming_the_line(tmp_path):
    path = write_jsonl(tmp_path / "chat.jsonl", [sharegpt(ADDRESS, FULL),
                                                 sharegpt(ADDRESS, FULL, "海淀区", "北京市海淀区", "闵行区", "上海市闵行区")])
    with pytest.raises(DataError) as caught:
        read_records(path)
    message = str(caught.value)
    assert caught.value.line == 2 and "\n" not in message
    assert "'conversations' holds 3 user turns: this task is single-turn" in message
    assert read_records(path, skip_bad=True).records == [{"src": ADDRESS, "tgt": FULL}]


def test_a_file_in_no_known_format_gets_one_line_naming_keys_and_formats(tmp_path, capsys):
    path = write_jsonl(tmp_path / "odd.jsonl", [{"address": ADDRESS, "full": FULL}])
    with pytest.raises(DataError) as caught:
        read_records(path)
    assert str(caught.value) == (
        f"{path}:1: a record in no known format: keys found: 'address', 'full'; formats accepted: src_tgt (src, tgt), "
        "alpaca (instruction, input, output), sharegpt (conversations: from/value), messages (OpenAI messages: "
        "role/content)")
    assert cli.main(["split", str(path), "--output", str(tmp_path / "out")]) != 0
    err = capsys.readouterr().err
    assert "keys found: 'address', 'full'" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_alpaca_field_names_appear_in_its_errors_and_mixed_files_are_refused(tmp_path):
    path = write_jsonl(tmp_path / "a.jsonl", [alpaca(ADDRESS, FULL), {"instruction": "补齐五级行政地址", "input": "x"}])
    with pytest.raises(DataError, match=r"missing field 'tgt' \('output'\)"):
        read_records(path)
    mixed = write_jsonl(tmp_path / "m.jsonl", [alpaca(ADDRESS, FULL), PAIR])
    with pytest.raises(DataError, match="record in src_tgt format, but the file's first record is in alpaca format"):
        read_records(mixed)


def test_split_names_the_detected_format(tmp_path, capsys):
    from address_completion.data.synthesis import synthesize

    records = [alpaca(pair["src"].removeprefix(DEFAULT_PROMPT_PREFIX), pair["tgt"]) for pair in synthesize(20, seed=1)]
    path = write_jsonl(tmp_path / "alpaca.jsonl", records)
    assert cli.main(["split", str(path), "--output", str(tmp_path / "out"), "--ratios", "0.6,0.2,0.2"]) == 0
    assert f"{path}: record format alpaca (detected)" in capsys.readouterr().err
    written = [json.loads(line) for line in (tmp_path / "out" / "train.json").read_text(encoding="utf-8").splitlines()]
    assert written and set(written[0]) == {"src", "tgt"} and written[0]["src"].startswith(DEFAULT_PROMPT_PREFIX)


@pytest.mark.slow
def test_the_tiny_model_trains_on_an_alpaca_file(default_model_dir, tmp_path):
    from address_completion.data.synthesis import synthesize
    from address_completion.training.train import train

    pairs = synthesize(24, seed=3)
    folder = tmp_path / "data"
    folder.mkdir()
    as_alpaca = [alpaca(pair["src"].removeprefix(DEFAULT_PROMPT_PREFIX), pair["tgt"]) for pair in pairs]
    (folder / "train.json").write_text(json.dumps(as_alpaca[:20], ensure_ascii=False, indent=1), encoding="utf-8")
    write_jsonl(folder / "dev.json", as_alpaca[20:])
    output = tmp_path / "run"
    config = tmp_path / "run.json"
    config.write_text(json.dumps({
        "model_name_or_path": str(default_model_dir), "dataset_name_or_path": str(folder), "output_dir": str(output),
        "per_device_train_batch_size": 4, "per_device_eval_batch_size": 4, "learning_rate": 2e-2, "warmup_steps": 0,
        "logging_steps": 1, "src_length": 128, "max_length": 192, "do_train": True, "lora": True, "lora_rank": 4,
        "seed": 11, "max_steps": 3, "evaluation_strategy": "steps", "eval_steps": 3, "eval_samples": 2,
        "report_to": "none"}), encoding="utf-8")
    summary = train(config, device="cpu")
    assert summary["global_step"] == 3
    assert summary["truncation"]["train"]["samples"] == 20
    assert list(output.glob("*.safetensors")) or list(output.glob("*.pdparams"))
    from address_completion.training.samples import read_split

    assert read_split(folder, "train.json") == pairs[:20]  # exactly the src/tgt pairs the alpaca file stands for
