"""A catalogue of bad inputs, one table per kind, tried as a new user would: every case must stop with the exit
code or HTTP status given, a one-line message naming the culprit, no traceback, and no file of the user's
(inputs, earlier outputs) changed or created. Add a row for every mistake a user reports."""

from __future__ import annotations

import json
import os
import shutil
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from address_completion.cli import main

ADDRESS = "碑林区扬子江南路467-6号"
PAIR = {"src": "补齐五级行政地址: " + ADDRESS, "tgt": "陕西省西安市" + ADDRESS}

ADAPTER_SHARD = "peft_model-00001-of-00001.safetensors"  # what train writes (safetensors by default)

# ---------------------------------------------------------------- the user's files


@pytest.fixture(scope="module")
def world(default_model_dir, lora_adapter_dir, tmp_path_factory) -> dict[str, str]:
    """A folder of good and bad files; {name} in a case's arguments stands for the path of ``name``."""
    from address_completion.model.default_model import build_default_model

    root = tmp_path_factory.mktemp("reliability")
    paths = {"root": root, "base": default_model_dir, "adapter": lora_adapter_dir}
    paths["small"] = build_default_model(root / "small-model", hidden_size=32, intermediate_size=128)

    zero = root / "zero-adapter"  # an adapter whose lora_B are all zero: merging it changes nothing
    shutil.copytree(lora_adapter_dir, zero)
    from safetensors.numpy import load_file, save_file

    shard = zero / ADAPTER_SHARD
    state = load_file(str(shard))
    save_file({key: value * 0 if "lora_B" in key else value for key, value in state.items()}, str(shard),
              metadata={"format": "np"})
    paths["zero_adapter"] = zero

    # The input is the older pickled layout: `truncate -s 1000000 model_state.pdparams`
    pickled = build_default_model(root / "pickled-model", safe_serialization=False)
    truncated_model = root / "truncated-model"
    shutil.copytree(pickled, truncated_model)
    with open(truncated_model / "model_state.pdparams", "r+b") as handle:
        handle.truncate(1_000_000)
    paths["truncated_model"] = truncated_model
    empty_weights = root / "empty-weights-model"
    shutil.copytree(pickled, empty_weights)
    (empty_weights / "model_state.pdparams").write_bytes(b"")
    paths["empty_weights_model"] = empty_weights

    def copy_with(key: str, source: Path, name: str, content: bytes) -> None:
        """paths[key] = a copy of ``source`` whose file ``name`` holds ``content``."""
        folder = root / key.replace("_", "-")
        shutil.copytree(source, folder)
        (folder / name).write_bytes(content)
        paths[key] = folder

    copy_with("empty_safetensors_model", default_model_dir, "model.safetensors", b"")
    copy_with("broken_tokenizer_model", default_model_dir, "tokenizer_config.json", b"{broken")

    truncated_adapter = root / "truncated-adapter"
    shutil.copytree(lora_adapter_dir, truncated_adapter)
    with open(truncated_adapter / ADAPTER_SHARD, "r+b") as handle:
        handle.truncate(1000)
    paths["truncated_adapter"] = truncated_adapter

    data = root / "data"
    data.mkdir()
    (data / "train.json").write_text("\n".join(json.dumps(PAIR, ensure_ascii=False) for _ in range(8)) + "\n",
                                     encoding="utf-8")
    (data / "dev.json").write_text(json.dumps(PAIR, ensure_ascii=False) + "\n", encoding="utf-8")
    paths["data"] = data
    empty_data = root / "empty-data"
    empty_data.mkdir()
    (empty_data / "train.json").write_text("", encoding="utf-8")
    paths["empty_data"] = empty_data
    paths["good_jsonl"] = data / "train.json"
    paths["existing_dir"] = root / "existing-dir"
    (root / "existing-dir").mkdir()
    (root / "existing-dir" / "keep.txt").write_text("the user's file\n", encoding="utf-8")

    broken = root / "broken.jsonl"
    broken.write_text(json.dumps(PAIR, ensure_ascii=False) + "\n" + '{"src": "海淀区", "tgt": \n', encoding="utf-8")
    paths["broken_jsonl"] = broken
    (root / "empty.jsonl").write_text("", encoding="utf-8")
    paths["empty_jsonl"] = root / "empty.jsonl"
    paths["existing_file"] = root / "existing.jsonl"
    (root / "existing.jsonl").write_text("earlier predictions\n", encoding="utf-8")
    weightless = root / "weightless-adapter"
    weightless.mkdir()
    shutil.copy(Path(lora_adapter_dir) / "lora_config.json", weightless / "lora_config.json")
    paths["weightless_adapter"] = weightless
    copy_with("broken_config_model", default_model_dir, "config.json", b"{not json")
    broken_data = root / "broken-data"
    broken_data.mkdir()
    (broken_data / "train.json").write_text(json.dumps(PAIR, ensure_ascii=False) + "\n[1, 2]\n", encoding="utf-8")
    paths["broken_data"] = broken_data

    configs = root / "configs"
    configs.mkdir()
    (configs / "broken.json").write_text('{"lora": true,', encoding="utf-8")
    paths["config_broken"] = configs / "broken.json"
    tiny = {"model_name_or_path": str(default_model_dir), "dataset_name_or_path": str(data),
            "output_dir": str(root / "train-out"), "per_device_train_batch_size": 4, "max_steps": 1,
            "learning_rate": 0.01, "src_length": 64, "max_length": 96, "do_train": True, "lora": True,
            "lora_rank": 4, "trainable_modules": [".*embed_tokens.*", ".*norm.*"]}  # as in configs/tiny_cpu.json

    def config(name: str, **values) -> None:
        (configs / f"{name}.json").write_text(json.dumps({**tiny, **values}), encoding="utf-8")
        paths[f"config_{name}"] = configs / f"{name}.json"

    config("q_projj", target_modules=["q_projj"])
    config("typo", lora_rnak=4)
    config("output_is_file", output_dir=str(root / "existing.jsonl"))
    config("missing_dataset", dataset_name_or_path=str(root / "no-such-data"))
    config("broken_data", dataset_name_or_path=str(broken_data))
    config("truncated_base", model_name_or_path=str(truncated_model))
    config("empty_data", dataset_name_or_path=str(empty_data))
    config("overwrite_base", output_dir=str(default_model_dir))  # train --overwrite --output_dir M --model... M
    config("output_in_data", output_dir=str(data / "run"))
    config("output_holds_data", output_dir=str(root))
    config("output_in_adapter", output_dir=str(lora_adapter_dir / "more"), lora_path=str(lora_adapter_dir))
    def eval_config(key: str, text: str) -> None:
        (configs / f"{key}.yaml").write_text(text, encoding="utf-8")
        paths[key] = configs / f"{key}.yaml"

    def base_system_eval(key: str, test_file: Path, output_dir: Path) -> None:
        eval_config(key, f"test_file: {test_file}\noutput_dir: {output_dir}\nsystems:\n  - name: base\n"
                         f"    kind: paddle\n    model: {default_model_dir}\n")

    base_system_eval("eval_over_test", data / "dev.json", data)
    base_system_eval("eval_in_model", data / "dev.json", default_model_dir / "eval")
    base_system_eval("eval_output_file", data / "dev.json", root / "existing.jsonl")
    eval_config("eval_broken", "test_file: [unclosed\n")
    eval_config("eval_typo", f"test_file: {data / 'dev.json'}\noutput_dir: {root / 'eval'}\nsystem:\n  - kind: paddle\n")
    base_system_eval("eval_missing_test", root / "no-such-test.json", root / "eval")
    config("bad_trainable", trainable_modules=[".*embed_tokenz.*"])
    config("locked", output_dir=str(root / "locked"))
    # an adapter of a one-layer base (item 7), and a model whose config.json says 128 wide for 64-wide weights (item 8)
    from paddlenlp.peft import LoRAConfig, LoRAModel

    from address_completion.model.modeling import load_model, save_adapter

    one_layer = build_default_model(root / "one-layer-model", num_hidden_layers=1)
    save_adapter(LoRAModel(load_model(str(one_layer)), LoRAConfig(
        target_modules=[".*q_proj.*", ".*v_proj.*"], r=4, lora_alpha=8, dtype="float32",
        base_model_name_or_path=str(one_layer))), root / "one-layer-adapter")
    paths["one_layer_adapter"] = root / "one-layer-adapter"
    wide = json.loads((Path(default_model_dir) / "config.json").read_text(encoding="utf-8"))
    copy_with("wide_config_model", default_model_dir, "config.json", json.dumps({**wide, "hidden_size": 128}).encode())
    config("wide_config", model_name_or_path=str(root / "wide-config-model"), output_dir=str(root / "wide-run"))
    (root / "pairs.csv").write_text("address,full\n碑林区扬子江南路467-6号,陕西省西安市碑林区扬子江南路467-6号\n",
                                    encoding="utf-8")
    paths["pairs_csv"] = root / "pairs.csv"
    base_system_eval("eval_test_is_folder", data, root / "eval")
    config("huge_rank", lora_rank=10000, output_dir=str(root / "huge-rank"))
    copy_with("broken_lora_config", lora_adapter_dir, "lora_config.json", b'{"r": 8,')
    from address_completion.model.export_paddle import merge_adapter

    paths["merged_model"] = merge_adapter(str(default_model_dir), str(lora_adapter_dir),
                                          root / "merged-model").output_path
    base_system_eval("eval_locked", data / "dev.json", root / "locked")
    paths["locked"] = root / "locked"
    # bad input files of every kind (item 13: each tried in every command that reads one)
    bad_inputs = root / "bad-inputs"
    bad_inputs.mkdir()
    for name, content in BAD_INPUT_FILES.items():
        (bad_inputs / f"{name}.jsonl").write_bytes(content)
        paths[f"input_{name}"] = bad_inputs / f"{name}.jsonl"
        dataset = root / f"dataset-{name}"
        dataset.mkdir()
        (dataset / "train.json").write_bytes(content)
        (dataset / "dev.json").write_text(json.dumps(PAIR, ensure_ascii=False) + "\n", encoding="utf-8")
        config(f"dataset_{name}", dataset_name_or_path=str(dataset))
        base_system_eval(f"eval_input_{name}", bad_inputs / f"{name}.jsonl", root / "eval")
    paths["input_folder"] = root / "existing-dir"
    paths["input_missing"] = root / "no-such-input.jsonl"
    for variant, (place, _) in OUTPUT_VARIANTS.items():
        output = place.replace("{existing_file}", str(root / "existing.jsonl"))
        config(f"output_{variant}", output_dir=output)
        eval_config(f"eval_output_{variant}", f"test_file: {data / 'dev.json'}\noutput_dir: '{output}'\nsystems:\n"
                                              f"  - name: base\n    kind: paddle\n    model: {default_model_dir}\n")
    # evaluate reports a system it cannot run and goes on with the others: its reports go outside ``root``
    evaluations = tmp_path_factory.mktemp("evaluations")
    paths["evaluations"] = evaluations
    for variant, (key, _) in MODEL_VARIANTS.items():  # a bad model in a train config and an evaluate system
        model = Path(str(paths.get(key, root / key)))
        config(f"model_{variant}", model_name_or_path=str(model), output_dir=str(root / "matrix-run"))
        eval_config(f"eval_model_{variant}", f"test_file: {data / 'dev.json'}\noutput_dir: {evaluations / variant}\n"
                                             f"systems:\n  - name: base\n    kind: paddle\n    model: {model}\n")
    for variant, (key, _) in ADAPTER_VARIANTS.items():
        adapter = Path(str(paths.get(key, root / key)))
        config(f"adapter_{variant}", lora_path=str(adapter), output_dir=str(root / "matrix-run"))
        eval_config(f"eval_adapter_{variant}", f"test_file: {data / 'dev.json'}\noutput_dir: "
                                               f"{evaluations / ('adapter-' + variant)}\n"
                                               f"systems:\n  - name: base\n    kind: paddle\n    model: "
                                               f"{default_model_dir}\n    lora_path: {adapter}\n")
    return {name: str(path) for name, path in paths.items()}


