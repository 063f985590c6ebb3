"""Model resolution and loading: Paddle folder, Hugging Face folder (converted into a cache), hub name offline."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from address_completion.errors import ConfigError
from address_completion.model.modeling import (is_hf_model_dir, is_paddle_model_dir, load_model, load_tokenizer,
                                         resolve_model_dir, safetensors_format)

REPO = Path(__file__).resolve().parents[1]
CHAT_PROMPT = "<|im_start|>user\n碑林区扬子江南路467-6号<|im_end|>\n<|im_start|>assistant\n"


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {path.name: (path.stat().st_size, path.stat().st_mtime_ns) for path in sorted(folder.iterdir())}


def write_hf_layout(paddle_dir: Path, target: Path) -> Path:
    """The folder a Hugging Face download of the same model would be: HF parameter names, [out, in]
    linear weights, safetensors tagged "pt", HF-style config and tokenizer_config without special_tokens_map."""
    import numpy as np
    from safetensors.numpy import save_file

    from address_completion.model.modeling import load_model as load

    model = load(str(paddle_dir))
    tensors = {}
    for name, value in model.state_dict().items():
        array = value.numpy()
        if name.startswith("lm_head"):
            continue  # tied to the embeddings, as in Qwen2.5-0.5B's checkpoint
        if array.ndim == 2 and "embed_tokens" not in name:
            array = array.T  # Paddle Linear stores [in, out]
        tensors[name.replace("qwen2.", "model.", 1)] = np.ascontiguousarray(array)
    target.mkdir(parents=True)
    save_file(tensors, str(target / "model.safetensors"), metadata={"format": "pt"})
    config = json.loads((paddle_dir / "config.json").read_text(encoding="utf-8"))
    for key in ("dtype", "paddlenlp_version", "use_flash_attention", "seq_length"):
        config.pop(key, None)
    config["torch_dtype"] = "float32"
    (target / "config.json").write_text(json.dumps(config), encoding="utf-8")
    for name in ("vocab.json", "merges.txt", "tokenizer_config.json", "generation_config.json"):
        shutil.copy2(paddle_dir / name, target / name)
    return target


@pytest.fixture(scope="module")
def hf_model_dir(default_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_hf_layout(default_model_dir, tmp_path_factory.mktemp("hf") / "Qwen2-tiny")


def logits(model, ids):
    import paddle

    model.eval()
    with paddle.no_grad():
        output = model(input_ids=paddle.to_tensor([ids]))
    return (output[0] if isinstance(output, (tuple, list)) else output).numpy()


def test_paddle_folder_is_used_as_is(default_model_dir):
    assert is_paddle_model_dir(default_model_dir) and not is_hf_model_dir(default_model_dir)
    assert resolve_model_dir(str(default_model_dir)) == default_model_dir


def test_hf_folder_is_converted_into_a_cache_without_writing_into_it(hf_model_dir, default_model_dir, tmp_path):
    import numpy as np

    before = snapshot(hf_model_dir)
    assert safetensors_format(hf_model_dir / "model.safetensors") == "pt" and is_hf_model_dir(hf_model_dir)
    converted = resolve_model_dir(str(hf_model_dir), cache_dir=str(tmp_path / "cache"))
    assert converted.parent == tmp_path / "cache" and is_paddle_model_dir(converted)
    assert (converted / "model.safetensors").is_file() and not list(converted.glob("*.pdparams"))
    assert snapshot(hf_model_dir) == before  # nothing added, nothing touched

    ids = [151644, 872, 198, 117698, 75108, 151645]
    reference = logits(load_model(str(default_model_dir)), ids)
    converted_logits = logits(load_model(str(converted)), ids)
    assert np.abs(converted_logits - reference).max() < 1e-5

    stamp = snapshot(converted)
    assert resolve_model_dir(str(hf_model_dir), cache_dir=str(tmp_path / "cache")) == converted  # converted once
    assert snapshot(converted) == stamp and snapshot(hf_model_dir) == before

    # The tokenizer keeps the "\n" after <|im_end|> although the HF folder has no special_tokens_map.json.
    expected = load_tokenizer(str(default_model_dir))(CHAT_PROMPT, add_special_tokens=False)["input_ids"]
    assert load_tokenizer(str(converted))(CHAT_PROMPT, add_special_tokens=False)["input_ids"] == expected


def test_hf_folder_change_makes_a_new_conversion(hf_model_dir, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(hf_model_dir, copy)
    (copy / "model_state.pdparams").write_bytes(b"")  # what PaddleNLP's convert_from_torch leaves behind
    assert is_hf_model_dir(copy) and not is_paddle_model_dir(copy)  # PaddleNLP would still load the safetensors
    first = resolve_model_dir(str(copy), cache_dir=str(tmp_path / "cache"))
    (copy / "generation_config.json").write_text((copy / "generation_config.json").read_text() + "\n")
    assert resolve_model_dir(str(copy), cache_dir=str(tmp_path / "cache")) != first


def test_hub_name_offline_fails_fast_with_a_local_folder_hint(monkeypatch, tmp_path):
    monkeypatch.setenv("AISTUDIO_BOS_OFFLINE", "1")
    monkeypatch.setenv("PPNLP_HOME", str(tmp_path / "paddlenlp-home"))  # an empty cache
    import socket

    attempts = []  # "fast" = no network attempt (with none, nothing can wait on a timeout), not a clock reading

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("the test forbids network access")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)  # a name lookup comes first
    monkeypatch.setattr(socket.socket, "connect", refuse)
    with pytest.raises(ConfigError) as error:
        resolve_model_dir("Qwen/Qwen2.5-0.5B-Instruct")
    message = str(error.value)
    assert attempts == [] and "\n" not in message
    assert "offline" in message and "--model-name-or-path ./models/Qwen2.5-0.5B-Instruct" in message


def test_bundled_config_offline_stops_in_seconds_naming_a_local_folder(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "AISTUDIO_BOS_OFFLINE": "1", "PPNLP_HOME": str(tmp_path / "home"),
           "HOME": str(tmp_path)}
    result = subprocess.run([sys.executable, "-m", "address_completion", "train", "configs/lora_0p5b.json"],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("error: model 'Qwen/Qwen2.5-0.5B-Instruct' is a hub name")
    assert "--model_name_or_path" in lines[-1] and "Traceback" not in result.stderr


def test_folders_that_are_not_models_are_explained(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        resolve_model_dir(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("x")
    with pytest.raises(ConfigError, match="is not a model folder: expected config.json .* found notes.txt"):
        resolve_model_dir(str(tmp_path / "empty"))


def test_load_model_with_adapter_returns_the_lora_model(default_model_dir, lora_adapter_dir, tmp_path):
    from paddlenlp.peft import LoRAModel

    model = load_model(str(default_model_dir), lora_path=str(lora_adapter_dir))
    assert isinstance(model, LoRAModel)
    with pytest.raises(ConfigError, match="holds no lora_config.json"):
        load_model(str(default_model_dir), lora_path=str(tmp_path))


# ---------------------------------------------------------------- pickled (.pdparams) weights


def test_old_pdparams_folders_load_with_one_warning_and_trust_pickle_silences_it(
        default_model_dir, lora_adapter_dir, tmp_path, monkeypatch, capsys):
    """Folders written before safetensors (build-model/merge --safe_serialization false, LoRAModel.save_pretrained)
    still load, each pickle with one warning line; --trust-pickle or the variable silences it."""
    from address_completion import cli
    from address_completion.model import modeling

    monkeypatch.delenv(modeling.TRUST_PICKLE_ENV, raising=False)  # undone after the test, also what cli sets
    monkeypatch.setattr(modeling, "_WARNED_PICKLES", set())
    old_model, old_adapter = tmp_path / "old-model", tmp_path / "old-adapter"
    assert cli.main(["build-model", "--output", str(old_model), "--safe-serialization", "false"]) == 0
    assert {path.name for path in old_model.glob("model*")} == {"model_state.pdparams"}
    modeling.save_adapter(load_model(str(default_model_dir), lora_path=str(lora_adapter_dir)), old_adapter,
                          safe_serialization=False)
    assert {path.name for path in old_adapter.iterdir() if "model" in path.name} == {"lora_model_state.pdparams"}
    capsys.readouterr()

    address = "碑林区扬子江南路467-6号"
    predict = ["predict", "--device", "cpu", address]
    assert cli.main([*predict, "--model", str(default_model_dir), "--lora_path", str(lora_adapter_dir)]) == 0
    reference = capsys.readouterr()
    assert "pickle" not in reference.err
    assert cli.main([*predict, "--model", str(old_model), "--lora_path", str(old_adapter)]) == 0
    old = capsys.readouterr()
    assert old.out == reference.out  # same seed, same adapter: the same completion from the pickled files
    warnings = [line for line in old.err.splitlines() if "pickle" in line]
    assert warnings == [
        f"warning: {old_model / 'model_state.pdparams'} is a pickle, and loading a pickle can run arbitrary code: use "
        f"it only if it comes from a trusted source (--trust-pickle or {modeling.TRUST_PICKLE_ENV}=1 silences this)",
        f"warning: {old_adapter / 'lora_model_state.pdparams'} is a pickle, and loading a pickle can run arbitrary "
        f"code: use it only if it comes from a trusted source (--trust-pickle or {modeling.TRUST_PICKLE_ENV}=1 "
        "silences this)"]
    load_model(str(old_model))  # loaded again in the same process: no second warning
    assert "pickle" not in capsys.readouterr().err

    monkeypatch.setattr(modeling, "_WARNED_PICKLES", set())
    assert cli.main([*predict, "--model", str(old_model), "--lora_path", str(old_adapter), "--trust-pickle"]) == 0
    trusted = capsys.readouterr()
    assert trusted.out == reference.out and "pickle" not in trusted.err

    monkeypatch.setattr(modeling, "_WARNED_PICKLES", set())
    monkeypatch.setenv(modeling.TRUST_PICKLE_ENV, "1")
    assert modeling.check_pickled_weights(old_model) and modeling.check_pickled_weights(old_adapter, "adapter")
    assert "pickle" not in capsys.readouterr().err
    assert not modeling.check_pickled_weights(default_model_dir)
    assert not modeling.check_pickled_weights(lora_adapter_dir, "adapter")


def test_adapter_folder_without_weights_is_an_error(default_model_dir, lora_adapter_dir, tmp_path):
    """PaddleNLP alone would log an error and go on with fresh, untrained LoRA weights."""
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    shutil.copy2(lora_adapter_dir / "lora_config.json", adapter / "lora_config.json")
    with pytest.raises(ConfigError, match="holds no adapter weights: expected peft_model.safetensors.index.json or "
                                          "lora_model_state.pdparams"):
        load_model(str(default_model_dir), lora_path=str(adapter))


def test_an_adapter_folder_given_as_the_model_says_so(lora_adapter_dir, default_model_dir, capsys):
    """Not "the file is probably truncated": the adapter folder holds config.json and Paddle safetensors too."""
    from address_completion.cli import main
    from address_completion.model.modeling import check_model_source, resolve_model_dir

    for check in (resolve_model_dir, check_model_source):
        with pytest.raises(ConfigError, match=r"--model-name-or-path '.*' is a LoRA adapter folder .*pass it as "
                                              r"--lora-path and its base model as --model-name-or-path"):
            check(str(lora_adapter_dir))
        with pytest.raises(ConfigError, match="pass it as --lora_path and its base model as --model_name_or_path"):
            check(str(lora_adapter_dir), flag="--model_name_or_path")  # train: its config keys' override spelling
    assert main(["predict", "--model", str(lora_adapter_dir), "碑林区扬子江南路467-6号"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --model '{lora_adapter_dir}' is a LoRA adapter folder") and "Traceback" not in err
    assert resolve_model_dir(str(default_model_dir)) == default_model_dir  # a model with no lora_config.json


def test_loading_an_adapter_prints_no_paddlenlp_noise(default_model_dir, lora_adapter_dir, tmp_path):
    """PaddleNLP warned (in raw ANSI colours) on every load of an adapter that training saved (its lora_config has
    tensor_parallel_degree -1) that it reset tensor_parallel_degree; ``import paddle`` warned about OMP_NUM_THREADS,
    data parallelism and OpenBLAS, which the runtime sets on purpose (runtime.import_paddle drops it)."""
    import json
    import shutil
    import subprocess
    import sys

    adapter = tmp_path / "adapter"
    shutil.copytree(lora_adapter_dir, adapter)
    config = json.loads((adapter / "lora_config.json").read_text(encoding="utf-8"))
    (adapter / "lora_config.json").write_text(json.dumps({**config, "tensor_parallel_degree": -1}), encoding="utf-8")
    # a process of its own: PaddleNLP's log handler keeps the stderr of the moment paddlenlp was first imported
    done = subprocess.run([sys.executable, "-m", "address_completion", "predict", "--model", str(default_model_dir),
                           "--lora_path", str(adapter), "碑林区1号"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "tensor_parallel_degree" not in done.stderr + done.stdout
    assert "OMP_NUM_THREADS" not in done.stderr, done.stderr
