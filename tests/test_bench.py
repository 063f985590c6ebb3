"""The benchmarks are not run in CI; their argument parsing is (a typo there would only show on a long run)."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generate_throughput_defaults_include_200_clients_at_once():
    args = load("generate_throughput").parse_args([])
    assert args.burst_clients == 200
    assert args.batch_sizes == [1, 8, 32] and args.server_batch_sizes == [1, 16]


def test_generate_throughput_arguments():
    args = load("generate_throughput").parse_args(["--burst-clients", "0", "--server-batch-sizes", "4,8",
                                                   "--shapes", "default"])
    assert args.burst_clients == 0 and args.server_batch_sizes == [4, 8] and args.shapes == "default"
    with pytest.raises(SystemExit):
        load("generate_throughput").parse_args(["--burst-clients", "many"])


def test_generate_throughput_decoding_defaults():
    args = load("generate_throughput").parse_args([])
    assert args.decoding_inputs == 16 and args.decoding_batch_sizes == [1, 8]
    assert args.decoding_rounds == 2 and args.grounding == "candidates"


def test_generate_throughput_decoding_arguments():
    module = load("generate_throughput")
    args = module.parse_args(["--decoding-inputs", "0", "--decoding-batch-sizes", "1", "--decoding-rounds", "3",
                              "--grounding", "none"])
    assert args.decoding_inputs == 0 and args.decoding_batch_sizes == [1] and args.decoding_rounds == 3
    assert args.grounding == "none"
    for bad in (["--decoding-inputs", "-1"], ["--decoding-rounds", "0"], ["--grounding", "chains"],
                ["--decoding-batch-sizes", "0,8"], ["--batch-sizes", "1,-8"]):
        with pytest.raises(SystemExit):
            module.parse_args(bad)


def test_generate_throughput_ambiguous_inputs_have_several_candidates():
    """The scorer rows time what they claim to: every one of these inputs is scored, none is a shortcut."""
    counts = load("generate_throughput").candidate_counts(load("generate_throughput").SEVERAL_CANDIDATES)
    assert counts == {"0": 0, "1": 0, "2+": 8}


def test_generate_throughput_peer_arguments():
    module = load("generate_throughput")
    args = module.parse_args(["--shapes", "0.5b", "--peer"])
    assert args.peer and args.peer_batch_sizes == [1, 8] and args.peer_rounds == 5 and args.threads == 0
    assert args.peer_scorer and args.peer_paddlenlp and args.peer_python is None
    args = module.parse_args(["--peer", "--peer-batch-sizes", "1,4", "--peer-rounds", "3", "--no-peer-scorer",
                              "--no-paddlenlp", "--threads", "2", "--peer-python", "/opt/peer/bin/python"])
    assert (args.peer_batch_sizes, args.peer_rounds, args.peer_scorer, args.peer_paddlenlp, args.threads,
            args.peer_python) == ([1, 4], 3, False, False, 2, "/opt/peer/bin/python")
    assert not module.parse_args([]).peer
    for bad in (["--peer-rounds", "0"], ["--peer-batch-sizes", "0"], ["--threads", "-1"]):
        with pytest.raises(SystemExit):
            module.parse_args(bad)


def test_peer_weights_in_transformers_layout():
    """Paddle's Linear stores [in, out] and torch's [out, in]; the tied LM head is the embedding itself."""
    import numpy as np

    paddle_state = {"qwen2.embed_tokens.weight": np.arange(6, dtype=np.float32).reshape(3, 2),
                    "qwen2.layers.0.self_attn.q_proj.weight": np.arange(8, dtype=np.float32).reshape(2, 4),
                    "qwen2.layers.0.self_attn.q_proj.bias": np.ones(4, dtype=np.float32),
                    "qwen2.norm.weight": np.ones(2, dtype=np.float32),
                    "lm_head.weight": np.zeros((3, 2), dtype=np.float32)}
    converted = load("decode_peer").hf_state_dict(paddle_state, tied=True)
    assert sorted(converted) == ["model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.bias",
                                 "model.layers.0.self_attn.q_proj.weight", "model.norm.weight"]
    assert converted["model.layers.0.self_attn.q_proj.weight"].tolist() == [[0, 4], [1, 5], [2, 6], [3, 7]]
    assert converted["model.embed_tokens.weight"].tolist() == [[0, 1], [2, 3], [4, 5]]
    assert "lm_head.weight" in load("decode_peer").hf_state_dict(paddle_state, tied=False)


def test_peer_is_skipped_with_a_reason_without_torch(tmp_path):
    python, why_not = load("decode_peer").peer_python(str(tmp_path / "no-python"))
    assert python is None and "no torch + transformers" in why_not and "bench/peer-requirements.txt" in why_not


def test_candidates_arguments():
    module = load("candidates")
    args = module.parse_args([])
    assert args.split == "test" and args.input is None and args.limit is None and not args.json
    args = module.parse_args(["--split", "dev", "--limit", "5", "--json", "--misses", "0"])
    assert args.split == "dev" and args.limit == 5 and args.json and args.misses == 0
    assert module.parse_args(["--input", "pairs.jsonl"]).input == "pairs.jsonl"
    for bad in (["--split", "valid"], ["--limit", "0"], ["--misses", "-1"], ["--input", "a.jsonl", "--split", "dev"]):
        with pytest.raises(SystemExit):
            module.parse_args(bad)


def write_pairs(path: Path, pairs: list[tuple[str, str]]) -> Path:
    path.write_text("".join(json.dumps({"src": src, "tgt": tgt}, ensure_ascii=False) + "\n" for src, tgt in pairs),
                    encoding="utf-8")
    return path


def test_candidates_bench_on_a_few_lines(tmp_path, capsys):
    path = write_pairs(tmp_path / "pairs.jsonl", [
        ("补齐五级行政地址: 碑林区扬子江南路467-6号", "陕西省西安市碑林区扬子江南路467-6号"),  # one candidate, right
        ("朝阳区建国路88号", "吉林省长春市朝阳区建国路88号"),  # 2 candidates, right one second
        ("新华路100号", "北京市西城区新华路100号"),  # no division named: no candidate
        ("鼓楼区中山路1号", "江苏省 南京市 鼓楼区中山路1号"),  # 4 candidates, first one (spaces normalized)
    ])
    assert load("candidates").main(["--input", str(path), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["all"] == {"inputs": 4, "recall": 0.75, "top1": 0.5, "mean_candidates": 1.75, "share_0": 0.25,
                              "share_1": 0.25, "share_2_plus": 0.5, "max_candidates": 4}
    assert list(summary["by_input_class"]) == ["unique_county", "ambiguous_county", "no_admin_token"]
    assert summary["by_input_class"]["ambiguous_county"]["top1"] == 0.5
    assert summary["by_input_class"]["no_admin_token"]["recall"] == 0.0
    assert [miss["src"] for miss in summary["misses"]] == ["新华路100号"]
    assert summary["gazetteer"]["addr_per_s"] > 0


def test_candidates_bench_table_and_limit(tmp_path, capsys):
    path = write_pairs(tmp_path / "pairs.jsonl", [("朝阳区建国路88号", "北京市朝阳区建国路88号"),
                                                  ("新华路100号", "北京市西城区新华路100号")])
    assert load("candidates").main(["--input", str(path), "--limit", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"candidates for {path}"
    assert lines[3].split() == ["all", "1", "100.0%", "100.0%", "2.00", "0.0%", "0.0%", "100.0%", "2"]
    assert not any("not among the candidates" in line for line in lines)


def test_candidates_bench_names_a_bad_file(tmp_path, capsys):
    assert load("candidates").main(["--input", str(tmp_path / "missing.jsonl")]) == 2
    assert capsys.readouterr().err.strip() == f"error: {tmp_path / 'missing.jsonl'}: file not found"
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"src": "碑林区"}\n', encoding="utf-8")
    assert load("candidates").main(["--input", str(bad)]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"error: {bad}:1:") and "tgt" in error


def test_train_throughput_defaults_measure_what_training_does():
    from address_completion.training.config import DATA_DEFAULTS

    module = load("train_throughput")
    args = module.parse_args(["--peer-python", "python3"])
    assert args.widths == ["grouped"] and args.variants == ["default"] and args.loss == "answer"
    assert args.pad_to_multiple_of == DATA_DEFAULTS["pad_to_multiple_of"] and args.grounding == "candidates"
    assert args.rounds == 1 and args.threads >= 1 and not args.peer
    assert module.parse_args(["--peer"]).rounds == 3  # alternated repetitions whenever there is a comparison
    assert module.parse_args(["--widths", "varied,fixed"]).rounds == 3
    assert module.parse_args(["--threads", "3", "--rounds", "5"]).threads == 3


def test_train_throughput_arguments():
    module = load("train_throughput")
    args = module.parse_args(["--shapes", "0.5b", "--widths", "varied,fixed,grouped", "--pad-to-multiple-of", "16",
                              "--variants", "stock,rmsnorm_square+lora_rank_scale", "--loss", "both"])
    assert args.widths == ["varied", "fixed", "grouped"] and args.pad_to_multiple_of == 16
    assert [module.variant_patches(variant) for variant in args.variants] == [[], ["rmsnorm_square",
                                                                                 "lora_rank_scale"]]
    for bad in (["--widths", "ragged"], ["--variants", "stock,fast_norm"], ["--variants", "stock,"],
                ["--rounds", "0"], ["--shapes", "1b"], ["--steps", "0"], ["--pad-to-multiple-of", "0"],
                ["--threads", "0"], ["--loss", "prompt"], ["--grounding", "chains"],
                ["--variants", "default,default+ADDRESS_COMPLETION_MMAP_THRESHOLD=1MB"]):  # not a worker's traceback
        with pytest.raises(SystemExit):
            module.parse_args(bad)


DOCUMENTS = ["README.md", "configs/README.md",
             *sorted(f"docs/{path.name}" for path in (BENCH.parent / "docs").glob("*.md"))]


def bench_command_lines() -> list[tuple[str, str, str]]:
    """(where, bench name, arguments) of every `python bench/NAME.py ...` line in the documents and in each
    bench's own docstring; an inline command ends at its closing backtick."""
    texts = [(name, (BENCH.parent / name).read_text(encoding="utf-8")) for name in DOCUMENTS]
    texts += [(f"bench/{path.name}", path.read_text(encoding="utf-8").split('"""')[1])
              for path in sorted(BENCH.glob("*.py")) if path.read_text(encoding="utf-8").count('"""') >= 2]
    found = []
    for where, text in texts:
        for match in re.finditer(r"python3? bench/(\w+)\.py([^`\n]*)", text):
            found.append((where, match.group(1), match.group(2).split("#", 1)[0]))
    return found