def snapshot(root: Path, *others: Path) -> dict[str, tuple]:
    """Every file and folder under the given roots: files with size, mode and modification time, folders with
    their mode (a folder's own time changes when a temporary file comes and goes, which is fine)."""
    state = {}
    for top in (root, *others):
        for path in [top, *sorted(top.rglob("*"))]:
            stat = path.stat()
            state[str(path)] = (stat.st_mode,) if path.is_dir() else (stat.st_size, stat.st_mode, stat.st_mtime_ns)
    return state


# ---------------------------------------------------------------- command-line cases


@dataclass(frozen=True)
class Case:
    name: str
    argv: tuple[str, ...]
    words: tuple[str, ...]  # all must appear in the error line
    code: int = 2


CLI_CASES = [
    # -- a LoRA adapter that does not fit its base (trained on hidden 64, loaded onto hidden 32 / intermediate 128)
    Case("merge-adapter-of-another-size",
         ("merge", "--model_name_or_path", "{small}", "--lora_path", "{adapter}", "--output_path", "{root}/merged"),
         (ADAPTER_SHARD, "lora_A has shape [256, 4]", "expects [128, 4]", "another size")),
    Case("predict-adapter-of-another-size", ("predict", "--model", "{small}", "--lora_path", "{adapter}", ADDRESS),
         (ADAPTER_SHARD, "lora_A has shape [256, 4]", "expects [128, 4]", "another size")),
    Case("merge-adapter-that-changes-nothing",
         ("merge", "--model_name_or_path", "{base}", "--lora_path", "{zero_adapter}", "--output_path",
          "{root}/merged"), ("does not change the base model's logits", "zero-adapter")),
    # -- LoRA patterns that match no layer
    Case("train-target-module-typo", ("train", "{config_q_projj}"), ("target_modules", "'q_projj'", "matches no")),
    Case("train-trainable-module-typo", ("train", "{config_bad_trainable}"),
         ("trainable_modules", "'.*embed_tokenz.*'", "matches no")),
    # -- empty or blank addresses
    Case("predict-empty-address", ("predict", "--model", "{base}", ""), ("ADDRESS argument 1 is empty",)),
    # -- an output that is, contains or lies inside an input: refused before any work, --force or not
    Case("train-overwrite-into-its-own-base", ("train", "{config_overwrite_base}", "--overwrite"),
         ("output_dir {base} is the same path as model_name_or_path",)),
    Case("train-output-inside-dataset", ("train", "{config_output_in_data}"),
         ("output_dir {data}/run lies inside dataset_name_or_path",)),
    Case("train-output-holds-dataset", ("train", "{config_output_holds_data}", "--overwrite"),
         ("output_dir {root} contains dataset_name_or_path",)),
    Case("train-output-inside-its-adapter", ("train", "{config_output_in_adapter}"),
         ("lies inside lora_path {adapter}",)),
    Case("merge-output-is-base", ("merge", "--model_name_or_path", "{base}", "--lora_path", "{adapter}",
                                  "--output_path", "{base}", "--force"),
         ("--output-path {base} is the same path as --model-name-or-path",)),
    Case("merge-output-inside-adapter", ("merge", "--model_name_or_path", "{base}", "--lora_path", "{adapter}",
                                         "--output_path", "{adapter}/merged"),
         ("--output-path {adapter}/merged lies inside --lora-path",)),
    Case("merge-output-holds-base", ("merge", "--model_name_or_path", "{small}", "--lora_path", "{adapter}",
                                     "--output_path", "{root}", "--force"),
         ("--output-path {root} contains --model-name-or-path {small}",)),
    Case("predict-output-is-input", ("predict", "--model", "{base}", "--input", "{good_jsonl}", "--output",
                                     "{good_jsonl}", "--force"), ("--output {good_jsonl} is the same path as --input",)),
    Case("predict-output-inside-model", ("predict", "--model", "{base}", ADDRESS, "--output", "{base}/p.jsonl"),
         ("--output {base}/p.jsonl lies inside --model",)),
    Case("predict-output-is-a-folder", ("predict", "--model", "{base}", "--input", "{good_jsonl}", "--output",
                                        "{existing_dir}"), ("--output {existing_dir} is a folder",)),
    Case("predict-output-is-a-folder-forced", ("predict", "--model", "{base}", "--input", "{good_jsonl}",
                                               "--output", "{existing_dir}", "--force"), ("is a folder",)),
    Case("predict-output-below-a-file", ("predict", "--model", "{base}", ADDRESS, "--output",
                                         "{good_jsonl}/p.jsonl"), ("is a file, so no file can be written",)),
    Case("prepare-output-is-input", ("prepare", "--input", "{good_jsonl}", "--output", "{good_jsonl}", "--force"),
         ("--output {good_jsonl} is the same path as --input",)),
    Case("prepare-output-is-a-folder", ("prepare", "--num", "5", "--output", "{existing_dir}"), ("is a folder",)),
    Case("split-over-its-input", ("split", "{good_jsonl}", "--output", "{data}", "--force"),
         ("(train.json)", "is the same path as INPUT")),
    Case("evaluate-output-holds-test-file", ("evaluate", "{eval_over_test}", "--force"),
         ("output_dir {data} contains test_file",)),
    Case("evaluate-output-inside-model", ("evaluate", "{eval_in_model}"), ("lies inside systems[base].model",)),
    Case("demo-output-holds-model", ("demo", "--model", "{small}", "--output", "{root}", "--force"),
         ("--output {root} contains --model",)),
    # -- unreadable model, adapter and data files: one line naming the file
    Case("predict-truncated-base-weights", ("predict", "--model", "{truncated_model}", ADDRESS),
         ("{truncated_model}/model_state.pdparams",)),
    Case("predict-empty-base-weights", ("predict", "--model", "{empty_weights_model}", ADDRESS),
         ("{empty_weights_model}/model_state.pdparams", "empty file")),
    Case("merge-truncated-base-weights", ("merge", "--model_name_or_path", "{truncated_model}", "--lora_path",
                                          "{adapter}", "--output_path", "{root}/merged"),
         ("{truncated_model}/model_state.pdparams",)),
    Case("train-truncated-base-weights", ("train", "{config_truncated_base}"),
         ("{truncated_model}/model_state.pdparams",)),
    Case("predict-truncated-adapter", ("predict", "--model", "{base}", "--lora_path", "{truncated_adapter}", ADDRESS),
         ("{truncated_adapter}/" + ADAPTER_SHARD, "unreadable adapter weights")),
    Case("merge-truncated-adapter", ("merge", "--model_name_or_path", "{base}", "--lora_path", "{truncated_adapter}",
                                     "--output_path", "{root}/merged"),
         ("{truncated_adapter}/" + ADAPTER_SHARD, "unreadable adapter weights")),
    Case("train-empty-train-json", ("train", "{config_empty_data}"), ("{empty_data}/train.json", "empty file")),
    # -- arguments and settings
    Case("predict-batch-size-0", ("predict", "--model", "{base}", "--batch_size", "0", ADDRESS), ("--batch-size",)),
    Case("predict-max-new-tokens-0", ("predict", "--model", "{base}", "--max_new_tokens", "0", ADDRESS),
         ("--max-new-tokens",)),
    Case("predict-arguments-and-input", ("predict", "--model", "{base}", "--input", "{good_jsonl}", ADDRESS),
         ("--input", "not both")),
    Case("predict-output-exists", ("predict", "--model", "{base}", ADDRESS, "--output", "{existing_file}"),
         ("{existing_file} already exists", "--force")),
    Case("merge-negative-tolerance", ("merge", "--model_name_or_path", "{base}", "--lora_path", "{adapter}",
                                      "--output_path", "{root}/merged", "--tolerance", "-1"), ("--tolerance",)),
    Case("merge-output-non-model-folder", ("merge", "--model_name_or_path", "{base}", "--lora_path", "{adapter}",
                                           "--output_path", "{existing_dir}", "--force"),
         ("{existing_dir}", "holds no config.json")),
    Case("build-model-odd-heads", ("build-model", "--output", "{root}/built", "--hidden-size", "30"),
         ("--hidden-size",)),
    Case("build-model-over-user-folder", ("build-model", "--output", "{existing_dir}", "--force"),
         ("{existing_dir}", "holds no config.json")),
    Case("serve-port-out-of-range", ("serve", "--model", "{base}", "--port", "70000"), ("--port",)),
    Case("serve-batch-size-0", ("serve", "--model", "{base}", "--max-batch-size", "0"), ("--max-batch-size",)),
    Case("serve-body-timeout-0", ("serve", "--model", "{base}", "--body-timeout", "0"), ("--body-timeout",)),
    Case("split-bad-ratios", ("split", "{good_jsonl}", "--output", "{root}/split", "--ratios", "0.5,0.6"),
         ("--ratios",)),
    Case("split-output-is-a-file", ("split", "{good_jsonl}", "--output", "{existing_file}"),
         ("{existing_file} is a file",)),
    Case("train-output-dir-is-a-file", ("train", "{config_output_is_file}"), ("{existing_file}",)),
    Case("evaluate-output-dir-is-a-file", ("evaluate", "{eval_output_file}", "--force"), ("{existing_file}",)),
    Case("demo-output-is-a-file", ("demo", "--model", "{base}", "--output", "{existing_file}", "--force"),
         ("{existing_file}",)),
    Case("merge-output-below-a-file", ("merge", "--model_name_or_path", "{base}", "--lora_path", "{adapter}",
                                       "--output_path", "{existing_file}/merged"), ("is a file, so no folder",)),
    Case("build-model-output-below-a-file", ("build-model", "--output", "{existing_file}/model"),
         ("--output {existing_file}/model: {existing_file} is a file",)),
    Case("train-config-key-typo", ("train", "{config_typo}"), ("lora_rnak", "lora_rank")),
    Case("train-config-broken-json", ("train", "{config_broken}"), ("{config_broken}",)),
    Case("train-config-missing", ("train", "{root}/no-such-config.json"), ("no-such-config.json",)),
    Case("evaluate-config-missing", ("evaluate", "{root}/no-such-eval.yaml"), ("no-such-eval.yaml",)),
    Case("evaluate-config-broken-yaml", ("evaluate", "{eval_broken}"), ("{eval_broken}",)),
    Case("evaluate-config-key-typo", ("evaluate", "{eval_typo}"), ("'system'", "systems")),
    Case("evaluate-test-file-missing", ("evaluate", "{eval_missing_test}"), ("no-such-test.json",)),
    # -- missing or unreadable inputs
    Case("predict-input-missing", ("predict", "--model", "{base}", "--input", "{root}/no-such.jsonl"),
         ("no-such.jsonl",)),
    Case("predict-input-broken-line", ("predict", "--model", "{base}", "--input", "{broken_jsonl}"),
         ("{broken_jsonl}:2",)),
    Case("predict-input-empty", ("predict", "--model", "{base}", "--input", "{empty_jsonl}"),
         ("{empty_jsonl}", "no addresses")),
    Case("predict-model-missing", ("predict", "--model", "{root}/no-such-model", ADDRESS),
         ("{root}/no-such-model", "does not exist")),
    Case("predict-model-is-a-file", ("predict", "--model", "{good_jsonl}", ADDRESS), ("{good_jsonl}", "is a file")),
    Case("predict-model-not-a-model", ("predict", "--model", "{existing_dir}", ADDRESS),
         ("{existing_dir}", "is not a model folder")),
    Case("predict-empty-safetensors", ("predict", "--model", "{empty_safetensors_model}", ADDRESS),
         ("{empty_safetensors_model}/model.safetensors", "empty file")),
    Case("merge-empty-safetensors", ("merge", "--model_name_or_path", "{empty_safetensors_model}", "--lora_path",
                                     "{adapter}", "--output_path", "{root}/merged"),
         ("{empty_safetensors_model}/model.safetensors", "empty file")),
    Case("predict-tokenizer-broken", ("predict", "--model", "{broken_tokenizer_model}", ADDRESS),
         ("{broken_tokenizer_model}/tokenizer_config.json", "cannot load the tokenizer")),
    Case("predict-model-config-broken", ("predict", "--model", "{broken_config_model}", ADDRESS),
         ("{broken_config_model}/config.json",)),
    Case("predict-adapter-not-an-adapter", ("predict", "--model", "{base}", "--lora_path", "{existing_dir}", ADDRESS),
         ("--lora-path", "{existing_dir}", "lora_config.json")),
    Case("predict-adapter-without-weights", ("predict", "--model", "{base}", "--lora_path", "{weightless_adapter}",
                                             ADDRESS), ("{weightless_adapter}", "no adapter weights")),
    Case("merge-adapter-missing", ("merge", "--model_name_or_path", "{base}", "--lora_path", "{root}/no-adapter",
                                   "--output_path", "{root}/merged"), ("--lora-path", "no-adapter")),
    Case("prepare-input-empty", ("prepare", "--input", "{empty_jsonl}", "--output", "{root}/pairs.jsonl"),
         ("{empty_jsonl}",)),
    Case("prepare-input-missing", ("prepare", "--input", "{root}/no-such.txt", "--output", "{root}/pairs.jsonl"),
         ("no-such.txt",)),
    Case("split-input-missing", ("split", "{root}/no-such.jsonl", "--output", "{root}/split"), ("no-such.jsonl",)),
    Case("split-input-broken-line", ("split", "{broken_jsonl}", "--output", "{root}/split"), ("{broken_jsonl}:2",)),
    Case("train-dataset-missing", ("train", "{config_missing_dataset}"), ("no-such-data",)),
    Case("train-dataset-broken-line", ("train", "{config_broken_data}"), ("{broken_data}/train.json:2",)),
    # -- hints name the flag of the command that was run
    Case("predict-offline-hub-name", ("predict", "--model", "Qwen/Qwen2.5-0.5B-Instruct", ADDRESS),
         ("is a hub name", "pass it: --model ./models/Qwen2.5-0.5B-Instruct")),
    Case("serve-offline-hub-name", ("serve", "--model", "Qwen/Qwen2.5-0.5B-Instruct", "--port", "0"),
         ("is a hub name", "pass it: --model ./models/Qwen2.5-0.5B-Instruct")),
    Case("merge-offline-hub-name", ("merge", "--model_name_or_path", "Qwen/Qwen2.5-0.5B-Instruct", "--lora_path",
                                    "{adapter}", "--output_path", "{root}/merged"),
         ("pass it: --model-name-or-path ./models/Qwen2.5-0.5B-Instruct",)),
    # -- issue 23: one reader for lora_config.json (item 6)
    Case("predict-broken-lora-config", ("predict", "--model", "{base}", "--lora_path", "{broken_lora_config}", ADDRESS),
         ("{broken_lora_config}/lora_config.json:1:", "broken JSON in the adapter config")),
    Case("serve-broken-lora-config", ("serve", "--model", "{base}", "--lora_path", "{broken_lora_config}", "--port",
                                      "0"), ("{broken_lora_config}/lora_config.json:1:", "broken JSON")),
    Case("merge-broken-lora-config", ("merge", "--model_name_or_path", "{base}", "--lora_path", "{broken_lora_config}",
                                      "--output_path", "{root}/merged"),
         ("{broken_lora_config}/lora_config.json:1:", "broken JSON in the adapter config")),
    Case("export-broken-lora-config", ("export", "--model", "{base}", "--lora_path", "{broken_lora_config}",
                                       "--output", "{root}/hf", "--format", "hf"),
         ("{broken_lora_config}/lora_config.json:1:", "broken JSON in the adapter config")),
    # -- merging an adapter into a model that already carries it (item 9)
    Case("merge-twice", ("merge", "--model_name_or_path", "{merged_model}", "--lora_path", "{adapter}",
                         "--output_path", "{root}/merged"),
         ("{merged_model} already has the adapter {adapter} merged", "twice", "--force")),
    # -- a LoRA rank above the adapted layers' size (item 10)
    Case("train-lora-rank-too-large", ("train", "{config_huge_rank}"),
         ("lora_rank 10000 exceeds 32", "lora_rank <= 32")),
    # -- hints that say what is true (item 12)
    Case("split-csv-without-src-tgt", ("split", "{pairs_csv}", "--output", "{root}/split"),
         ("no column 'src'", "needs the columns src and tgt")),
    Case("evaluate-test-file-is-a-folder", ("evaluate", "{eval_test_is_folder}"),
         ("test_file: {data} is a folder", "{data}/test.json")),
    # -- an adapter of a base with fewer layers (item 7)
    Case("predict-adapter-of-fewer-layers", ("predict", "--model", "{base}", "--lora_path", "{one_layer_adapter}",
                                             ADDRESS),
         ("the adapter has no tensor qwen2.layers.1.self_attn.q_proj.lora_A", "fewer layers")),
    Case("merge-adapter-of-fewer-layers", ("merge", "--model_name_or_path", "{base}", "--lora_path",
                                           "{one_layer_adapter}", "--output_path", "{root}/merged"),
         ("no tensor qwen2.layers.1.self_attn.q_proj.lora_A", "fewer layers")),
    Case("export-adapter-of-fewer-layers", ("export", "--model", "{base}", "--lora_path", "{one_layer_adapter}",
                                            "--output", "{root}/hf", "--format", "hf"),
         ("no tensor qwen2.layers.1.self_attn.q_proj.lora_A", "fewer layers")),
    Case("serve-adapter-of-fewer-layers", ("serve", "--model", "{base}", "--lora_path", "{one_layer_adapter}",
                                           "--port", "0"), ("no tensor qwen2.layers.1.self_attn.q_proj.lora_A",)),
    # -- a config.json that disagrees with the weights (item 8)
    Case("predict-config-disagrees-with-weights", ("predict", "--model", "{wide_config_model}", ADDRESS),
         ("{wide_config_model}/config.json", "says hidden_size 128", "64 wide")),
    Case("merge-config-disagrees-with-weights", ("merge", "--model_name_or_path", "{wide_config_model}",
                                                 "--lora_path", "{adapter}", "--output_path", "{root}/merged"),
         ("says hidden_size 128", "64 wide")),
    Case("export-config-disagrees-with-weights", ("export", "--model", "{wide_config_model}", "--output",
                                                  "{root}/hf", "--format", "hf"), ("says hidden_size 128", "64 wide")),
    Case("train-config-disagrees-with-weights", ("train", "{config_wide_config}"), ("says hidden_size 128", "64 wide")),
    Case("predict-blank-second-address", ("predict", "--model", "{base}", ADDRESS, "   "),
         ("ADDRESS argument 2 is blank",)),
]


