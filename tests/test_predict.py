"""`predict`: arguments, files, stdin and the interactive prompt give the Completer's answers."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from address_completion import DEFAULT_PROMPT_PREFIX
from address_completion.cli import main
from address_completion.data.prompt import decode_answer
from address_completion.inference.generate import Completer, encode_prompts, generate_token_ids
from address_completion.inference.predict import interactive_loop, read_input_file

REPO = Path(__file__).resolve().parents[1]
ADDRESSES = ["碑林区扬子江南路467-6号", "海淀区中关村大街27号", DEFAULT_PROMPT_PREFIX + "天河区体育西路191号",
             "a", "南山区科技园南区高新南七道"]
MAX_NEW_TOKENS = 6


@pytest.fixture(scope="module")
def model_args(default_model_dir, lora_adapter_dir) -> list[str]:
    return ["--model", str(default_model_dir), "--lora_path", str(lora_adapter_dir),
            "--max_new_tokens", str(MAX_NEW_TOKENS)]


@pytest.fixture(scope="module")
def completer(default_model_dir, lora_adapter_dir) -> Completer:
    """The CLI's defaults: grounded prompt, constrained decoding (free generation for "a": no candidate)."""
    return Completer.load(str(default_model_dir), lora_path=str(lora_adapter_dir), max_new_tokens=MAX_NEW_TOKENS,
                          grounding="candidates", decoding="constrained")


@pytest.fixture(scope="module")
def expected(completer) -> list[str]:
    """One address at a time: the reference every batched path must reproduce."""
    return [completer.complete([address], batch_size=1)[0] for address in ADDRESSES]


def printed(answers: list[str]) -> list[str]:
    """What plain-text output shows: one line per answer (a generated newline becomes a space)."""
    return [" ".join(answer.splitlines()) for answer in answers]


def test_batch_equals_one_at_a_time(completer, expected):
    assert completer.complete(ADDRESSES, batch_size=4) == expected
    assert len(set(expected)) > 1


def test_addresses_as_arguments(model_args, expected, capsys):
    assert main(["predict", *model_args, "--batch_size", "3", *ADDRESSES]) == 0
    assert capsys.readouterr().out.split("\n")[:-1] == printed(expected)