def test_every_bench_command_in_the_docs_parses():
    """Every `python bench/X.py ...` line in README.md, configs/README.md, docs/*.md and the benches' docstrings is
    accepted by that bench's own parser (a typo there would only show on a long run)."""
    import shlex

    lines = bench_command_lines()
    benches = {name for _, name, _ in lines}
    assert {"train_throughput", "generate_throughput", "candidates", "real_model_learning"} <= benches, benches
    assert sum(name == "train_throughput" for _, name, _ in lines) >= 4
    modules = {name: load(name) for name in benches}
    for where, name, arguments in lines:
        try:
            modules[name].parse_args(shlex.split(arguments))
        except SystemExit as stop:
            raise AssertionError(f"{where}: python bench/{name}.py{arguments} is refused ({stop.code})") from None


@pytest.mark.slow
def test_train_throughput_smoke_without_the_peer(capsys):
    """One tiny step end to end in subprocesses; a peer interpreter without torch is skipped with one line."""
    import sys

    module = load("train_throughput")
    assert module.peer_missing(sys.executable + "-missing") == ["torch", "transformers", "peft"]
    code = module.main(["--shapes", "default", "--steps", "1", "--warmup", "0", "--batch-size", "2",
                        "--grounding", "none", "--peer", "--peer-python", sys.executable + "-missing", "--rounds", "1"])
    out = capsys.readouterr().out
    assert code == 0
    assert out.splitlines()[0].startswith("peer skipped: torch, transformers, peft not importable by")
    row = next(line.split() for line in out.splitlines() if line.startswith("paddle:default"))
    assert row[1:3] == ["grouped", "answer"] and float(row[3]) > 0 and row[4] == "(reference)"