@pytest.mark.parametrize("case", CLI_CASES, ids=[case.name for case in CLI_CASES])
def test_cli_refuses_bad_input(case, world, capsys):
    argv = [word.format(**world) for word in case.argv]
    before = snapshot(Path(world["root"]), Path(world["base"]), Path(world["adapter"]))
    code = main(argv)
    err = capsys.readouterr().err
    assert code == case.code, err
    error_lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(error_lines) == 1, err
    print(case.name, "->", error_lines[0])  # shown with pytest -rP
    assert all(word.format(**world) in error_lines[0] for word in case.words), error_lines[0]
    assert "Traceback" not in err
    assert snapshot(Path(world["root"]), Path(world["base"]), Path(world["adapter"])) == before


# ---------------------------------------------------------------- the matrix: every bad input in every command

BAD_INPUT_FILES = {  # name -> bytes of a pair / address file
    "empty": b"",
    "blank-lines": b"\n  \n\n",
    "broken-line": (json.dumps(PAIR, ensure_ascii=False) + '\n{"src": "x", "tgt": \n').encode(),
    "utf16": json.dumps(PAIR, ensure_ascii=False).encode("utf-16"),
    "binary": bytes(range(256)) * 4,
    "not-utf8-line": (json.dumps(PAIR, ensure_ascii=False) + "\n").encode() + b'{"src": "\xff", "tgt": "x"}\n',
    "array-line": (json.dumps(PAIR, ensure_ascii=False) + "\n[1, 2]\n").encode(),
    "number-field": (json.dumps(PAIR, ensure_ascii=False) + '\n{"src": 1, "tgt": 2}\n').encode(),
}
BAD_INPUT_WORDS = {"empty": (), "blank-lines": (), "broken-line": (":2",), "utf16": ("UTF-16",), "binary": (),
                   "not-utf8-line": (":2", "UTF-8"), "array-line": (":2",), "number-field": (":2",)}

