"""Training: prompt/label construction, batching, packing, generation-based accuracy, outputs, resume, options."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import wait_until_paused

from address_completion.data import dataio
from address_completion.training.checkpoints import LOSS_SUM_FILE, checkpoint_is_complete, checkpoints_in
from address_completion.training.config import load_config
from address_completion.data.prompt import encode_example, render_prompt
from address_completion.training.lora import build_model
from address_completion.training.samples import (GROUP_BATCHES, IGNORE_INDEX, PaddingCollator, batch_order,
                                                 build_features, encode_pairs, pack_features)
from address_completion.training.train import read_pairs, set_up, train
from address_completion.training.trainer import GenerationEval, answer_loss

IM_END = 151645
ADDRESS, FULL = "碑林区扬子江南路467-6号", "陕西省西安市碑林区扬子江南路467-6号"


@pytest.fixture(scope="module")
def pairs() -> list[dict[str, str]]:
    from address_completion.data.synthesis import synthesize

    return synthesize(40, seed=3)


@pytest.fixture
def dataset(tmp_path: Path, pairs) -> Path:
    folder = tmp_path / "data"
    dataio.write_jsonl(folder / "train.json", pairs[:32])
    dataio.write_jsonl(folder / "dev.json", pairs[32:])
    return folder


def write_config(tmp_path: Path, name: str, values: dict) -> Path:
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(values), encoding="utf-8")
    return path


def base_config(model: Path, dataset: Path, output: Path, **values) -> dict:
    return {"model_name_or_path": str(model), "dataset_name_or_path": str(dataset), "output_dir": str(output),
            "per_device_train_batch_size": 8, "per_device_eval_batch_size": 8, "learning_rate": 2e-2,
            "warmup_steps": 0, "logging_steps": 2, "src_length": 128, "max_length": 192, "do_train": True,
            "lora": True, "lora_rank": 8, "seed": 11, **values}


def tensors(batch: dict) -> dict:
    import paddle

    return {key: paddle.to_tensor(value) for key, value in batch.items()}


# ---------------------------------------------------------------- samples


def test_labels_mask_the_prompt_are_shifted_and_end_with_im_end(qwen_tokenizer):
    prompt_ids, answer_ids = encode_example(qwen_tokenizer, ADDRESS, FULL)
    assert render_prompt(qwen_tokenizer, ADDRESS).endswith("<|im_start|>assistant\n")
    assert answer_ids[-1] == IM_END and qwen_tokenizer.eos_token_id == IM_END
    features, source_cut, sample_cut = build_features(prompt_ids, answer_ids, src_length=1024, max_length=2048)
    sequence = prompt_ids + answer_ids
    assert features["input_ids"] == sequence[:-1]  # the last token is only ever a label
    assert features["labels"] == [IGNORE_INDEX] * (len(prompt_ids) - 1) + answer_ids  # label i = token i + 1
    assert features["labels"][-1] == IM_END and not source_cut and not sample_cut
    answer_start = len(prompt_ids) - 1
    assert qwen_tokenizer.decode(features["labels"][answer_start:-1]) == FULL


def test_truncation_cuts_source_from_the_left_and_sample_to_max_length(qwen_tokenizer):
    prompt_ids, answer_ids = list(range(100, 140)), list(range(200, 220)) + [IM_END]
    features, source_cut, sample_cut = build_features(prompt_ids, answer_ids, src_length=30, max_length=45)
    assert source_cut and sample_cut
    assert features["input_ids"][:30] == prompt_ids[-30:] and len(features["input_ids"]) == 44
    assert features["labels"][-1] == answer_ids[14]  # 15 answer tokens fit, the EOS is cut
    split = encode_pairs(qwen_tokenizer, [{"src": ADDRESS, "tgt": FULL}] * 3, src_length=8, max_length=64)
    assert split.truncation() == {"samples": 3, "source_truncated": 3, "sample_truncated": 0}


def test_training_prompts_shuffle_candidates_per_example_and_withhold_some(qwen_tokenizer):
    from address_completion.data.prompt import NO_CANDIDATE

    pairs = [{"src": "鼓楼区黄河南路1号", "tgt": "江苏省徐州市鼓楼区黄河南路1号"}] * 400

    def listed(split):
        texts = [qwen_tokenizer.decode([t for t in f["input_ids"] if t >= 0]) for f in split.features]
        return [text.split("候选: ")[1].split("<|im_end|>")[0] for text in texts]

    canonical = set(listed(encode_pairs(qwen_tokenizer, pairs[:3], 256, 384, "candidates")))
    assert canonical == {"江苏省南京市鼓楼区 | 江苏省徐州市鼓楼区 | 福建省福州市鼓楼区 | 河南省开封市鼓楼区"}
    shuffled = listed(encode_pairs(qwen_tokenizer, pairs, 256, 384, "candidates", seed=7, no_candidate_rate=0.1))
    assert shuffled == listed(encode_pairs(qwen_tokenizer, pairs, 256, 384, "candidates", seed=7,
                                           no_candidate_rate=0.1))  # seeded: the same every run
    withheld = shuffled.count(NO_CANDIDATE)
    assert 20 <= withheld <= 65, withheld  # 10% of 400 withheld (候选: 无): the model writes the answer itself
    firsts = [line.split(" | ")[0] for line in shuffled if line != NO_CANDIDATE]
    right_first = firsts.count("江苏省徐州市鼓楼区") / len(firsts)
    assert 0.15 < right_first < 0.35, right_first  # 4 chains: the answer is listed first about 1 time in 4
    assert len(set(firsts)) == 4
    plain = encode_pairs(qwen_tokenizer, pairs[:3], 256, 384, "none", seed=7, no_candidate_rate=1.0)
    assert "候选" not in qwen_tokenizer.decode(plain.features[0]["input_ids"])


def test_batches_are_padded_to_their_longest_row_not_max_length():
    collator = PaddingCollator(pad_token_id=151643)
    batch = collator([{"input_ids": [1, 2, 3], "labels": [-100, 3, 4]}, {"input_ids": [5], "labels": [6]}])
    assert batch["input_ids"].tolist() == [[1, 2, 3], [5, 151643, 151643]]
    assert batch["labels"].tolist() == [[-100, 3, 4], [6, -100, -100]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert PaddingCollator(0, pad_to_multiple_of=8)([{"input_ids": [1], "labels": [1]}])["input_ids"].shape == (1, 8)


def padding(lengths, batches) -> int:
    return sum(len(batch) * max(lengths[index] for index in batch) - sum(lengths[index] for index in batch)
               for batch in batches)


@pytest.mark.parametrize("grouped", [True, False])
def test_batch_order_is_seeded_and_uses_every_sample_once(grouped):
    lengths = np.random.default_rng(0).integers(40, 130, size=203).tolist()
    first = batch_order(lengths, 8, seed=5, epoch=0, group_by_length=grouped)
    assert first == batch_order(lengths, 8, seed=5, epoch=0, group_by_length=grouped)
    assert first != batch_order(lengths, 8, seed=6, epoch=0, group_by_length=grouped)
    assert first != batch_order(lengths, 8, seed=5, epoch=1, group_by_length=grouped)
    assert sorted(index for batch in first for index in batch) == list(range(203))
    assert [len(batch) for batch in first] == [8] * 25 + [3]  # 203 = 25 * 8 + 3: the partial batch last
    kept = batch_order(lengths, 8, seed=5, epoch=0, group_by_length=grouped, drop_last=True)
    assert [len(batch) for batch in kept] == [8] * 25
    assert len({index for batch in kept for index in batch}) == 200


def test_grouped_batches_pad_far_less_and_start_with_the_longest_sample():
    lengths = np.random.default_rng(1).integers(40, 130, size=GROUP_BATCHES * 8 * 2 + 77).tolist()
    grouped = batch_order(lengths, 8, seed=0, epoch=0)
    plain = batch_order(lengths, 8, seed=0, epoch=0, group_by_length=False)
    assert padding(lengths, grouped) * 10 < padding(lengths, plain)
    assert max(lengths[index] for index in grouped[0]) == max(lengths)
    widths = [max(lengths[index] for index in batch) for batch in grouped[1:]]
    assert widths != sorted(widths, reverse=True), "batches are shuffled, not sorted longest first"


def test_grouped_batches_keep_every_label_and_round_widths_to_the_multiple(qwen_tokenizer, pairs):
    features = encode_pairs(qwen_tokenizer, pairs, 1024, 2048).features
    lengths = [len(feature["input_ids"]) for feature in features]
    collate = PaddingCollator(pad_token_id=151643, pad_to_multiple_of=8)
    for batch in batch_order(lengths, 8, seed=0, epoch=0):
        arrays = collate([features[index] for index in batch])
        width = arrays["input_ids"].shape[1]
        assert width % 8 == 0 and 0 <= width - max(lengths[index] for index in batch) < 8
        for row, index in enumerate(batch):
            length = lengths[index]
            assert arrays["labels"][row, :length].tolist() == features[index]["labels"]
            assert arrays["input_ids"][row, :length].tolist() == features[index]["input_ids"]
            assert (arrays["labels"][row, length:] == IGNORE_INDEX).all()
            assert arrays["attention_mask"][row].tolist() == [1] * length + [0] * (width - length)


def test_trainer_batches_are_length_grouped_by_default(default_model_dir, dataset, tmp_path):
    cfg = load_config(write_config(tmp_path, "grouped", base_config(default_model_dir, dataset, tmp_path / "out",
                                                                    per_device_train_batch_size=4)), device="cpu")
    assert cfg.extras["group_by_length"] is True and cfg.data_args.pad_to_multiple_of == 8
    run = set_up(cfg, read_pairs(cfg), None)
    lengths = [len(feature["input_ids"]) for feature in run.data.train.features]
    sampler = run.trainer._get_train_sampler()
    assert list(sampler) == batch_order(lengths, 4, seed=11, epoch=0)
    assert list(sampler) == batch_order(lengths, 4, seed=11, epoch=1)
    widths = [batch["input_ids"].shape[1] for batch in run.trainer.get_train_dataloader()]
    assert len(widths) == 8 and all(width % 8 == 0 for width in widths)
    # and the heap is trimmed after a step that raises the peak RSS (runtime.HeapTrimmer, test_runtime)
    trimming = [c for c in run.trainer.callback_handler.callbacks if type(c).__name__ == "HeapTrimming"]
    assert len(trimming) == 1 and trimming[0].trimmer.growth == 0.02
    assert trimming[0].trimmer.widest_first  # length-grouped batches: the widest first (batch_order)


_SET_UP_THEN_PROBE_HEAP = r"""
import json, sys
from address_completion.training.config import load_config
from address_completion.training.train import read_pairs, set_up
from heap_probe import activation_block_is_mapped