def test_json_output_names_prompt_and_predict(model_args, expected, capsys):
    assert main(["predict", *model_args, "--json", *ADDRESSES[:2]]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [{key: line[key] for key in ("prompt", "predict")} for line in lines] == [
        {"prompt": DEFAULT_PROMPT_PREFIX + address, "predict": answer}
        for address, answer in zip(ADDRESSES[:2], expected[:2])]
    # how each answer was made: one candidate each here, chosen with probability 1
    assert lines[0]["predict"] == "陕西省西安市碑林区扬子江南路467-6号"
    assert lines[1]["predict"] == "北京市海淀区中关村大街27号"
    assert [(line["decoding"], line["probability"], line["abstained"]) for line in lines] == [
        ("constrained", 1.0, False)] * 2
    assert lines[0]["candidates"] == [{"text": "陕西省西安市碑林区扬子江南路467-6号", "probability": 1.0}]


def test_decoding_free_gives_the_seed_behaviour(model_args, default_model_dir, lora_adapter_dir, capsys):
    free = Completer.load(str(default_model_dir), lora_path=str(lora_adapter_dir), max_new_tokens=MAX_NEW_TOKENS)
    assert main(["predict", *model_args, "--decoding", "free", "--grounding", "none", "--json", ADDRESSES[0]]) == 0
    line = json.loads(capsys.readouterr().out)
    assert line["predict"] == free.complete([ADDRESSES[0]])[0] and line["decoding"] == "free"
    assert line["candidates"] == [] and line["probability"] is None


def test_bad_decoding_options_are_one_line_errors(model_args, capsys):
    assert main(["predict", *model_args, "--decoding", "free", "--min-confidence", "0.5", ADDRESSES[0]]) == 2
    assert "--min-confidence: min_confidence 0.5 needs constrained decoding" in capsys.readouterr().err
    assert main(["predict", *model_args, "--min-confidence", "1.5", ADDRESSES[0]]) == 2
    assert "--min-confidence: min_confidence must be between 0 and 1, got 1.5" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", *model_args, "--decoding", "beam", ADDRESSES[0]])
    assert exit_info.value.code == 2 and "invalid choice: 'beam'" in capsys.readouterr().err


def test_file_in_file_out_contract(model_args, expected, tmp_path, capsys):
    source = tmp_path / "test.json"
    source.write_text("".join(json.dumps({"src": address, "tgt": f"全{index}"}, ensure_ascii=False) + "\n"
                              for index, address in enumerate(ADDRESSES)), encoding="utf-8")
    output = tmp_path / "predictions.jsonl"
    assert main(["predict", *model_args, "--input", str(source), "--output", str(output), "--batch_size", "2"]) == 0
    records = [json.loads(line) for line in output.read_text(encoding="utf-8").splitlines()]
    assert [list(record)[:3] for record in records] == [["prompt", "predict", "label"]] * len(ADDRESSES)
    assert [record["decoding"] for record in records] == ["constrained"] * 3 + ["free_fallback", "constrained"]
    assert [record["predict"] for record in records] == expected
    assert [record["label"] for record in records] == [f"全{index}" for index in range(len(ADDRESSES))]
    assert all(record["prompt"].startswith(DEFAULT_PROMPT_PREFIX) for record in records)
    before = output.read_bytes()
    assert main(["predict", *model_args, "--input", str(source), "--output", str(output)]) == 2
    assert "--force" in capsys.readouterr().err
    assert output.read_bytes() == before
    assert sorted(path.name for path in tmp_path.iterdir()) == ["predictions.jsonl", "test.json"]


def test_input_files_without_labels(tmp_path):
    text = tmp_path / "addresses.txt"
    text.write_text("碑林区扬子江南路467-6号\n\n海淀区\n", encoding="utf-8")
    assert [(item.address, item.label) for item in read_input_file(text)] == [
        ("碑林区扬子江南路467-6号", None), ("海淀区", None)]
    pairs = tmp_path / "src_only.jsonl"
    pairs.write_text('{"src": "海淀区"}\n', encoding="utf-8")
    assert [(item.address, item.label) for item in read_input_file(pairs)] == [("海淀区", None)]


def test_stdin_is_read_when_piped(model_args, expected, monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.StringIO("\n".join(ADDRESSES) + "\n"))
    assert main(["predict", *model_args]) == 0
    assert capsys.readouterr().out.split("\n")[:-1] == printed(expected)


def test_interactive_prompt(completer, expected):
    out = io.StringIO()
    interactive_loop(completer, as_json=False, stdin=io.StringIO(f"{ADDRESSES[0]}\n\n{ADDRESSES[1]}\nquit\n"), out=out)
    first, second = printed(expected[:2])
    assert out.getvalue() == f"> {first}\n> > {second}\n> "


def test_arguments_and_input_file_together_are_refused(model_args, tmp_path, capsys):
    assert main(["predict", *model_args, "--input", str(tmp_path / "x.txt"), "海淀区"]) == 2
    assert "not both" in capsys.readouterr().err


def test_script_reads_piped_stdin(default_model_dir, lora_adapter_dir, expected):
    """scripts/predict.py in a fresh process, fed through a pipe as a user would."""
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "predict.py"), "--model", str(default_model_dir), "--lora_path",
         str(lora_adapter_dir), "--max_new_tokens", str(MAX_NEW_TOKENS)],
        input="\n".join(ADDRESSES[:2]) + "\n", capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:-1] == printed(expected[:2])


def test_abstentions_are_announced_on_stderr(model_args, capsys):
    assert main(["predict", *model_args, "--min-confidence", "0.5", "扬子江南路1号", "碑林区扬子江南路1号"]) == 0
    captured = capsys.readouterr()
    assert captured.out.splitlines() == ["扬子江南路1号", "陕西省西安市碑林区扬子江南路1号"]
    assert ("1 of 2 address(es) returned unchanged (abstained: 1 no candidate, and min_confidence > 0: nothing "
            "vouches for a generated chain (constrained))") in captured.err


def test_too_long_address_is_refused_before_the_model_loads(tmp_path, capsys):
    """A pasted document is not an address: refused with the argument / record named, nothing loaded
    (the --model folder does not even exist)."""
    missing = str(tmp_path / "no-model")
    assert main(["predict", "--model", missing, ADDRESSES[0], "路" * 257]) == 2
    assert "ADDRESS argument 2: address has 257 characters; the limit is 256" in capsys.readouterr().err
    source = tmp_path / "in.txt"
    source.write_text(f"{ADDRESSES[0]}\n\n{'路' * 40}\n", encoding="utf-8")
    assert main(["predict", "--model", missing, "--input", str(source), "--max_input_chars", "30"]) == 2
    assert f"{source}: record 2: address has 40 characters; the limit is 30" in capsys.readouterr().err
    assert main(["predict", "--model", missing, "--max_input_chars", "0", "x"]) == 2
    assert "--max-input-chars must be at least 1" in capsys.readouterr().err