# variant -> (world key of the bad model, words of the error line)
MODEL_VARIANTS = {
    "missing": ("no-such-model", ("no-such-model",)),
    "file": ("good_jsonl", ("{good_jsonl}",)),
    "not-a-model": ("existing_dir", ("{existing_dir}",)),
    "adapter-as-model": ("adapter", ("{adapter}", "LoRA adapter folder")),
    "empty-safetensors": ("empty_safetensors_model", ("{empty_safetensors_model}/model.safetensors", "empty file")),
    "broken-config": ("broken_config_model", ("{broken_config_model}/config.json",)),
    "broken-tokenizer": ("broken_tokenizer_model", ("{broken_tokenizer_model}/tokenizer_config.json",)),
    "truncated-pickle": ("truncated_model", ("{truncated_model}/model_state.pdparams",)),
    "config-disagrees": ("wide_config_model", ("says hidden_size 128", "64 wide")),
}
ADAPTER_VARIANTS = {
    "missing": ("no-such-adapter", ("no-such-adapter",)),
    "file": ("good_jsonl", ("{good_jsonl}",)),
    "not-an-adapter": ("existing_dir", ("{existing_dir}",)),
    "model-as-adapter": ("small", ("{small}",)),
    "weightless": ("weightless_adapter", ("{weightless_adapter}", "no adapter weights")),
    "truncated": ("truncated_adapter", ("{truncated_adapter}/" + ADAPTER_SHARD,)),
    "broken-config": ("broken_lora_config", ("{broken_lora_config}/lora_config.json:1:",)),
    "fewer-layers": ("one_layer_adapter", ("no tensor qwen2.layers.1.self_attn.q_proj.lora_A",)),
}