def test_train_throughput_interleave_needs_two_patch_variants():
    module = load("train_throughput")
    assert module.parse_args(["--interleave", "--variants", "stock,default"]).interleave
    for bad in (["--interleave"], ["--interleave", "--variants", "stock,default", "--peer"],
                ["--interleave", "--variants", "stock,default+FLAGS_use_system_allocator=1"]):
        with pytest.raises(SystemExit):
            module.parse_args(bad)


@pytest.mark.slow
def test_train_throughput_interleaved_smoke(capsys):
    module = load("train_throughput")
    assert module.main(["--shapes", "default", "--steps", "2", "--warmup", "0", "--batch-size", "2", "--grounding",
                        "none", "--interleave", "--variants", "stock,lora_rank_scale"]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = {line.split()[0]: line.split() for line in lines if line.startswith(("stock ", "lora_rank_scale "))}
    assert rows["stock"][2] == "(reference)" and float(rows["lora_rank_scale"][1]) > 0
    assert float(rows["lora_rank_scale"][2]) > 0  # the paired ratio's median


def test_candidates_poi_arguments():
    module = load("candidates")
    args = module.parse_args(["--poi", "--sample", "50", "--seed", "3"])
    assert args.poi and args.sample == 50 and args.seed == 3
    for bad in (["--poi", "--split", "dev"], ["--poi", "--input", "a.jsonl"], ["--sample", "5"],
                ["--poi", "--sample", "0"], ["--poi", "--limit", "5"]):
        with pytest.raises(SystemExit):
            module.parse_args(bad)


def test_candidates_bench_on_a_sample_of_real_addresses(capsys):
    """--poi: the real POI addresses, each way of shortening measured, every miss classed."""
    module = load("candidates")
    assert module.main(["--poi", "--sample", "150", "--seed", "7", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["addresses"] == 150 and summary["sample_seed"] == 7
    assert list(summary["by_way"]) == ["drop_province", "drop_province_city", "county_short", "city_county_short"]
    for way, row in summary["by_way"].items():
        assert row["inputs"] + summary["not_applicable"][way] == 150
        assert row["share_0"] + row["share_1"] + row["share_2_plus"] == pytest.approx(1.0)
        misses = [miss for miss in summary["misses"] if miss["way"] == way]
        assert sum(summary["miss_classes"][way].values()) == len(misses) == round((1 - row["recall"]) * row["inputs"])
        assert row["top1"] <= row["recall"]
    # the first look of issue 22: dropping the province (or province and city) leaves the answer among the candidates
    assert summary["by_way"]["drop_province"]["recall"] > 0.95
    assert summary["all"]["inputs"] == sum(row["inputs"] for row in summary["by_way"].values())
    module.main(["--poi", "--sample", "150", "--seed", "7", "--misses", "3"])
    table = capsys.readouterr().out
    assert "36751 lines" in table and "county_short" in table and "no candidate" in table