def test_an_unknown_dtype_is_named_by_its_flag(default_model_dir, capsys):
    assert main(["predict", "--model", str(default_model_dir), "--dtype", "int8", ADDRESSES[0]]) == 2
    assert "--dtype must be one of float32, bfloat16, float16; got 'int8'" in capsys.readouterr().err


def test_device_has_a_help_naming_its_values_and_default(capsys):
    for command in ("predict", "serve"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert ("--device {auto,cpu,gpu} where the model runs: gpu, cpu, or auto (a GPU when Paddle sees one, else "
                "the CPU) (default: auto)") in text, command


def test_an_address_with_no_letter_or_digit_is_refused_before_the_model_loads(tmp_path, capsys):
    """[] or 【】 was answered with an empty prediction, reported like any other."""
    missing = str(tmp_path / "no-model")
    assert main(["predict", "--model", missing, ADDRESSES[0], "[]"]) == 2
    assert "ADDRESS argument 2: '[]' has no letter or digit: nothing to complete" in capsys.readouterr().err
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps({"src": "补齐五级行政地址: 【】"}, ensure_ascii=False) + "\n", encoding="utf-8")
    assert main(["predict", "--model", missing, "--input", str(source)]) == 2
    assert f"{source}: record 1: '补齐五级行政地址: 【】' has no letter or digit" in capsys.readouterr().err
    source.write_text(json.dumps({"src": "补齐五级行政地址: "}, ensure_ascii=False) + "\n", encoding="utf-8")
    assert main(["predict", "--model", missing, "--input", str(source)]) == 2  # it said: has no letter or digit
    assert f"{source}: record 1: '补齐五级行政地址:' is the prompt prefix alone: nothing to complete" in \
        capsys.readouterr().err


@pytest.mark.parametrize("line, message", [("路" * 300, "300 characters; the limit is 256"),
                                           ("【】", "no letter or digit: nothing to complete")])
def test_interactive_prompt_skips_a_line_it_cannot_complete(completer, expected, capsys, line, message):
    out = io.StringIO()
    interactive_loop(completer, as_json=False, stdin=io.StringIO(f"{line}\n{ADDRESSES[0]}\nquit\n"), out=out,
                     max_input_chars=256)
    assert out.getvalue() == f"> > {printed(expected[:1])[0]}\n> "
    assert message in capsys.readouterr().err


def test_input_that_is_not_utf8_is_refused_before_the_model_loads(tmp_path, monkeypatch, capsys):
    missing = str(tmp_path / "no-model")  # never reached: the input is checked first
    bad = "碑林".encode("utf-8") + b"\xff" + "区".encode("utf-8")
    argument = bad.decode("utf-8", "surrogateescape")  # what Python makes of such bytes in argv
    assert main(["predict", "--model", missing, argument]) == 2
    assert capsys.readouterr().err.strip() == ("error: ADDRESS argument 1 is not UTF-8 text (invalid UTF-8 at byte 7); "
                                               "give the address in UTF-8")
    stdin = io.TextIOWrapper(io.BytesIO("碑林区\n\n".encode("utf-8") + bad + b"\n"), encoding="utf-8", errors="strict")
    monkeypatch.setattr(sys, "stdin", stdin)
    assert main(["predict", "--model", missing]) == 2
    assert capsys.readouterr().err.strip() == "error: <stdin>:3: invalid UTF-8 at byte 7 of the line; pipe UTF-8 text"


def test_interactive_prompt_skips_a_line_that_is_not_utf8(completer, expected, capsys):
    out = io.StringIO()
    bad = ("碑林".encode("utf-8") + b"\xff").decode("utf-8", "surrogateescape")
    interactive_loop(completer, as_json=False, stdin=io.StringIO(f"{bad}\n{ADDRESSES[0]}\nquit\n"), out=out)
    assert out.getvalue() == f"> > {printed(expected[:1])[0]}\n> "
    assert "invalid UTF-8 at byte 7 of the line" in capsys.readouterr().err