def model_commands(model: str) -> dict[str, tuple[str, ...]]:
    """Every command that loads a model, given ``model`` ({key} placeholders allowed)."""
    return {"predict": ("predict", "--model", model, ADDRESS), "serve": ("serve", "--model", model, "--port", "0"),
            "merge": ("merge", "--model_name_or_path", model, "--lora_path", "{adapter}", "--output_path",
                      "{root}/merged"),
            "export": ("export", "--model", model, "--output", "{root}/hf", "--format", "hf")}


def adapter_commands(adapter: str) -> dict[str, tuple[str, ...]]:
    return {"predict": ("predict", "--model", "{base}", "--lora_path", adapter, ADDRESS),
            "serve": ("serve", "--model", "{base}", "--lora_path", adapter, "--port", "0"),
            "merge": ("merge", "--model_name_or_path", "{base}", "--lora_path", adapter, "--output_path",
                      "{root}/merged"),
            "export": ("export", "--model", "{base}", "--lora_path", adapter, "--output", "{root}/hf", "--format",
                       "hf")}


def input_commands(path: str) -> dict[str, tuple[str, ...]]:
    return {"predict": ("predict", "--model", "{base}", "--input", path),
            "prepare": ("prepare", "--input", path, "--output", "{root}/pairs.jsonl"),
            "split": ("split", path, "--output", "{root}/split")}


def matrix_cases() -> list[Case]:
    cases = []
    for variant, (key, words) in MODEL_VARIANTS.items():
        place = "{" + key + "}" if not key.startswith("no-such") else "{root}/" + key
        for command, argv in model_commands(place).items():
            cases.append(Case(f"matrix-{command}-model-{variant}", argv, words))
        cases.append(Case(f"matrix-train-model-{variant}", ("train", "{config_model_" + variant + "}"), words))
        cases.append(Case(f"matrix-evaluate-model-{variant}", ("evaluate", "{eval_model_" + variant + "}"), words,
                          code=2 if variant in ("file", "missing", "not-a-model", "adapter-as-model",
                                                "empty-safetensors") else 1))  # refused with the config
    for variant, (key, words) in ADAPTER_VARIANTS.items():
        place = "{" + key + "}" if not key.startswith("no-such") else "{root}/" + key
        for command, argv in adapter_commands(place).items():
            cases.append(Case(f"matrix-{command}-adapter-{variant}", argv, words))
        cases.append(Case(f"matrix-train-adapter-{variant}", ("train", "{config_adapter_" + variant + "}"), words))
        cases.append(Case(f"matrix-evaluate-adapter-{variant}", ("evaluate", "{eval_adapter_" + variant + "}"),
                          words, code=2 if variant in ("missing", "file", "not-an-adapter", "model-as-adapter")
                          else 1))  # a missing or wrong kind of path is refused with the config; the rest at run
    for variant in [*BAD_INPUT_FILES, "folder", "missing"]:
        words = ("{input_" + variant + "}", *BAD_INPUT_WORDS.get(variant, ()))
        for command, argv in input_commands("{input_" + variant + "}").items():
            cases.append(Case(f"matrix-{command}-input-{variant}", argv, words))
        if variant in BAD_INPUT_FILES:
            cases.append(Case(f"matrix-evaluate-input-{variant}", ("evaluate", "{eval_input_" + variant + "}"),
                              words))
            cases.append(Case(f"matrix-train-input-{variant}", ("train", "{config_dataset_" + variant + "}"),
                              ("train.json", *BAD_INPUT_WORDS[variant])))
    for variant, (place, words) in OUTPUT_VARIANTS.items():
        for command, argv in output_commands(place).items():
            cases.append(Case(f"matrix-{command}-output-{variant}", argv, words))
        if variant not in ("exists", "wrong-kind"):  # train and evaluate take their output folder from the config
            cases.append(Case(f"matrix-train-output-{variant}", ("train", "{config_output_" + variant + "}"), words))
            cases.append(Case(f"matrix-evaluate-output-{variant}", ("evaluate", "{eval_output_" + variant + "}"),
                              words))
    return cases


OUTPUT_VARIANTS = {  # variant -> (the output path, words of the error line)
    "exists": ("{existing_dir}", ("{root}/existing",)),  # a file output gets {existing_file} (output_commands)
    "below-a-file": ("{existing_file}/out", ("{existing_file}", "is a file")),
    "empty": ("", ("output",)),  # every message names the flag or key
    "wrong-kind": ("{existing_file}", ("{root}/existing",)),  # a file output gets a folder (output_commands)
}


def output_commands(output: str) -> dict[str, tuple[str, ...]]:
    """Every command that writes an output, writing ``output``."""
    file_output = {"{existing_dir}": "{existing_file}", "{existing_file}": "{existing_dir}"}.get(output, output)
    commands = {"predict": ("predict", "--model", "{base}", ADDRESS, "--output", file_output),
            "prepare": ("prepare", "--num", "5", "--output", file_output),
            "split": ("split", "{good_jsonl}", "--output", output),
            "merge": ("merge", "--model_name_or_path", "{base}", "--lora_path", "{adapter}", "--output_path", output),
            "export": ("export", "--model", "{base}", "--output", output, "--format", "hf"),
            "build-model": ("build-model", "--output", output)}
    if output == "{existing_dir}":  # split writes its three files into an existing folder: nothing to refuse
        del commands["split"]
    return commands


MATRIX_CASES = matrix_cases()


@pytest.mark.parametrize("case", MATRIX_CASES, ids=[case.name for case in MATRIX_CASES])
def test_every_command_refuses_every_bad_input(case, world, capsys):
    if case.code == 2:
        test_cli_refuses_bad_input(case, world, capsys)
        return
    # evaluate with a system it cannot run: one line "system NAME failed: <the reason>" in the report's log, the
    # other systems would go on, exit 1; nothing of the user's changes
    argv = [word.format(**world) for word in case.argv]
    before = snapshot(Path(world["root"]), Path(world["base"]), Path(world["adapter"]))
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 1, err
    [line] = [line for line in err.splitlines() if "system base failed: " in line]
    assert all(word.format(**world) in line for word in case.words), line
    assert "Traceback" not in err
    assert snapshot(Path(world["root"]), Path(world["base"]), Path(world["adapter"])) == before


