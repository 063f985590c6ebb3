"""split: determinism, deduplication, leakage-free grouping, ratios, overwrite protection, county holdout, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from address_completion import DEFAULT_PROMPT_PREFIX
from address_completion.cli import main
from address_completion.data.dataio import read_records, write_jsonl
from address_completion.errors import ConfigError, DataError, OutputExistsError
from address_completion.data.gazetteer import load_gazetteer
from address_completion.data.split import (SPLIT_NAMES, address_key, county_key, mask_digits, parse_ratios, split_file,
                                      split_pairs, street_key, validate_ratios)

# (province, city, county) — real divisions so the gazetteer can find them; 东莞 has no county level.
COUNTIES = [
    ("陕西省", "西安市", "碑林区"), ("陕西省", "宝鸡市", "扶风县"), ("北京市", "", "朝阳区"),
    ("浙江省", "杭州市", "西湖区"), ("四川省", "成都市", "武侯区"), ("广东省", "东莞市", ""),
    ("湖北省", "武汉市", "洪山区"), ("江苏省", "南京市", "鼓楼区"),
]
ROAD_HEADS = "长安建设人民解放和平光明幸福朝阳"
ROAD_TAILS = ["路", "街", "大道", "巷"]


def make_pairs(count: int) -> list[dict[str, str]]:
    """``count`` distinct pairs spread over COUNTIES; no two are near-duplicates (road names differ)."""
    pairs = []
    for index in range(count):
        province, city, county = COUNTIES[index % len(COUNTIES)]
        head = ROAD_HEADS[index % len(ROAD_HEADS)] + ROAD_HEADS[(index // len(ROAD_HEADS)) % len(ROAD_HEADS)]
        detail = f"{head}{ROAD_TAILS[index // 100 % len(ROAD_TAILS)]}{index % 97 + 1}号"
        short = (county or city) + detail
        pairs.append({"src": DEFAULT_PROMPT_PREFIX + short, "tgt": province + city + county + detail})
    return pairs


def write_pairs(path: Path, pairs: list[dict[str, str]]) -> Path:
    write_jsonl(path, pairs)
    return path


def file_bytes(folder: Path) -> dict[str, bytes]:
    return {name: (folder / f"{name}.json").read_bytes() for name in SPLIT_NAMES}


def normalized_targets(records) -> set[str]:
    return {address_key(record["tgt"]) for record in records}


def test_make_pairs_has_no_duplicates():
    result = split_pairs(make_pairs(300))
    assert (result.exact_duplicates, result.near_duplicates) == (0, 0)


# ---------------------------------------------------------------- determinism and sizes


def test_same_seed_gives_byte_identical_files(tmp_path):
    source = write_pairs(tmp_path / "pairs.jsonl", make_pairs(200))
    first = split_file(source, tmp_path / "a", seed=7)
    split_file(source, tmp_path / "b", seed=7)
    assert file_bytes(tmp_path / "a") == file_bytes(tmp_path / "b")
    assert first.counts() == {"train": 140, "dev": 30, "test": 30}
    written = {name: read_records(tmp_path / "a" / f"{name}.json").records for name in SPLIT_NAMES}
    assert written == first.splits()


def test_different_seed_gives_different_files(tmp_path):
    source = write_pairs(tmp_path / "pairs.jsonl", make_pairs(200))
    split_file(source, tmp_path / "a", seed=1)
    split_file(source, tmp_path / "b", seed=2)
    assert file_bytes(tmp_path / "a")["test"] != file_bytes(tmp_path / "b")["test"]


def test_splits_partition_the_unique_pairs():
    pairs = make_pairs(150)
    result = split_pairs(pairs, ratios=(0.8, 0.1, 0.1), seed=3)
    combined = result.train + result.dev + result.test
    assert sorted(map(json.dumps, combined)) == sorted(map(json.dumps, pairs))
    assert result.counts() == {"train": 120, "dev": 15, "test": 15}
    # Input order is kept inside each split.
    assert result.test == [pair for pair in pairs if pair in result.test]


def test_zero_ratio_splits_are_empty():
    result = split_pairs(make_pairs(20), ratios=(1, 0, 0))
    assert result.counts() == {"train": 20, "dev": 0, "test": 0}


# ---------------------------------------------------------------- leakage and duplicates


def test_no_normalized_target_in_two_splits():
    pairs = make_pairs(120)
    # Variants of one address: different input forms, full-width digits, spaces, letter case.
    base = "陕西省西安市碑林区扬子江南路467-6号A座"
    variants = [("碑林区扬子江南路467-6号A座", base), ("西安市碑林区扬子江南路467-6号A座", base),
                ("陕西省西安市碑林区扬子江南路４６７-６号Ａ座", "陕西省西安市碑林区扬子江南路４６７-６号Ａ座"),
                ("碑林区 扬子江南路 467-6号a座", "陕西省 西安市 碑林区 扬子江南路467-6号a座")]
    for index, (source, target) in enumerate(variants):
        pairs.insert(index * 30, {"src": source, "tgt": target})
    for seed in range(5):
        result = split_pairs(pairs, seed=seed)
        train, dev, test = (normalized_targets(records) for records in (result.train, result.dev, result.test))
        assert not (train & dev) and not (train & test) and not (dev & test)
        homes = [name for name, records in result.splits().items()
                 if address_key(base) in normalized_targets(records)]
        assert len(homes) == 1
        assert sum(address_key(record["tgt"]) == address_key(base)
                   for record in result.splits()[homes[0]]) == 4


def test_an_input_never_reappears_as_input_or_target_in_another_split():
    pairs = make_pairs(60)
    # The same input with two different labels (noisy data) must not straddle splits either.
    pairs += [{"src": "朝阳区建国路88号", "tgt": "北京市朝阳区建国路88号"},
              {"src": "朝阳区建国路88号", "tgt": "吉林省长春市朝阳区建国路88号"}]
    for seed in range(5):
        result = split_pairs(pairs, seed=seed)
        seen: dict[str, str] = {}
        for name, records in result.splits().items():
            for record in records:
                for text in (record["src"].removeprefix(DEFAULT_PROMPT_PREFIX), record["tgt"]):
                    assert seen.setdefault(address_key(text), name) == name


@pytest.mark.parametrize("address, key", [
    ("陕西省西安市碑林区扬子江南路467-6号", "陕西省西安市碑林区|扬子江南路"),
    ("北京市朝阳区建国路88号院3号楼", "北京市朝阳区|建国路"),
    ("陕西省宝鸡市扶风县法门镇美阳村3组", "陕西省宝鸡市扶风县|美阳村"),
    ("湖北省武汉市洪山区中山大道1号", "湖北省武汉市洪山区|中山大道"),
    ("陕西省西安市碑林区12号楼3单元", None),  # no street: only the address itself groups
    # numbered highways (POI data has many addresses on them: 147 of them spread over two splits before)
    ("陕西省宝鸡市渭滨区212省道古大散关遗址森林公园附近", "陕西省宝鸡市渭滨区|212省道"),
    ("新疆维吾尔自治区吐鲁番市高昌区312国道北侧", "新疆维吾尔自治区吐鲁番市高昌区|312国道"),
    ("湖南省郴州市资兴市东江街道129省道龙景峡谷", "湖南省郴州市资兴市|129省道"),
    ("河南省南阳市社旗县027县道", "河南省南阳市社旗县|027县道"),
    ("安徽省阜阳市颍上县X038乡道旁", "安徽省阜阳市颍上县|X038乡道"),
    ("这不是地址路1号", None),  # no county
])
def test_street_key(address, key):
    assert street_key(load_gazetteer().parse(address)) == key


def test_one_street_never_in_two_splits():
    """The same street of the same county (POI data has many addresses per street) stays in one split."""
    pairs = make_pairs(120)
    street = [{"src": f"碑林区建设路{number}号", "tgt": f"陕西省西安市碑林区建设路{number}号"} for number in (12, 40, 77)]
    street += [{"src": "西安市碑林区建设路5号院", "tgt": "陕西省西安市碑林区建设路5号院"}]
    elsewhere = {"src": "雁塔区建设路12号", "tgt": "陕西省西安市雁塔区建设路12号"}  # another county's 建设路
    pairs = pairs[:30] + street[:2] + pairs[30:90] + [elsewhere] + street[2:] + pairs[90:]
    homes_of_elsewhere = set()
    for seed in range(8):
        result = split_pairs(pairs, seed=seed)
        homes = {name for name, records in result.splits().items() for record in records
                 if record["tgt"].startswith("陕西省西安市碑林区建设路")}
        assert len(homes) == 1, (seed, homes)
        homes_of_elsewhere |= {name for name, records in result.splits().items() if elsewhere in records} - homes
        assert result.shared_streets >= 1 and "kept together by street" in result.summary()
    assert homes_of_elsewhere  # a street of another county is free to go elsewhere
    spread = [len({name for name, records in split_pairs(pairs, seed=seed, by_street=False).splits().items()
                   for record in records if record["tgt"].startswith("陕西省西安市碑林区建设路")})
              for seed in range(8)]
    assert max(spread) > 1  # without street groups they do spread: the grouping is what keeps them together


def test_normalization_and_masking():
    assert address_key(" 中国 陕西省 西安市\u3000碑林区４６７号Ａ座 ") == "陕西省西安市碑林区467号a座"
    assert address_key("扬子江南路467号") != address_key("扬子江南路12号")
    assert mask_digits("12栋3单元501室") == mask_digits("１２栋３单元５０１室") == mask_digits("7栋1单元2室")
    assert mask_digits("3#楼") != mask_digits("3楼")


def test_exact_and_near_duplicates_are_removed_keeping_the_first():
    first = {"src": DEFAULT_PROMPT_PREFIX + "碑林区扬子江南路467-6号", "tgt": "陕西省西安市碑林区扬子江南路467-6号"}
    pairs = [
        first,
        dict(first),  # exact duplicate
        {"src": "碑林区扬子江南路467-6号", "tgt": first["tgt"]},  # same input without the prefix
        {"src": "碑林区扬子江南路12-3号", "tgt": "陕西省西安市碑林区扬子江南路12-3号"},  # digits differ
        {"src": "碑林区扬子江南路４６-１号", "tgt": "陕西省西安市碑林区扬子江南路４６-１号"},  # full-width digits
        {"src": "西安市碑林区扬子江南路12-3号", "tgt": "陕西省西安市碑林区扬子江南路12-3号"},  # another input form: kept
        {"src": "碑林区扬子江北路12-3号", "tgt": "陕西省西安市碑林区扬子江北路12-3号"},  # another road: kept
    ]
    result = split_pairs(pairs, ratios=(1, 0, 0))
    assert (result.exact_duplicates, result.near_duplicates) == (2, 2)
    assert result.train == [pairs[0], pairs[5], pairs[6]]


# ---------------------------------------------------------------- ratios


@pytest.mark.parametrize("ratios, message", [
    ((0.5, 0.5), "three numbers"),
    ((0.6, 0.2, 0.1, 0.1), "three numbers"),
    ((0.8, 0.3, -0.1), "non-negative"),
    ((0.5, 0.3, 0.3), "sum to 1"),
    ((70, 15, 15), "sum to 1"),
    ((float("nan"), 0.5, 0.5), "non-negative"),
    (("a", 0.5, 0.5), "numbers"),
])
def test_bad_ratios_are_refused(ratios, message):
    with pytest.raises(ConfigError, match=message):
        validate_ratios(ratios)
    with pytest.raises(ConfigError, match=message):
        split_pairs(make_pairs(5), ratios=ratios)


@pytest.mark.parametrize("text, message", [
    ("0.8,0.1", "three numbers"), ("x,0.5,0.5", "'x' is not a number"), ("70,15,15", "sum to 1"), ("", "not a number"),
])
def test_parse_ratios_errors(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_ratios(text)


def test_parse_ratios():
    assert parse_ratios(" 0.8, 0.1 ,0.1") == (0.8, 0.1, 0.1)
    assert parse_ratios("1,0,0") == (1.0, 0.0, 0.0)


@pytest.mark.parametrize("fraction", [-0.1, 1.0, 2, float("nan")])
def test_bad_holdout_fraction(fraction):
    with pytest.raises(ConfigError, match="holdout-counties"):
        split_pairs(make_pairs(10), holdout_counties=fraction)


def test_holdout_needs_dev_or_test():
    with pytest.raises(ConfigError, match="ratios are both 0"):
        split_pairs(make_pairs(10), ratios=(1, 0, 0), holdout_counties=0.2)


# ---------------------------------------------------------------- files


def test_refuses_to_overwrite_without_force(tmp_path):
    source = write_pairs(tmp_path / "pairs.jsonl", make_pairs(40))
    output = tmp_path / "out"
    split_file(source, output, seed=1)
    before = file_bytes(output)
    with pytest.raises(OutputExistsError, match="--force"):
        split_file(source, output, seed=2)
    assert file_bytes(output) == before
    split_file(source, output, seed=2, force=True)
    assert file_bytes(output) != before


def test_one_existing_split_file_is_enough_to_refuse(tmp_path):
    source = write_pairs(tmp_path / "pairs.jsonl", make_pairs(10))
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "dev.json").write_text("precious\n", encoding="utf-8")
    with pytest.raises(OutputExistsError, match="dev.json"):
        split_file(source, tmp_path / "out")
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == ["dev.json"]


def test_output_must_be_a_folder(tmp_path):
    source = write_pairs(tmp_path / "pairs.jsonl", make_pairs(10))
    with pytest.raises(ConfigError, match="is a file"):
        split_file(source, source)


def test_output_below_a_file_is_refused_in_one_line(tmp_path, capsys):
    source = write_pairs(tmp_path / "pairs.jsonl", make_pairs(10))
    (tmp_path / "notes.txt").write_text("x\n", encoding="utf-8")
    assert main(["split", str(source), "--output", str(tmp_path / "notes.txt" / "data")]) == 2
    error = capsys.readouterr().err
    assert "notes.txt is a file, so no folder can be made below it" in error and "Traceback" not in error


def test_an_unwritable_output_folder_is_refused_before_the_work(tmp_path, monkeypatch):
    import os

    source = write_pairs(tmp_path / "pairs.jsonl", make_pairs(10))
    output = tmp_path / "out"
    output.mkdir()
    access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != output and access(path, mode))  # root can write
    with pytest.raises(ConfigError, match=r"--output .*out: the folder .*out is not writable"):
        split_file(source, output)  # was a PermissionError traceback from atomic_files' temporary file
    assert list(output.iterdir()) == []


def test_an_empty_output_is_refused_not_taken_for_the_current_folder(tmp_path, monkeypatch, capsys):
    source = write_pairs(tmp_path / "pairs.jsonl", make_pairs(10))
    monkeypatch.chdir(tmp_path)
    assert main(["split", str(source), "--output", ""]) == 2  # wrote train/dev/test.json into the current folder
    assert capsys.readouterr().err.strip() == ("error: --output is empty (an unset variable?); give the folder for "
                                               "train.json, dev.json, test.json")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["pairs.jsonl"]


def test_bad_input_line_is_named_and_can_be_skipped(tmp_path):
    lines = [json.dumps(pair, ensure_ascii=False) for pair in make_pairs(10)]
    lines[6] = '{"src": "碑林区", "tgt": '
    source = tmp_path / "pairs.jsonl"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(DataError) as caught:
        split_file(source, tmp_path / "out")
    assert caught.value.line == 7 and f"{source}:7:" in str(caught.value)
    assert not (tmp_path / "out").exists()
    result = split_file(source, tmp_path / "out", skip_bad=True)
    assert result.skipped == 1
    assert sum(result.counts().values()) == 9


def test_reads_csv_and_json_array(tmp_path):
    pairs = make_pairs(20)
    csv_path = tmp_path / "pairs.csv"
    csv_path.write_text("src,tgt\n" + "".join(f"{p['src']},{p['tgt']}\n" for p in pairs), encoding="utf-8")
    array_path = tmp_path / "pairs.json"
    array_path.write_text(json.dumps(pairs, ensure_ascii=False, indent=1), encoding="utf-8")
    from_csv = split_file(csv_path, tmp_path / "a", seed=5)
    from_array = split_file(array_path, tmp_path / "b", seed=5)
    assert from_csv.splits() == from_array.splits()
    assert file_bytes(tmp_path / "a") == file_bytes(tmp_path / "b")


def test_empty_input_is_an_error(tmp_path):
    source = tmp_path / "pairs.jsonl"
    source.write_text("\n", encoding="utf-8")
    with pytest.raises(DataError, match="no usable pairs"):
        split_file(source, tmp_path / "out")


# ---------------------------------------------------------------- county holdout


def fake_county(address: str):
    for province, city, county in COUNTIES:
        if address.startswith(province + city + county):
            return province + city + county
    return None


def test_holdout_keeps_whole_counties_out_of_train():
    pairs = make_pairs(240) + [{"src": "某地某路1号", "tgt": "火星基地某路1号"}]
    result = split_pairs(pairs, seed=4, holdout_counties=0.25, county_of=fake_county)
    assert len(result.held_out_counties) == 2  # 25% of 8
    assert result.unknown_county == 1
    held = set(result.held_out_counties)
    assert not {fake_county(record["tgt"]) for record in result.train} & held
    evaluation_counties = {fake_county(record["tgt"]) for record in result.dev + result.test}
    assert evaluation_counties >= held
    assert evaluation_counties - held - {None}  # seen counties are evaluated too
    assert result.held_out_pairs == 60
    # Non-held-out pairs are split by the ratios; held-out ones come on top of dev/test.
    assert len(result.train) == round(0.7 * (len(pairs) - 60))
    assert sum(result.counts().values()) == len(pairs)
    assert "held out of train: 2 counties, 60 pairs" in result.summary()


def test_holdout_needs_two_counties():
    pairs = [pair for pair in make_pairs(80) if pair["tgt"].startswith("陕西省西安市")]
    with pytest.raises(DataError, match="at least 2 counties"):
        split_pairs(pairs, holdout_counties=0.5, county_of=fake_county)


def test_holdout_with_the_gazetteer(tmp_path):
    gazetteer = load_gazetteer()
    source = write_pairs(tmp_path / "pairs.jsonl", make_pairs(160))
    result = split_file(source, tmp_path / "out", seed=11, holdout_counties=0.3)
    assert result.unknown_county == 0
    assert result.held_out_counties == ["陕西省宝鸡市扶风县", "陕西省西安市碑林区"] and result.held_out_pairs == 40
    assert "广东省东莞市" in {county_key(gazetteer.parse(pair["tgt"])) for pair in make_pairs(8)}
    train_counties = {county_key(gazetteer.parse(record["tgt"])) for record in result.train}
    assert not train_counties & set(result.held_out_counties)
    evaluation_counties = {county_key(gazetteer.parse(record["tgt"])) for record in result.dev + result.test}
    assert evaluation_counties >= set(result.held_out_counties)


# ---------------------------------------------------------------- CLI


def test_cli_splits_and_prints_counts(tmp_path, capsys):
    source = write_pairs(tmp_path / "pairs.jsonl", make_pairs(100) + make_pairs(3))
    output = tmp_path / "data"
    code = main(["split", str(source), "--output", str(output), "--ratios", "0.8,0.1,0.1", "--seed", "3"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "train: 80 pairs" in printed and "dev: 10 pairs" in printed and "test: 10 pairs" in printed
    assert "removed duplicates: 3 exact" in printed
    assert "skipped bad records: 0" in printed
    assert sorted(path.name for path in output.iterdir()) == ["dev.json", "test.json", "train.json"]
    assert main(["split", str(source), "--output", str(output)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["split", str(source), "--output", str(output), "--force"]) == 0


def test_cli_reports_user_errors_in_one_line(tmp_path, capsys):
    source = tmp_path / "pairs.jsonl"
    source.write_text('{"src": "a", "tgt": "b"}\n{broken\n', encoding="utf-8")
    assert main(["split", str(source), "-o", str(tmp_path / "out"), "--ratios", "0.5,0.5"]) == 2
    assert "three numbers" in capsys.readouterr().err
    assert main(["split", str(source), "-o", str(tmp_path / "out")]) == 2
    assert f"{source}:2: broken JSON" in capsys.readouterr().err
    assert main(["split", str(source), "-o", str(tmp_path / "out"), "--skip-bad", "--ratios", "1,0,0"]) == 0
    assert "skipped bad records: 1" in capsys.readouterr().out


def test_too_few_pairs_for_the_ratios_is_an_error_not_an_empty_split(tmp_path, capsys):
    from address_completion.cli import main

    source = tmp_path / "one.jsonl"
    source.write_text('{"src": "碑林区扬子江南路467-6号", "tgt": "陕西省西安市碑林区扬子江南路467-6号"}\n', encoding="utf-8")
    assert main(["split", str(source), "--output", str(tmp_path / "data")]) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: {source}: 1 usable pair(s) leave dev and test empty with --ratios 0.7,0.15,0.15; give more pairs, "
        "or ratio 0 for a split you do not want")
    assert not (tmp_path / "data").exists()
    assert main(["split", str(source), "--output", str(tmp_path / "data"), "--ratios", "1,0,0"]) == 0  # asked for
    assert (tmp_path / "data" / "dev.json").read_text(encoding="utf-8") == ""


def test_a_folder_in_place_of_a_split_file_fails_before_any_file_is_written(tmp_path, capsys):
    from address_completion.cli import main

    source = tmp_path / "pairs.jsonl"
    source.write_text("".join(json.dumps({"src": f"碑林区扬子江南路{n}号", "tgt": f"陕西省西安市碑林区扬子江南路{n}号"},
                                         ensure_ascii=False) + "\n" for n in range(40)), encoding="utf-8")
    out = tmp_path / "data"
    (out / "train.json").mkdir(parents=True)
    (out / "dev.json").write_text("earlier\n", encoding="utf-8")
    assert main(["split", str(source), "--output", str(out), "--force"]) == 2
    assert capsys.readouterr().err.strip() == (f"error: --output {out}: {out / 'train.json'} is a folder; remove it "
                                               "or choose another --output")
    assert (out / "dev.json").read_text(encoding="utf-8") == "earlier\n" and not (out / "test.json").exists()