def test_a_missing_paddle_is_one_line_naming_the_environment(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "paddle", None)  # what a Python without Paddle sees on `import paddle`
    assert main(["predict", "--model", str(tmp_path), "碑林区扬子江南路467-6号"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: paddle is not installed in this Python ({sys.executable}); run the command with "
                          "the project's environment: .venv/bin/python -m address_completion") and "\n" not in err


def test_script_called_with_a_python_without_paddle_uses_the_checkout_environment(tmp_path):
    """README: `python scripts/predict.py …` with the system's python runs with .venv/bin/python."""
    import shutil

    venv_python = REPO / ".venv" / "bin" / "python"
    candidates = [shutil.which(name) for name in ("python3", "python")] + ["/usr/bin/python3"]
    bare = next((path for path in candidates if path and Path(path).is_file() and subprocess.run(
        [path, "-c", "import importlib.util, sys; sys.exit(importlib.util.find_spec('paddle') is not None)"],
        capture_output=True).returncode == 0), None)
    if bare is None or not venv_python.is_file():
        pytest.skip("needs a Python without Paddle and the checkout's .venv")
    done = subprocess.run([bare, str(REPO / "scripts" / "predict.py"), "--model", str(tmp_path / "none"), "x"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "model folder" in done.stderr and "does not exist" in done.stderr  # the .venv's CLI got that far


def test_an_address_with_the_prompt_prefix_is_answered_as_without_it(model_args, capsys):
    """The prefix is stripped once, where the input arrives: the same answer, and an abstention returns the bare
    address (never the prefixed text)."""
    bare = ["碑林区扬子江南路1号", "扬子江南路1号", "海淀区中关村大街27号"]  # the second has no candidate
    assert main(["predict", *model_args, "--min-confidence", "0.5", "--json", *bare,
                 *(DEFAULT_PROMPT_PREFIX + address for address in bare)]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert records[len(bare):] == records[:len(bare)]
    assert (records[1]["predict"], records[1]["abstained"]) == ("扬子江南路1号", True)
    assert records[0]["predict"] == "陕西省西安市碑林区扬子江南路1号" and not records[0]["abstained"]


@pytest.mark.parametrize("prefix", ["补齐五级行政地址:", "补齐五级行政地址：", "补齐五级行政地址 ： ",
                                    DEFAULT_PROMPT_PREFIX * 2])
def test_the_prefix_typed_another_way_or_twice_is_answered_as_without_it(model_args, prefix, capsys):
    """Only the exact prefix was stripped, once: with a full-width colon or given twice, the prefix stayed in the
    address, the gazetteer found no candidate and the abstention echoed the prefixed text."""
    bare = ["碑林区扬子江南路1号", "扬子江南路1号"]  # the second has no candidate: it abstains
    assert main(["predict", *model_args, "--min-confidence", "0.5", "--json", *bare,
                 *(prefix + address for address in bare)]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    answers = [(record["predict"], record["abstained"]) for record in records]
    assert answers == [("陕西省西安市碑林区扬子江南路1号", False), ("扬子江南路1号", True)] * 2
    assert main(["predict", *model_args, prefix]) == 2
    assert "is the prompt prefix alone: nothing to complete" in capsys.readouterr().err


@pytest.mark.parametrize("address", ["扬子江南路碑林区1号", "[扬子江南路]碑林区1号"])
def test_an_empty_free_answer_is_an_abstention_not_a_success(default_model_dir, address, capsys):
    """Street-first input has no candidate, so free decoding answers; the untrained default model stops at once.
    An empty answer is no answer: the input comes back unchanged, marked abstained, and the user is told."""
    completer = Completer.load(str(default_model_dir), max_new_tokens=MAX_NEW_TOKENS)
    prompt_ids = encode_prompts(completer.tokenizer, [completer.prompt_for(address)])
    new_ids = generate_token_ids(completer.model, completer.tokenizer, prompt_ids, max_new_tokens=MAX_NEW_TOKENS,
                                 stop_ids=completer.stop_ids)[0]
    assert decode_answer(completer.tokenizer, new_ids) == ""  # the premise: the model itself gives nothing
    assert main(["predict", "--model", str(default_model_dir), "--max_new_tokens", str(MAX_NEW_TOKENS), "--json",
                 address]) == 0
    captured = capsys.readouterr()
    record = json.loads(captured.out)
    assert (record["predict"], record["decoding"], record["abstained"]) == (address, "free_fallback", True)
    assert record["reason"] == "empty answer"
    assert "1 of 1 address(es) returned unchanged (abstained: 1 empty answer (free_fallback))" in captured.err


def test_a_grounded_training_message_is_answered_as_its_address(completer, default_model_dir, capsys):
    """evaluate's openai system with grounding: candidates sends the grounded message itself; the candidates line
    is the gazetteer's to propose again, not part of the address (it used to come back inside the answer)."""
    address = "碑林区扬子江南路467-6号"
    grounded = DEFAULT_PROMPT_PREFIX + address + "\n候选: 陕西省西安市碑林区"
    typed = [address + "\n候选：陕西省西安市碑林区", address + "\n候选 : 陕西省", address + "\r\n 候选:"]  # as typed
    plain, from_message, *from_typed = completer.complete_detailed([address, grounded, *typed])
    assert from_message == plain and plain.text == "陕西省西安市碑林区扬子江南路467-6号"
    assert from_typed == [plain] * len(typed)
    assert completer.complete(["碑林区候选路1号"]) == ["陕西省西安市碑林区候选路1号"]  # 候选 in a street name stays
    untrained = Completer.load(str(default_model_dir), max_new_tokens=MAX_NEW_TOKENS)
    echoed = untrained.complete_detailed(["扬子江南路碑林区1号\n候选: 无"])[0]
    assert (echoed.text, echoed.abstained) == ("扬子江南路碑林区1号", True)


@pytest.mark.slow
def test_a_free_answer_that_is_no_current_address_is_abstained(taught_model_dir, capsys):
    """The fallback's free answer is checked like every answer: the taught model answers 无 (the prompt's
    no-candidate placeholder) and 陕西省杭州市碑林区1号 (no such chain) — both come back as the input unchanged,
    abstained, with the reason, and the user is told why."""
    from conftest import TAUGHT_ANSWERS

    completer = Completer.load(str(taught_model_dir), grounding="candidates", decoding="constrained",
                               max_new_tokens=16)
    addresses = list(TAUGHT_ANSWERS)
    prompt_ids = encode_prompts(completer.tokenizer, [completer.prompt_for(address, []) for address in addresses])
    raw = [decode_answer(completer.tokenizer, ids) for ids in generate_token_ids(
        completer.model, completer.tokenizer, prompt_ids, max_new_tokens=16, stop_ids=completer.stop_ids)]
    assert raw == ["无", "陕西省杭州市碑林区1号"]  # the premise: what the model itself generates
    assert main(["predict", "--model", str(taught_model_dir), "--max_new_tokens", "16", "--json", *addresses]) == 0
    captured = capsys.readouterr()
    records = [json.loads(line) for line in captured.out.splitlines()]
    assert [(r["predict"], r["decoding"], r["abstained"], r["reason"]) for r in records] == [
        ("扬子江南路碑林区1号", "free_fallback", True, "not an address: 无, the prompt's no-candidate placeholder"),
        ("[扬子江南路]碑林区1号", "free_fallback", True,
         "not a current chain: the answer does not start with a current division chain written in full")]
    assert "2 of 2 address(es) returned unchanged" in captured.err and "无, the prompt's" in captured.err
    assert main(["predict", "--model", str(taught_model_dir), "--max_new_tokens", "16", *addresses]) == 0
    assert capsys.readouterr().out.splitlines() == addresses  # plain output: never 无, never the invented chain


@pytest.mark.slow
def test_detail_option_keeps_or_folds_the_written_detail(model_args, capsys):
    assert main(["predict", *model_args, "碑林区_扬子江南路1号", "陕西省西安市碑林区陕西省西安市碑林区扬子江南路1号"]) == 0
    assert capsys.readouterr().out.splitlines() == ["陕西省西安市碑林区_扬子江南路1号",
                                                    "陕西省西安市碑林区陕西省西安市碑林区扬子江南路1号"]
    assert main(["predict", *model_args, "--detail", "clean", "碑林区_扬子江南路1号",
                 "陕西省西安市碑林区陕西省西安市碑林区扬子江南路1号"]) == 0
    assert capsys.readouterr().out.splitlines() == ["陕西省西安市碑林区扬子江南路1号"] * 2