# ---------------------------------------------------------------- HTTP requests


API_KEY = "reliability-key"


def chat(content, **extra) -> dict:
    return {"model": "tiny", "messages": [{"role": "user", "content": content}], **extra}


@dataclass(frozen=True)
class HttpCase:
    name: str
    path: str
    body: object = None  # JSON-encoded unless raw is given
    raw: bytes | None = None
    status: int = 422
    words: tuple[str, ...] = ()
    param: str | None = None
    key: str | None = API_KEY
    method: str | None = None


HTTP_CASES = [
    HttpCase("broken-json", "/v1/complete", raw=b'{"addresses": [', status=400, words=("broken JSON", "line 1")),
    HttpCase("not-utf8", "/v1/complete", raw=b'{"addresses": ["\xff"]}', status=400, words=("not UTF-8",)),
    HttpCase("empty-body", "/v1/complete", raw=b"", words=("JSON object body",)),
    HttpCase("array-body", "/v1/chat/completions", body=[1], words=("must be a JSON object",)),
    HttpCase("no-messages", "/v1/chat/completions", body={"model": "tiny"}, words=("missing field 'messages'",),
             param="messages"),
    HttpCase("empty-messages", "/v1/chat/completions", body={"messages": []}, words=("'messages'",),
             param="messages"),
    HttpCase("message-without-content", "/v1/chat/completions", body={"messages": [{"role": "user"}]},
             words=("missing field 'messages[0].content'",), param="messages[0].content"),
    HttpCase("message-role-number", "/v1/chat/completions", body={"messages": [{"role": 1, "content": "x"}]},
             words=("'messages[0].role'",), param="messages[0].role"),
    HttpCase("content-number", "/v1/chat/completions", body=chat(7), words=("messages[0].content",)),
    HttpCase("content-image-part", "/v1/chat/completions",
             body=chat([{"type": "image_url", "image_url": {"url": "x"}}]), words=("messages[0].content[0]",)),
    HttpCase("stream-string", "/v1/chat/completions", body=chat(ADDRESS, stream="yes"), words=("'stream'", "boolean"),
             param="stream"),
    HttpCase("stream-number", "/v1/chat/completions", body=chat(ADDRESS, stream=1), words=("'stream'",),
             param="stream"),
    HttpCase("stream-options-not-object", "/v1/chat/completions", body=chat(ADDRESS, stream=True, stream_options=5),
             words=("'stream_options'",), param="stream_options"),
    HttpCase("n-3", "/v1/chat/completions", body=chat(ADDRESS, n=3), status=400, words=("n=1",), param="n"),
    HttpCase("n-string", "/v1/chat/completions", body=chat(ADDRESS, n="1"), words=("'n'",), param="n"),
    HttpCase("no-user-message", "/v1/chat/completions", body={"messages": [{"role": "system", "content": "x"}]},
             words=("no user message",)),
    HttpCase("blank-address", "/v1/chat/completions", body=chat("  \n"), words=("messages[0].content is empty",)),
    HttpCase("address-too-long", "/v1/chat/completions", body=chat("海" * 41), status=413,
             words=("--max-input-chars", "41 characters")),
    HttpCase("too-many-addresses", "/v1/complete", body={"addresses": [ADDRESS] * 5}, status=413,
             words=("too many addresses: 5", "--max-addresses")),
    HttpCase("addresses-not-list", "/v1/complete", body={"addresses": ADDRESS}, words=("'addresses'", "list"),
             param="addresses"),
    HttpCase("address-number", "/v1/complete", body={"addresses": [ADDRESS, 7]}, words=("'addresses[1]'",),
             param="addresses[1]"),
    HttpCase("address-empty", "/v1/complete", body={"addresses": [""]}, words=("addresses[0] is empty",)),
    HttpCase("addresses-empty-list", "/v1/complete", body={"addresses": []}, words=("'addresses'",),
             param="addresses"),
    HttpCase("address-lone-surrogate", "/v1/complete", raw='{"addresses": ["\\ud800碑林区"]}'.encode(),
             words=("addresses[0]", "unpaired surrogate", "\\ud800"), param="addresses[0]"),
    HttpCase("chat-lone-surrogate", "/v1/chat/completions",
             raw='{"messages": [{"role": "user", "content": "\\udc00碑林区"}]}'.encode(),
             words=("messages[0].content", "unpaired surrogate"), param="messages[0].content"),
    HttpCase("body-too-large", "/v1/complete", body={"addresses": ["海" * 3000]}, status=413,
             words=("exceeds the limit of 4096 bytes",)),
    HttpCase("no-api-key", "/v1/complete", body={"addresses": [ADDRESS]}, status=401, words=("--api-key",), key=None),
    HttpCase("wrong-api-key", "/v1/models", status=401, words=("missing or wrong API key",), key="wrong"),
    HttpCase("unknown-path", "/v1/completions", body={"prompt": "x"}, status=404, words=("unknown path /v1/completions",
                                                                                         "/v1/chat/completions", "/health")),
    HttpCase("wrong-method", "/v1/chat/completions", status=405, words=("accepts POST, not GET",), method="GET"),
]


@pytest.fixture(scope="module")
def http_server(default_model_dir):
    from address_completion.inference.generate import Completer
    from address_completion.inference.protocol import ServerSettings
    from address_completion.inference.server import start_in_thread

    completer = Completer.load(str(default_model_dir), max_new_tokens=4)
    running = start_in_thread(completer, ServerSettings(port=0, api_key=API_KEY, model_name="tiny", max_addresses=4,
                                                        max_input_chars=40, max_body_bytes=4096))
    yield running
    running.stop()


