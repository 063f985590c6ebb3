"""Merging a LoRA adapter into the default model: verified logits, atomic output, refusals."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from address_completion.model import export_paddle, verify
from address_completion.cli import main
from address_completion.errors import ConfigError, OutputExistsError

TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def merged_dir(default_model_dir, lora_adapter_dir, tmp_path_factory) -> Path:
    output = tmp_path_factory.mktemp("merge") / "merged"
    result = export_paddle.merge_adapter(str(default_model_dir), str(lora_adapter_dir), output)
    assert result.output_path == output
    assert result.max_abs_diff <= TOLERANCE
    assert result.adapter_effect > 100 * TOLERANCE, "the adapter must change the logits for the test to mean much"
    return output


@pytest.mark.slow
def test_merged_logits_equal_base_plus_adapter(merged_dir, default_model_dir, lora_adapter_dir):
    """Independent check: reload both and compare logits on a padded batch of address prompts."""
    from address_completion.model.modeling import load_model, load_tokenizer

    batch = verify.probe_batch(load_tokenizer(str(default_model_dir)))
    with_adapter = load_model(str(default_model_dir), lora_path=str(lora_adapter_dir))
    with_adapter.eval()
    merged = load_model(str(merged_dir))
    merged.eval()
    difference = verify.max_logit_difference(verify.probe_logits(with_adapter, batch),
                                            verify.probe_logits(merged, batch), batch[1])
    assert difference <= TOLERANCE


@pytest.mark.slow
def test_merged_folder_is_a_complete_model(merged_dir, default_model_dir, lora_adapter_dir):
    names = {path.name for path in merged_dir.iterdir()}
    assert {"config.json", "model.safetensors", "generation_config.json", "vocab.json", "merges.txt",
            "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json", export_paddle.RECORD_FILE} <= names
    assert not any(name.startswith(".") for name in names)
    for name in ("vocab.json", "merges.txt", "tokenizer_config.json"):
        assert (merged_dir / name).read_bytes() == (default_model_dir / name).read_bytes()
    assert "chat_template" in json.loads((merged_dir / "tokenizer_config.json").read_text(encoding="utf-8"))
    generation = json.loads((merged_dir / "generation_config.json").read_text(encoding="utf-8"))
    assert generation["eos_token_id"] == [151645, 151643]
    record = json.loads((merged_dir / export_paddle.RECORD_FILE).read_text(encoding="utf-8"))
    assert record["base_model"] == str(default_model_dir)
    assert record["lora_path"] == str(Path(lora_adapter_dir).resolve())
    assert record["lora"]["r"] == 4 and record["lora"]["lora_alpha"] == 8
    verification = record["verification"]
    assert verification["tolerance"] == TOLERANCE and verification["max_abs_logit"] > 0
    assert verification["max_abs_logit_diff"] <= verification["allowed_diff"] == pytest.approx(
        TOLERANCE * max(1.0, verification["max_abs_logit"]))
    assert record["weights_format"] == "safetensors" and not list(merged_dir.glob("*.pdparams"))
    assert not [path for path in merged_dir.parent.iterdir() if path.name.startswith(".")], "no staging leftovers"


@pytest.mark.slow
def test_merged_weights_have_exactly_the_base_tensors(merged_dir, default_model_dir):
    """No LoRA tensors and none of the zero biases restore_original_model() adds to bias-free layers."""
    from safetensors.numpy import load_file

    merged = load_file(str(merged_dir / "model.safetensors"))
    base = load_file(str(default_model_dir / "model.safetensors"))
    assert sorted(merged) == sorted(base)
    assert {name: value.shape for name, value in merged.items()} == {name: value.shape for name, value in base.items()}


@pytest.mark.slow
def test_merged_model_answers_like_base_plus_adapter(merged_dir, default_model_dir, lora_adapter_dir):
    from address_completion.inference.generate import Completer

    addresses = ["碑林区扬子江南路467-6号", "海淀区中关村大街27号"]
    unmerged = Completer.load(str(default_model_dir), lora_path=str(lora_adapter_dir), max_new_tokens=6)
    merged = Completer.load(str(merged_dir), max_new_tokens=6)
    for completer in (unmerged, merged):  # the random model's raw answers (the answer check would abstain them all)
        completer.check_answers = False
    assert merged.complete(addresses) == unmerged.complete(addresses)
    assert merged.complete(addresses) != addresses


def test_refuses_non_empty_output(default_model_dir, lora_adapter_dir, tmp_path):
    output = tmp_path / "out"
    output.mkdir()
    (output / "notes.txt").write_text("keep me", encoding="utf-8")
    with pytest.raises(OutputExistsError):
        export_paddle.merge_adapter(str(default_model_dir), str(lora_adapter_dir), output)
    with pytest.raises(ConfigError, match="holds no config.json"):  # --force replaces model folders only
        export_paddle.merge_adapter(str(default_model_dir), str(lora_adapter_dir), output, force=True)
    assert [path.name for path in tmp_path.iterdir()] == ["out"]
    assert (output / "notes.txt").read_text(encoding="utf-8") == "keep me"


@pytest.mark.slow
def test_cli_pdparams_and_force_replace(default_model_dir, lora_adapter_dir, tmp_path, capsys):
    output = tmp_path / "merged"
    arguments = ["merge", "--model_name_or_path", str(default_model_dir), "--lora_path", str(lora_adapter_dir),
                 "--output_path", str(output), "--safe_serialization", "false", "--device", "cpu"]
    assert main(arguments) == 0
    assert (output / "model_state.pdparams").is_file() and not list(output.glob("*.safetensors"))
    assert json.loads((output / export_paddle.RECORD_FILE).read_text(encoding="utf-8"))["weights_format"] == "pickle"
    captured = capsys.readouterr()
    assert "max |logit diff|" in captured.out and "pickle" not in captured.err  # its own fresh file: no warning
    assert main(arguments) == 2  # exists: refused
    assert "--force" in capsys.readouterr().err
    assert main([*arguments, "--force"]) == 0
    assert sorted(path.name for path in tmp_path.iterdir()) == ["merged"]


def test_allowed_difference_grows_with_the_logits_beyond_one():
    assert verify.allowed_difference(1e-4, 0.3) == 1e-4
    assert verify.allowed_difference(1e-4, 25.0) == pytest.approx(2.5e-3)


@pytest.mark.slow
def test_failed_verification_leaves_no_output(default_model_dir, lora_adapter_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(verify, "max_logit_difference", lambda *args: 1.0)
    output = tmp_path / "merged"
    with pytest.raises(verify.MergeVerificationError, match="tolerance"):
        export_paddle.merge_adapter(str(default_model_dir), str(lora_adapter_dir), output)
    assert list(tmp_path.iterdir()) == []


def test_rejects_pissa_adapter(default_model_dir, lora_adapter_dir, tmp_path):
    adapter = tmp_path / "pissa-adapter"
    shutil.copytree(lora_adapter_dir, adapter)
    config = json.loads((adapter / "lora_config.json").read_text(encoding="utf-8"))
    (adapter / "lora_config.json").write_text(json.dumps({**config, "pissa": True}), encoding="utf-8")
    with pytest.raises(ConfigError, match="PiSSA"):
        export_paddle.merge_adapter(str(default_model_dir), str(adapter), tmp_path / "merged")
    assert not (tmp_path / "merged").exists()


def test_rejects_a_folder_that_is_not_an_adapter(default_model_dir, tmp_path):
    (tmp_path / "not-an-adapter").mkdir()
    with pytest.raises(ConfigError, match="lora_config.json"):
        export_paddle.merge_adapter(str(default_model_dir), str(tmp_path / "not-an-adapter"), tmp_path / "merged")


@pytest.mark.slow
def test_merged_files_follow_the_umask(merged_dir):
    """safetensors writes through a private temporary file; the merged model must be as readable as any file."""
    import os
    import stat

    from address_completion.files import current_umask

    modes = {path.name: stat.S_IMODE(path.stat().st_mode) for path in merged_dir.iterdir()}
    assert "model.safetensors" in modes
    assert modes == {name: 0o666 & ~current_umask() for name in modes}
    assert stat.S_IMODE(merged_dir.stat().st_mode) == 0o777 & ~current_umask()
    assert os.access(merged_dir / "model.safetensors", os.R_OK)


@pytest.mark.parametrize("arguments, message", [
    (["--quantize", "q8_0"], "--quantize applies to --format gguf only; --format paddle writes"),
    (["--format", "hf", "--quantize", "q8_0"], "--quantize applies to --format gguf only; --format hf writes"),
    (["--format", "hf", "--safe_serialization", "false"], "--safe-serialization false applies to --format paddle only"),
    (["--dtype", "int8"], "--dtype must be one of float32, bfloat16, float16; got 'int8'"),
    (["--format", "gguf", "--dtype", "bfloat16", "--output_path", "{tmp}/m.gguf"],
     "--dtype bfloat16 applies to --format paddle only; --format gguf merges in float32"),
    (["--format", "hf", "--output_path", "{tmp}/m.gguf"], "--format hf writes a folder, not a .gguf file"),
    (["--tolerance", "nan"], "--tolerance must be a finite number >= 0, got nan"),  # nan/inf: every merge passed
    (["--tolerance", "inf"], "--tolerance must be a finite number >= 0, got inf"),
])
def test_options_the_format_would_ignore_are_refused(arguments, message, default_model_dir, lora_adapter_dir,
                                                      tmp_path, capsys):
    arguments = [argument.format(tmp=tmp_path) for argument in arguments]
    output = [] if "--output_path" in arguments else ["--output_path", str(tmp_path / "merged")]
    assert main(["merge", "--model_name_or_path", str(default_model_dir), "--lora_path", str(lora_adapter_dir),
                 *output, *arguments]) == 2
    assert message in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("fmt", ["paddle", "hf"])
def test_a_missing_base_model_is_named_by_its_flag(fmt, lora_adapter_dir, tmp_path, capsys):
    """merge lists --model-name-or-path first: the error says which option named the missing folder."""
    missing = str(tmp_path / "nope")
    assert main(["merge", "--model_name_or_path", missing, "--lora-path", str(lora_adapter_dir),
                 "--output-path", str(tmp_path / "merged"), "--format", fmt]) == 2
    assert f"--model-name-or-path: model folder {missing!r} does not exist" in capsys.readouterr().err