cfg = load_config(sys.argv[1], device="cpu")
set_up(cfg, read_pairs(cfg), None)
print(json.dumps({"mapped": activation_block_is_mapped()}))
"""


def test_training_set_up_maps_activation_sized_blocks_only_when_asked(default_model_dir, dataset, tmp_path):
    """set_up keeps blocks below 32 MiB in glibc's heap (runtime.set_mmap_threshold: every step reuses its
    activations' memory instead of faulting it in afresh); a small ADDRESS_COMPLETION_MMAP_THRESHOLD maps them
    (RSS = Paddle's live tensors, at a cost of 25-40% of the step's speed; docs/performance.md)."""
    from heap_probe import run_probe

    config = write_config(tmp_path, "heap", base_config(default_model_dir, dataset, tmp_path / "out"))
    for extra, mapped in (({}, 0), ({"ADDRESS_COMPLETION_MMAP_THRESHOLD": "1048576"}, 1)):
        assert json.loads(run_probe(_SET_UP_THEN_PROBE_HEAP, str(config), **extra)) == {"mapped": mapped}, extra


def test_zero_padding_rows_never_attend_across_samples(default_model_dir, qwen_tokenizer, pairs):
    from address_completion.model.modeling import load_model

    model = load_model(str(default_model_dir))
    model.eval()
    split = encode_pairs(qwen_tokenizer, pairs[:3], 128, 192)
    rows = pack_features(split.features, max_length=1000)
    assert len(rows) == 1 and rows[0]["position_ids"].count(0) == 3
    packed = PaddingCollator(qwen_tokenizer.pad_token_id)(rows)
    assert packed["attention_mask"].shape[1:] == (1, len(rows[0]["input_ids"]), len(rows[0]["input_ids"]))
    import paddle

    with paddle.no_grad():
        packed_hidden = model.qwen2(**{k: v for k, v in tensors(packed).items() if k != "labels"},
                                    return_dict=False)[0].numpy()[0]
        start = 0
        for feature in split.features:
            alone = model.qwen2(input_ids=paddle.to_tensor([feature["input_ids"]]), return_dict=False)[0].numpy()[0]
            assert np.abs(packed_hidden[start:start + len(alone)] - alone).max() < 1e-4
            start += len(alone)
        assert abs(float(answer_loss(model, tensors(packed)))
                   - float(answer_loss(model, tensors(PaddingCollator(0)(split.features))))) < 1e-5


def test_answer_only_loss_equals_the_models_own_loss(default_model_dir, qwen_tokenizer, pairs):
    import paddle

    from address_completion.model.modeling import load_model

    model = load_model(str(default_model_dir))
    model.eval()
    batch = tensors(PaddingCollator(qwen_tokenizer.pad_token_id)(encode_pairs(qwen_tokenizer, pairs[:4], 128,
                                                                               192).features))
    with paddle.no_grad():
        assert abs(float(answer_loss(model, batch)) - float(model(**batch)[0])) < 1e-5


def test_eval_accuracy_is_exact_match_of_greedy_generation(default_model_dir, lora_adapter_dir, qwen_tokenizer, pairs):
    from address_completion.inference.generate import Completer
    from address_completion.model.modeling import load_model

    model = load_model(str(default_model_dir), lora_path=str(lora_adapter_dir))
    sources = [pair["src"] for pair in pairs[:4]]
    greedy = Completer(model=model, tokenizer=qwen_tokenizer, max_new_tokens=12).complete(sources)
    targets = [greedy[0], greedy[1], "wrong " + greedy[2], "wrong " + greedy[3]]
    evaluation = GenerationEval(qwen_tokenizer, [{"src": s, "tgt": t} for s, t in zip(sources, targets)],
                                batch_size=3, max_new_tokens=12)
    model.train()
    assert evaluation(model) == {"accuracy": 0.5, "exact_matches": 2.0}
    assert model.training  # restored for training
    assert [record["predict"] for record in evaluation.records()] == greedy


# ---------------------------------------------------------------- options reach PaddleNLP


@pytest.mark.slow
def test_lora_options_and_neftune_reach_the_model(default_model_dir, dataset, tmp_path):
    import paddle

    cfg = load_config(write_config(tmp_path, "options", base_config(
        default_model_dir, dataset, tmp_path / "out", rslora=True, lora_plus_scale=4.0, lora_alpha=6,
        target_modules=["q_proj", "v_proj"], neftune=True, neftune_noise_alpha=5.0)), device="cpu")
    model = build_model(cfg)
    config = model.lora_config
    assert config.rslora and config.lora_alpha == 6 and config.target_modules == [".*q_proj.*", ".*v_proj.*"]
    assert config.scaling == pytest.approx(6 / 8 ** 0.5)
    lora_b = [p for name, p in model.named_parameters() if "lora_B" in name]
    assert lora_b and all(p.optimize_attr["learning_rate"] == 4.0 for p in lora_b)
    assert {name.split(".")[-2] for name, p in model.named_parameters() if not p.stop_gradient} \
        <= {"q_proj", "v_proj"}
    embeddings = model.model.get_input_embeddings()
    ids, rows = paddle.to_tensor([[1, 2, 3]]), embeddings.weight.numpy()[[1, 2, 3]]
    model.eval()
    assert np.array_equal(embeddings(ids).numpy()[0], rows)  # no noise at inference
    model.train()
    noisy = embeddings(ids).numpy()[0]
    assert not np.array_equal(noisy, rows) and np.abs(noisy - rows).max() <= 5.0 / (3 * rows.shape[1]) ** 0.5


# ---------------------------------------------------------------- training runs


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.mark.slow
def test_overwrite_replaces_a_finished_run_and_keeps_the_users_files(default_model_dir, dataset, tmp_path,
                                                                      monkeypatch):
    """configs/README.md: --force (alias --overwrite) deletes an output_dir's checkpoints and results and starts
    again; a file of the user's in it stays; without a flag the finished run is refused, and a bad heap setting is
    named before --force deletes anything (it was read only when the model was set up)."""
    from address_completion.errors import ConfigError, OutputExistsError

    output = tmp_path / "run"
    train(write_config(tmp_path, "old", base_config(default_model_dir, dataset, output, max_steps=4,
                                                     save_strategy="steps", save_steps=2)), device="cpu")
    assert [path.name for path in checkpoints_in(output)] == ["checkpoint-2", "checkpoint-4"]
    (output / "notes.txt").write_text("my notes", encoding="utf-8")
    new_config = write_config(tmp_path, "new", base_config(default_model_dir, dataset, output, max_steps=3,
                                                            save_strategy="steps", save_steps=3))
    with pytest.raises(OutputExistsError, match="--force"):
        train(new_config, device="cpu")
    assert json.loads((output / "summary.json").read_text(encoding="utf-8"))["global_step"] == 4  # untouched
    with monkeypatch.context() as patch:
        patch.setenv("ADDRESS_COMPLETION_MMAP_THRESHOLD", "abc")
        with pytest.raises(ConfigError, match="ADDRESS_COMPLETION_MMAP_THRESHOLD: expected a byte count"):
            train(new_config, overwrite=True, device="cpu")
    assert json.loads((output / "summary.json").read_text(encoding="utf-8"))["global_step"] == 4  # untouched
    assert [path.name for path in checkpoints_in(output)] == ["checkpoint-2", "checkpoint-4"]
    summary = train(new_config, overwrite=True, device="cpu")
    assert summary["global_step"] == 3 and summary["resumed_from"] is None
    assert json.loads((output / "summary.json").read_text(encoding="utf-8")) == summary
    assert [path.name for path in checkpoints_in(output)] == ["checkpoint-3"]
    steps = [record["step"] for record in read_jsonl(output / "metrics.jsonl") if "loss" in record]
    assert steps == [2]  # logging_steps 2 over 3 steps: the old run's records are gone
    assert (output / "notes.txt").read_text(encoding="utf-8") == "my notes"


@pytest.mark.slow
def test_load_best_model_at_end_keeps_the_best_checkpoint_of_metrics_jsonl(default_model_dir, dataset, tmp_path):
    """metric_for_best_model + load_best_model_at_end: the best checkpoint by the logged metric survives
    save_total_limit and the final adapter is that checkpoint's, not the last step's."""
    output = tmp_path / "run"
    # The eval loss falls step after step, so "greater is better" makes the first evaluation the best: a strict
    # best that is not the last step, with no tie for the implementation to break either way. No withheld candidates
    # (no_candidate_rate 0): their harder examples made the tiny model's dev loss rise again at step 6.
    summary = train(write_config(tmp_path, "best", base_config(
        default_model_dir, dataset, output, max_steps=6, evaluation_strategy="steps", eval_steps=2,
        save_strategy="steps", save_steps=2, save_total_limit=1, load_best_model_at_end=True,
        metric_for_best_model="loss", greater_is_better=True, eval_samples=2, unified_checkpoint=True,
        no_candidate_rate=0.0)),
        device="cpu")
    losses = {record["step"]: record["eval_loss"] for record in read_jsonl(output / "metrics.jsonl")
              if "eval_loss" in record}
    assert sorted(losses) == [2, 4, 6] and losses[2] > losses[4] > losses[6], losses  # the set-up holds
    assert summary["best_checkpoint"] == str(output / "checkpoint-2")
    assert summary["best_metric"] == pytest.approx(losses[2]) and summary["eval"]["eval_loss"] == losses[2]
    assert [path.name for path in checkpoints_in(output)] == ["checkpoint-2", "checkpoint-6"]
    final, best, last = (adapter_weights(folder) for folder in (output, output / "checkpoint-2",
                                                                output / "checkpoint-6"))
    assert final.keys() == best.keys() == last.keys() and final
    for name in final:
        np.testing.assert_array_equal(final[name], best[name])
    assert any(not np.array_equal(final[name], last[name]) for name in final if "lora_B" in name)


@pytest.mark.slow
def test_lora_training_writes_every_output_and_the_loss_falls(default_model_dir, dataset, tmp_path):
    output = tmp_path / "run"
    config = write_config(tmp_path, "run", base_config(
        default_model_dir, dataset, output, max_steps=24, evaluation_strategy="steps", eval_steps=8,
        save_strategy="steps", save_steps=8, save_total_limit=1, load_best_model_at_end=True,
        metric_for_best_model="accuracy", eval_samples=6, report_to="visualdl", save_generation_output=True,
        unified_checkpoint=True))
    summary = train(config, device="cpu")

    for name in ("lora_config.json", "tokenizer_config.json", "vocab.json", "merges.txt", "train_config.json",
                 "metrics.jsonl", "summary.json", "eval_predictions.jsonl"):
        assert (output / name).is_file(), name
    assert list(output.glob("peft_model*.safetensors"))  # unified_checkpoint: safetensors adapter
    records = read_jsonl(output / "metrics.jsonl")
    losses = [record["loss"] for record in records if "loss" in record]
    evaluations = [record for record in records if "eval_loss" in record]
    assert {"step", "epoch", "loss", "learning_rate"} <= set(records[0])
    assert [record["step"] for record in evaluations] == [8, 16, 24]
    # Constrained decoding picks among the gazetteer's candidates: all 6 dev answers exact from the first eval on.
    assert [(record["eval_accuracy"], record["eval_exact_matches"]) for record in evaluations] == [(1.0, 6.0)] * 3
    assert losses[-1] < losses[0] - 0.05, losses
    # Checkpoints per save_strategy, pruned by save_total_limit (the best one is kept besides the last).
    kept = [path.name for path in checkpoints_in(output)]
    assert kept == sorted({Path(summary["best_checkpoint"]).name, "checkpoint-24"}, key=lambda n: int(n[11:]))
    assert summary["metric_for_best_model"] == "accuracy" and summary["global_step"] == 24
    assert summary["train_tokens_per_second"] > 0 and summary["train_samples_per_second"] > 0
    assert summary["truncation"]["train"] == {"samples": 32, "source_truncated": 0, "sample_truncated": 0}
    assert summary == json.loads((output / "summary.json").read_text(encoding="utf-8"))
    assert list((output / "runs").rglob("vdlrecords*")), "report_to visualdl writes VisualDL logs"
    predictions = read_jsonl(output / "eval_predictions.jsonl")
    assert len(predictions) == 6 and all(record["predict"] == record["label"] for record in predictions)
    resolved = json.loads((output / "train_config.json").read_text(encoding="utf-8"))
    assert resolved["lora_alpha"] == 16.0 and resolved["max_steps"] == 24


@pytest.mark.slow
def test_full_finetuning_with_zero_padding(default_model_dir, dataset, tmp_path):
    output = tmp_path / "full"
    config = write_config(tmp_path, "full", base_config(default_model_dir, dataset, output, lora=False,
                                                        zero_padding=True, max_steps=2, learning_rate=1e-3))
    summary = train(config, device="cpu")
    assert summary["method"] == "full" and summary["trainable_parameters"] == summary["total_parameters"]
    assert (output / "model.safetensors.index.json").is_file() and not (output / "lora_config.json").exists()
    assert not list(output.rglob("*.pdparams"))
    trained = load_safetensors(output.glob("model-*.safetensors"))
    base = load_safetensors([default_model_dir / "model.safetensors"])
    name = "qwen2.layers.0.mlp.down_proj.weight"
    assert not np.allclose(trained[name], base[name])
    from address_completion.model.modeling import load_model

    reloaded = load_model(str(output))  # the unified checkpoint's sharded safetensors layout
    np.testing.assert_array_equal(dict(reloaded.named_parameters())[name].numpy(), trained[name])


def load_safetensors(paths) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    weights: dict[str, np.ndarray] = {}
    for path in paths:
        weights.update(load_file(str(path)))
    return weights


def adapter_weights(folder: Path) -> dict[str, np.ndarray]:
    return load_safetensors(folder.glob("peft_model*.safetensors"))


@pytest.mark.slow
def test_safetensors_everywhere_train_checkpoint_resume_merge_predict(default_model_dir, dataset, tmp_path, capsys):
    """The default layout writes no pickle: adapter and checkpoints are safetensors, the scheduler state JSON;
    a run resumed from such a checkpoint ends with the uninterrupted run's adapter; merge and predict read it."""
    from address_completion.cli import main

    def config(name: str, **values) -> Path:
        return write_config(tmp_path, name, base_config(default_model_dir, dataset, tmp_path / name, max_steps=4,
                                                        save_strategy="steps", save_steps=2, **values))

    train(config("straight"), device="cpu")
    straight = tmp_path / "straight"
    checkpoint = straight / "checkpoint-2"
    assert (straight / "peft_model.safetensors.index.json").is_file()
    assert (checkpoint / "peft_model.safetensors.index.json").is_file()
    assert list(checkpoint.glob("optimizer-*.safetensors"))
    assert json.loads((checkpoint / "scheduler.json").read_text(encoding="utf-8"))["last_epoch"] == 2
    assert not (checkpoint / "scheduler.pdparams").exists() and checkpoint_is_complete(checkpoint)

    # Steps 3-4 again from checkpoint-2: same adapter only if weights, optimizer AND scheduler state came back
    # (a scheduler restarted at step 0 would train steps 3-4 at a higher learning rate).
    summary = train(config("resumed", resume_from_checkpoint=str(checkpoint)), device="cpu")
    assert summary["resumed_from"] == str(checkpoint) and summary["global_step"] == 4
    expected, resumed = adapter_weights(straight), adapter_weights(tmp_path / "resumed")
    assert expected and expected.keys() == resumed.keys()
    assert any(np.abs(value).max() > 0 for name, value in expected.items() if "lora_B" in name)  # it trained
    for name in expected:
        np.testing.assert_allclose(resumed[name], expected[name], rtol=1e-5, atol=1e-6, err_msg=name)

    merged = tmp_path / "merged"
    assert main(["merge", "--model_name_or_path", str(default_model_dir), "--lora_path", str(straight),
                 "--output_path", str(merged), "--device", "cpu"]) == 0
    assert main(["predict", "--model", str(merged), ADDRESS, "--device", "cpu"]) == 0
    merged_answer = capsys.readouterr().out.strip().splitlines()[-1]
    assert main(["predict", "--model", str(default_model_dir), "--lora_path", str(straight), ADDRESS,
                 "--device", "cpu"]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip().splitlines()[-1] == merged_answer and "pickle" not in captured.err
    assert (merged / "model.safetensors").is_file()
    assert [str(path) for folder in (tmp_path, default_model_dir) for path in folder.rglob("*.pdparams")] == []


@pytest.mark.slow
def test_pickled_layout_only_on_request_and_its_checkpoints_resume_into_safetensors(
        default_model_dir, dataset, tmp_path, monkeypatch):
    """safe_serialization false writes PaddleNLP's older pickled layout; resuming from such a checkpoint warns
    once about the pickle and goes on in the safetensors layout."""
    from address_completion.model import modeling

    monkeypatch.delenv(modeling.TRUST_PICKLE_ENV, raising=False)
    old = tmp_path / "old"
    config = write_config(tmp_path, "old", base_config(default_model_dir, dataset, old, max_steps=2,
                                                        save_strategy="steps", save_steps=2))
    # Both runs in fresh processes: the pickled optimizer state is keyed by Paddle's per-process parameter
    # names, which depend on how many layers the process built before (in pytest: every earlier test).
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    command = [sys.executable, "-m", "address_completion", "train"]
    first = subprocess.run(command + [str(config), "--safe_serialization", "false", "--device", "cpu"], env=env,
                           capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr
    assert (old / "lora_model_state.pdparams").is_file() and not list(old.rglob("*.safetensors"))
    checkpoint = old / "checkpoint-2"
    assert (checkpoint / "scheduler.pdparams").is_file() and not (checkpoint / "scheduler.json").exists()
    assert "pickle" not in first.stderr  # nothing pickled was read

    new = tmp_path / "new"
    config = write_config(tmp_path, "new", base_config(default_model_dir, dataset, new, max_steps=4,
                                                        save_strategy="steps", save_steps=2,
                                                        resume_from_checkpoint=str(checkpoint)))
    resumed = subprocess.run(command + [str(config), "--device", "cpu"], env=env, capture_output=True, text=True,
                             timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    warnings = [line for line in resumed.stderr.splitlines() if "is a pickle" in line]
    assert len(warnings) == 1 and warnings[0].startswith(f"warning: {checkpoint / 'lora_model_state.pdparams'} ")
    assert (new / "checkpoint-4" / "scheduler.json").is_file() and not list(new.rglob("*.pdparams"))
    assert json.loads((new / "summary.json").read_text(encoding="utf-8"))["global_step"] == 4


# The run of test_killed_run_resumes_to_the_same_adapter: the real `train` command, which stops itself (SIGSTOP)
# right after its first checkpoint is saved, so the test kills it at that exact point whatever the machine's speed.
PAUSED_TRAIN = """
import os, signal, sys
from address_completion import cli
from address_completion.training import trainer

def make_trainer(*args, **kwargs):
    from paddlenlp.trainer import TrainerCallback

    class PauseAfterSave(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):  # called once the checkpoint is written
            os.kill(os.getpid(), signal.SIGSTOP)

    trainer = original(*args, **kwargs)
    trainer.add_callback(PauseAfterSave())
    return trainer

original, trainer.make_trainer = trainer.make_trainer, make_trainer
sys.exit(cli.main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_adapter(default_model_dir, dataset, tmp_path):
    """SIGKILL after a checkpoint, resume: the adapter equals an uninterrupted run's (seed's unified checkpoints)."""
    command = [sys.executable, "-m", "address_completion", "train"]
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}

    def config(name: str) -> Path:
        return write_config(tmp_path, name, base_config(
            default_model_dir, dataset, tmp_path / name, max_steps=12, gradient_accumulation_steps=2,
            per_device_train_batch_size=4, warmup_steps=2, save_strategy="steps", save_steps=3,
            unified_checkpoint=True))

    subprocess.run(command + [str(config("straight"))], env=env, check=True, capture_output=True, timeout=600)

    killed = subprocess.Popen([sys.executable, "-c", PAUSED_TRAIN, "train", str(config("killed"))], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until_paused(killed)
        assert [path.name for path in checkpoints_in(tmp_path / "killed")] == ["checkpoint-3"]
        assert checkpoint_is_complete(tmp_path / "killed" / "checkpoint-3")
    finally:
        killed.kill()
        killed.wait(timeout=60)
    assert killed.returncode == -signal.SIGKILL
    assert not (tmp_path / "killed" / "summary.json").exists()

    refused = subprocess.run(command + [str(config("killed"))], env=env, capture_output=True, text=True, timeout=600)
    assert refused.returncode == 2 and "--resume" in refused.stderr and "--force" in refused.stderr

    resumed = subprocess.run(command + [str(config("killed")), "--resume"], env=env, capture_output=True, text=True,
                             timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert "does not record the loss" not in resumed.stderr  # the checkpoint was complete, loss sum included
    straight, resumed = adapter_weights(tmp_path / "straight"), adapter_weights(tmp_path / "killed")
    assert straight and straight.keys() == resumed.keys()
    for name in straight:
        np.testing.assert_allclose(resumed[name], straight[name], rtol=1e-5, atol=1e-6)
    summary = json.loads((tmp_path / "killed" / "summary.json").read_text(encoding="utf-8"))
    assert summary["resumed_from"].endswith("checkpoint-3")
    steps = [record["step"] for record in read_jsonl(tmp_path / "killed" / "metrics.jsonl") if "loss" in record]
    assert steps == sorted(steps) and len(steps) == len(set(steps))  # no duplicate records from the killed run


@pytest.mark.slow
def test_train_loss_after_resume_is_the_mean_over_every_step(default_model_dir, dataset, tmp_path):
    """A resumed 8-step run reported the resumed steps' loss sum divided by all 8 steps (about half the loss)."""
    output = tmp_path / "run"
    values = dict(max_steps=4, logging_steps=1, save_strategy="steps", save_steps=2, per_device_train_batch_size=4,
                  learning_rate=1e-3, unified_checkpoint=True)
    first = train(write_config(tmp_path, "first", base_config(default_model_dir, dataset, output, **values)))
    logged = [record["loss"] for record in read_jsonl(output / "metrics.jsonl") if "loss" in record]
    assert first["train_loss"] == pytest.approx(sum(logged) / 4, rel=1e-4)
    resumed = train(write_config(tmp_path, "more", base_config(default_model_dir, dataset, output,
                                                               **{**values, "max_steps": 8})), resume=True)
    assert resumed["resumed_from"].endswith("checkpoint-4") and resumed["global_step"] == 8
    logged = {record["step"]: record["loss"] for record in read_jsonl(output / "metrics.jsonl") if "loss" in record}
    assert sorted(logged) == list(range(1, 9))
    assert resumed["train_loss"] == pytest.approx(sum(logged.values()) / 8, rel=1e-4)
    assert min(logged.values()) * 0.99 <= resumed["train_loss"] <= max(logged.values()) * 1.01
    from address_completion.files import current_umask

    weights = list(output.glob("*.safetensors"))  # unified checkpoints: Paddle writes them 0600
    assert weights and {os.stat(path).st_mode & 0o777 for path in weights} == {0o666 & ~current_umask()}


def final_train_loss_line(stderr: str) -> float:
    """train_loss of the progress line the train command logs at its last step (4 significant digits)."""
    lines = [line for line in stderr.splitlines() if line.startswith("step ") and "train_loss " in line]
    assert len(lines) == 1, stderr[-3000:]
    return float(lines[0].split("train_loss ")[1].split()[0])


@pytest.mark.slow
def test_resumed_run_reports_one_train_loss_in_its_progress_line_log_and_summary(default_model_dir, dataset,
                                                                                  tmp_path):
    """`train --resume` to twice the steps: train_loss is the mean loss of every step of the run (those before the
    checkpoint included, as an uninterrupted run reports it) in the last progress line, metrics.jsonl's last
    record and summary.json alike; from a checkpoint that does not record the loss before it, the mean of the
    steps this process trained. PaddleNLP's own train_loss, which the line and the log showed, divides the
    resumed steps' loss sum by every step (about half the loss here). The speeds count the steps since the resume
    alike, and a checkpoint without its loss sum is one of summary.json's warnings."""
    command = [sys.executable, "-m", "address_completion", "train"]
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    values = dict(max_steps=4, logging_steps=1, save_strategy="steps", save_steps=2, per_device_train_batch_size=4,
                  learning_rate=1e-3, unified_checkpoint=True)
    config = write_config(tmp_path, "run", base_config(default_model_dir, dataset, tmp_path / "run", **values))
    subprocess.run(command + [str(config)], env=env, check=True, capture_output=True, timeout=600)
    older = tmp_path / "older"  # the same checkpoint without its loss sum (a checkpoint of an older version)
    shutil.copytree(tmp_path / "run", older)
    (older / "checkpoint-4" / LOSS_SUM_FILE).unlink()

    for output, first_step in ((tmp_path / "run", 1), (older, 5)):
        resumed = subprocess.run(command + [str(config), "--resume", "--max_steps", "8", "--output_dir", str(output)],
                                 env=env, capture_output=True, text=True, timeout=600)
        assert resumed.returncode == 0, resumed.stderr
        records = read_jsonl(output / "metrics.jsonl")
        losses = {record["step"]: record["loss"] for record in records if "loss" in record}
        assert sorted(losses) == list(range(1, 9))
        expected = sum(losses[step] for step in range(first_step, 9)) / (9 - first_step)
        summary = json.loads((output / "summary.json").read_text(encoding="utf-8"))
        assert summary["resumed_from"].endswith("checkpoint-4") and summary["global_step"] == 8
        assert summary["train_loss"] == pytest.approx(expected, rel=1e-4), output.name
        assert records[-1]["step"] == 8, output.name
        assert records[-1]["train_loss"] == pytest.approx(expected, rel=1e-4), output.name
        assert final_train_loss_line(resumed.stderr) == pytest.approx(expected, rel=1e-3), output.name
        # The speeds count the 4 steps (16 samples) trained since the resume, in metrics.jsonl as in summary.json;
        # PaddleNLP's closing log counted all 8 steps over the resumed part's runtime (twice the speed).
        runtime = records[-1]["train_runtime"]
        assert records[-1]["train_steps_per_second"] == pytest.approx(4 / runtime, rel=1e-3), output.name
        assert records[-1]["train_samples_per_second"] == pytest.approx(16 / runtime, rel=1e-3), output.name
        assert summary["train_samples_per_second"] == pytest.approx(records[-1]["train_samples_per_second"],
                                                                    abs=1e-3), output.name
        # A checkpoint without its loss sum is a warning in summary.json too, not only in the log.
        unrecorded = [warning for warning in summary["warnings"] if "does not record the loss" in warning]
        assert len(unrecorded) == (output == older), (output.name, summary["warnings"])


def test_constrained_eval_says_when_the_model_never_chooses(caplog):
    from address_completion.training.trainer import warn_if_model_never_chooses

    single = [{"src": "碑林区扬子江南路1号", "tgt": "陕西省西安市碑林区扬子江南路1号"}]
    with caplog.at_level("WARNING", logger="address_completion"):
        assert warn_if_model_never_chooses(single, "accuracy") == 0
    assert "measures the gazetteer's candidates, not the model" in caplog.text and "cannot choose" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="address_completion"):
        assert warn_if_model_never_chooses(single + [{"src": "朝阳区建国路88号", "tgt": "北京市朝阳区建国路88号"}],
                                           "loss") == 1
    assert caplog.text == ""