def request(url: str, case: HttpCase) -> tuple[int, dict]:
    data = case.raw if case.raw is not None else (
        None if case.body is None else json.dumps(case.body, ensure_ascii=False).encode())
    headers = {"Content-Type": "application/json"}
    if case.key is not None:
        headers["Authorization"] = f"Bearer {case.key}"
    try:
        with urllib.request.urlopen(urllib.request.Request(url + case.path, data=data, headers=headers,
                                                           method=case.method), timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.mark.parametrize("case", HTTP_CASES, ids=[case.name for case in HTTP_CASES])
def test_server_refuses_bad_requests(case, http_server):
    status, payload = request(http_server.url, case)
    assert status == case.status, payload
    error = payload["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert "\n" not in error["message"] and "Traceback" not in error["message"]
    assert all(word in error["message"] for word in case.words), error["message"]
    if case.param is not None:
        assert error["param"] == case.param
    good = HttpCase("good", "/v1/complete", body={"addresses": [ADDRESS]})
    ok_status, answer = request(http_server.url, good)  # the server keeps serving
    assert ok_status == 200 and len(answer["results"]) == 1


def ALL_CASES() -> list:  # noqa: N802  (every table; LOCK_CASES is defined further down)
    return [*CLI_CASES, *HTTP_CASES, *LOCK_CASES, *MATRIX_CASES]


def test_the_catalogue_is_large_enough():
    """Issue 23 item 13: every class, every earlier case kept, at least 300 cases each asserting its outcome."""
    cases = [*ALL_CASES(), *(Case(f"{name}-disk-full", argv, ()) for name, argv, _, _ in DISK_CASES)]
    assert len(cases) >= 300, len(cases)
    assert len({case.name for case in cases}) == len(cases)


# ---------------------------------------------------------------- one run per output (issue 23 item 1)


LOCK_CASES = [
    Case("train-output-in-use", ("train", "{config_locked}"), ("output_dir {locked} is being written",)),
    Case("merge-output-in-use", ("merge", "--model_name_or_path", "{base}", "--lora_path", "{adapter}",
                                 "--output_path", "{locked}"), ("--output-path {locked} is being written",)),
    Case("merge-hf-output-in-use", ("merge", "--model_name_or_path", "{base}", "--lora_path", "{adapter}",
                                    "--output_path", "{locked}", "--format", "hf"),
         ("--output-path {locked} is being written",)),
    Case("export-output-in-use", ("export", "--model", "{base}", "--output", "{locked}", "--format", "hf"),
         ("--output {locked} is being written",)),
    Case("prepare-output-in-use", ("prepare", "--num", "5", "--output", "{locked}"),
         ("--output {locked} is being written",)),
    Case("split-output-in-use", ("split", "{good_jsonl}", "--output", "{locked}"),
         ("--output {locked} is being written",)),
    Case("predict-output-in-use", ("predict", "--model", "{base}", ADDRESS, "--output", "{locked}"),
         ("--output {locked} is being written",)),
    Case("evaluate-output-in-use", ("evaluate", "{eval_locked}"), ("output_dir {locked} is being written",)),
    Case("build-model-output-in-use", ("build-model", "--output", "{locked}"), ("--output {locked} is being written",)),
]


@pytest.mark.parametrize("case", LOCK_CASES, ids=[case.name for case in LOCK_CASES])
def test_an_output_in_use_is_refused_at_once(case, world, capsys):
    """While another process writes an output (here: this one, holding the lock), every command that would
    write it stops at once with one line naming the output and the process."""
    import os

    from address_completion import files

    with files.output_lock(world["locked"], "--output"):
        test_cli_refuses_bad_input(Case(case.name, case.argv, (*case.words, f"(pid {os.getpid()}")), world, capsys)
    assert not Path(world["locked"]).exists() and not files.lock_path(world["locked"]).exists()


def test_a_killed_holder_never_blocks_and_a_lock_file_is_never_left(tmp_path):
    """The lock dies with its process (flock), and a released lock leaves no file nor the folders it made."""
    import subprocess
    import sys

    from address_completion import files

    output = tmp_path / "made" / "for" / "out.jsonl"
    killed = subprocess.run([sys.executable, "-c", "import os, sys\nfrom address_completion import files\n"
                             f"with files.output_lock({str(output)!r}): os._exit(9)"], timeout=120)
    assert killed.returncode == 9 and files.lock_path(output).exists()  # a stale file, unlocked
    with files.output_lock(output) as lock:
        assert lock.read_text(encoding="ascii") == f"{os.getpid()}\n"
    assert not files.lock_path(output).exists()
    with files.output_lock(tmp_path / "new" / "folder" / "out"):
        assert (tmp_path / "new" / "folder" / ".out.lock").is_file()
    assert not (tmp_path / "new").exists()


PAUSED_AFTER_FIRST_STEP = """
import os, signal, sys
from address_completion import cli
from address_completion.training import trainer

def make_trainer(*args, **kwargs):
    from paddlenlp.trainer import TrainerCallback

    class PauseAfterFirstStep(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 1:
                os.kill(os.getpid(), signal.SIGSTOP)

    trainer = original(*args, **kwargs)
    trainer.add_callback(PauseAfterFirstStep())
    return trainer

original, trainer.make_trainer = trainer.make_trainer, make_trainer
sys.exit(cli.main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_two_trainings_into_one_folder_exactly_one_runs(world, tmp_path):
    """The issue's case: two trainings into one new output_dir. The first (paused mid-run) holds the folder; the
    second exits 2 at once naming the folder and the first's pid; the first ends with its own result."""
    import signal
    import subprocess
    import sys

    from conftest import wait_until_paused

    output = tmp_path / "run"
    config = tmp_path / "train.json"
    config.write_text(json.dumps({**json.loads(Path(world["config_locked"]).read_text(encoding="utf-8")),
                                  "output_dir": str(output), "max_steps": 2}), encoding="utf-8")
    first = subprocess.Popen([sys.executable, "-c", PAUSED_AFTER_FIRST_STEP, "train", str(config)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until_paused(first)
        second = subprocess.run([sys.executable, "-m", "address_completion", "train", str(config)],
                                capture_output=True, text=True, timeout=600)
        assert second.returncode == 2, second.stderr
        [line] = second.stderr.strip().splitlines()
        assert line.startswith(f"error: output_dir {output} is being written by another run (pid {first.pid}: "
                               f"{sys.executable} -c ") and line.endswith("; wait for it to end, or choose another "
                                                                           "output"), line
        first.send_signal(signal.SIGCONT)
        out, err = first.communicate(timeout=600)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait(timeout=60)
    assert first.returncode == 0, err
    summary = json.loads((output / "summary.json").read_text(encoding="utf-8"))
    assert summary["global_step"] == 2 and not dataio_lock_exists(output)


def dataio_lock_exists(path: Path) -> bool:
    from address_completion import files

    return files.lock_path(path).exists()


# ---------------------------------------------------------------- resume after the final checkpoint (item 2)


def checksums(folder: Path) -> dict[str, str]:
    import hashlib

    return {str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(folder.rglob("*")) if path.is_file()}


@pytest.mark.slow
def test_resume_after_the_final_checkpoint_trains_nothing(world, tmp_path, capsys):
    """`train --resume` on a finished run: "nothing to do", every file unchanged. Killed while writing its final
    adapter (summary missing, adapter gone, safetensors' .tmpXXXXXX left): the result is written from the last
    checkpoint without a step 3/2, and the leftover is removed."""
    from safetensors.numpy import load_file

    output = tmp_path / "run"
    config = tmp_path / "train.json"
    config.write_text(json.dumps({**json.loads(Path(world["config_locked"]).read_text(encoding="utf-8")),
                                  "output_dir": str(output), "max_steps": 2, "save_strategy": "steps",
                                  "save_steps": 2, "lr_scheduler_type": "constant", "logging_steps": 1,
                                  "load_best_model_at_end": False}), encoding="utf-8")
    assert main(["train", str(config)]) == 0
    assert (output / "checkpoint-2").is_dir()
    finished = checksums(output)
    adapter = load_file(str(output / ADAPTER_SHARD))
    capsys.readouterr()

    assert main(["train", str(config), "--resume"]) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert checksums(output) == finished

    (output / "summary.json").unlink()  # killed while writing the final adapter: the summary comes after it
    (output / ADAPTER_SHARD).unlink()
    (output / ".tmpAb3xZ9").write_bytes(b"half an adapter")
    assert main(["train", str(config), "--resume"]) == 0, capsys.readouterr().err
    assert not (output / ".tmpAb3xZ9").exists()
    summary = json.loads((output / "summary.json").read_text(encoding="utf-8"))
    assert summary["global_step"] == 2
    steps = [json.loads(line)["step"] for line in (output / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
    assert max(steps) == 2
    resumed = load_file(str(output / ADAPTER_SHARD))
    assert resumed.keys() == adapter.keys()
    for name in adapter:
        assert (resumed[name] == adapter[name]).all(), name


# ---------------------------------------------------------------- SIGTERM under load (item 3)


@pytest.mark.slow
def test_sigterm_with_200_requests_in_flight_answers_each_or_503(default_model_dir, start_server):
    """The issue's case: 200 requests in flight, SIGTERM, --shutdown-timeout 1. Each request gets its answer or
    OpenAI's JSON 503 "server shutting down"; no plain-text 500, no traceback, at most one log line per cut
    request, the batching worker does not crash, exit 0."""
    import http.client
    import signal
    import threading

    server = start_server("--model", str(default_model_dir), "--port", "0", "--shutdown-timeout", "1",
                          "--max-batch-size", "1", "--decoding", "free", "--max_new_tokens", "32", "--debug")
    host, port = "127.0.0.1", server.port
    results: list[tuple[int, str, bytes]] = []
    lock = threading.Lock()

    def ask(index: int) -> None:
        connection = http.client.HTTPConnection(host, port, timeout=300)
        try:
            connection.request("POST", "/v1/complete", body=json.dumps({"addresses": [f"{ADDRESS}{index}"]}),
                               headers={"Content-Type": "application/json"})
            response = connection.getresponse()
            outcome = (response.status, response.getheader("Content-Type") or "", response.read())
        except OSError as error:
            outcome = (0, type(error).__name__, str(error).encode())
        finally:
            connection.close()
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=ask, args=(index,)) for index in range(200)]
    for thread in threads:
        thread.start()
    for _ in range(200):  # every request has reached the batching queue (the worker logs each at debug level)
        server.stderr.wait_for(r"queued 1 address")
    server.process.send_signal(signal.SIGTERM)
    for thread in threads:
        thread.join(timeout=300)
    code = server.process.wait(timeout=300)
    log = server.stderr.read_to_end()
    assert code == 0, log[-3000:]
    assert len(results) == 200
    answered = [body for status, _, body in results if status == 200]
    cut = [body for status, _, body in results if status == 503]
    assert len(answered) + len(cut) == 200, [outcome for outcome in results if outcome[0] not in (200, 503)][:3]
    assert all(kind.startswith("application/json") for _, kind, _ in results)
    for body in cut:
        error = json.loads(body)["error"]
        assert error["message"].startswith("server shutting down") and error["code"] == "server_shutting_down"
    assert cut, "the shutdown timeout cut no request: the test did not test the cut"
    for word in ("Traceback", "CancelledError", "InvalidStateError", "Exception in ASGI", "Cancel "):
        assert word not in log, log[-3000:]
    assert sum(" 503 " in line for line in log.splitlines()) <= len(cut)


# ---------------------------------------------------------------- a full disk (item 5)


def mounted_tmpfs(folder: Path, options: str):
    """Yield ``folder`` with a real tmpfs mounted on it (``mount -o options``), unmounted afterwards; skips the test
    where mounting is not allowed (it needs root)."""
    import subprocess

    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode(errors='replace').strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


@pytest.fixture()
def small_disk(tmp_path):
    """A real 20 MB tmpfs (needs root to mount; skipped elsewhere, since a simulated ENOSPC would not show what
    Paddle, safetensors and our writers really do)."""
    yield from mounted_tmpfs(tmp_path / "disk", "size=20m")


def fill(disk: Path, leave: int = 0) -> None:
    """Fill ``disk`` until at most ``leave`` bytes are free."""
    with open(disk / "filler", "wb") as handle:
        try:
            while shutil.disk_usage(disk).free > leave:
                handle.write(b"\0" * min(1 << 20, max(4096, shutil.disk_usage(disk).free - leave)))
                handle.flush()
        except OSError:
            pass


DISK_CASES = [  # (name, argv, output, fill the disk first)
    ("prepare", ("prepare", "--num", "200", "--output", "{disk}/pairs.jsonl"), "{disk}/pairs.jsonl", True),
    ("split", ("split", "{pairs}", "--output", "{disk}/split", "--ratios", "0.5,0.25,0.25"), "{disk}/split", True),
    ("predict", ("predict", "--model", "{base}", ADDRESS, "--output", "{disk}/p.jsonl"), "{disk}/p.jsonl", True),
    ("train", ("train", "{disk_config}"), "{disk}/run", False),
    ("merge", ("merge", "--model_name_or_path", "{base}", "--lora_path", "{adapter}", "--output_path",
               "{disk}/merged"), "{disk}/merged", False),
    ("export", ("export", "--model", "{base}", "--output", "{disk}/hf", "--format", "hf"), "{disk}/hf", False),
    ("evaluate", ("evaluate", "{disk_eval}"), "{disk}/eval", True),
]


@pytest.mark.parametrize("case", DISK_CASES, ids=[f"{case[0]}-disk-full" for case in DISK_CASES])
def test_a_full_disk_is_one_line_and_leaves_nothing_half_written(case, world, small_disk, tmp_path, capsys):
    name, argv, output, full = case
    names = {**world, "disk": str(small_disk)}
    names["disk_config"] = str(tmp_path / "train.json")
    Path(names["disk_config"]).write_text(json.dumps({
        **json.loads(Path(world["config_locked"]).read_text(encoding="utf-8")), "output_dir": f"{small_disk}/run",
        "max_steps": 2, "save_strategy": "steps", "save_steps": 1}), encoding="utf-8")
    names["pairs"] = str(tmp_path / "pairs.jsonl")
    from address_completion.data.synthesis import synthesize

    Path(names["pairs"]).write_text("".join(json.dumps(pair, ensure_ascii=False) + "\n"
                                            for pair in synthesize(60, seed=3)), encoding="utf-8")
    names["disk_eval"] = str(tmp_path / "eval.yaml")
    Path(names["disk_eval"]).write_text(f"test_file: {world['data']}/dev.json\noutput_dir: {small_disk}/eval\n"
                                        f"systems:\n  - name: base\n    kind: paddle\n    model: {world['base']}\n",
                                        encoding="utf-8")
    if full:
        fill(small_disk)
    before = {path.name for path in small_disk.iterdir()}
    inputs = snapshot(Path(world["root"]), Path(world["base"]), Path(world["adapter"]))
    code = main([word.format(**names) for word in argv])
    err = capsys.readouterr().err
    assert code == 2, err
    [line] = [line for line in err.splitlines() if line.startswith("error: ")]
    assert "no space left on the device" in line and output.format(**names) in line, line
    assert "Traceback" not in err
    left = sorted(str(path.relative_to(small_disk)) for path in small_disk.rglob("*")
                  if path.is_file() and (path.name not in before or path.parent != small_disk))
    assert left == [], left  # empty folders at most
    assert snapshot(Path(world["root"]), Path(world["base"]), Path(world["adapter"])) == inputs


# ---------------------------------------------------------------- the header phase is bounded (item 4)


def test_a_connection_that_never_finishes_its_headers_is_closed(default_model_dir):
    """A request line and one header, then nothing: closed once --body-timeout passed (it stayed open forever)."""
    import socket

    from address_completion.inference.generate import Completer
    from address_completion.inference.protocol import ServerSettings
    from address_completion.inference.server import start_in_thread

    completer = Completer.load(str(default_model_dir), max_new_tokens=4)
    running = start_in_thread(completer, ServerSettings(port=0, body_timeout=1.0))
    try:
        host, port = running.socket.getsockname()[:2]
        for partial in (b"POST /v1/complete HTTP/1.1\r\nHost: x\r\n", b"", b"GET /hea"):
            with socket.create_connection((host, port), timeout=120) as client:
                client.sendall(partial)
                assert client.recv(1024) == b""  # closed by the server (a timeout here raises instead)
        with urllib.request.urlopen(running.url + "/health", timeout=120) as response:  # and it keeps serving
            assert response.status == 200
    finally:
        running.stop()


# ---------------------------------------------------------------- a read-only output folder (item 11)


@pytest.fixture()
def read_only_folder(tmp_path):
    """A read-only file system (a tmpfs mounted ro: root may write anywhere else). Needs root to mount."""
    yield from mounted_tmpfs(tmp_path / "ro", "ro,size=1m")


def test_a_read_only_output_folder_is_the_same_message_everywhere(world, read_only_folder, tmp_path, capsys):
    """evaluate gave an OSError [Errno 30] traceback; every command says "the folder … is not writable"."""
    evaluation = tmp_path / "eval.yaml"
    evaluation.write_text(f"test_file: {world['data']}/dev.json\noutput_dir: {read_only_folder}/eval\nsystems:\n"
                          f"  - name: base\n    kind: paddle\n    model: {world['base']}\n", encoding="utf-8")
    commands = [("evaluate", str(evaluation)),
                ("predict", "--model", world["base"], ADDRESS, "--output", f"{read_only_folder}/p.jsonl"),
                ("prepare", "--num", "5", "--output", f"{read_only_folder}/pairs.jsonl"),
                ("split", world["good_jsonl"], "--output", f"{read_only_folder}/split")]
    for argv in commands:
        assert main(list(argv)) == 2, argv
        err = capsys.readouterr().err
        [line] = [line for line in err.splitlines() if line.startswith("error: ")]
        assert f"the folder {read_only_folder} is not writable" in line and "Traceback" not in err, line


def test_a_mistyped_relative_model_path_is_not_a_hub_name(tmp_path, monkeypatch, capsys):
    """`--model outputs/tiny-mergd` (outputs/ exists here) was described as a hub name with a download command."""
    (tmp_path / "outputs").mkdir()
    monkeypatch.chdir(tmp_path)
    assert main(["predict", "--model", "outputs/tiny-mergd", ADDRESS]) == 2
    [line] = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert "outputs/tiny-mergd" in line and "does not exist" in line and "hub name" not in line, line
