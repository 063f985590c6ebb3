"""Scoring on hand-written cases with the real gazetteer."""

import math

import pytest

from address_completion.data.gazetteer import load_gazetteer
from address_completion.evaluation.metrics import (INPUT_CLASSES, LEVELS, ItemScore, Rate, ScoredItem, by_input_class,
                                        classify_input, exact_match, latency_summary, normalize_text, percentile,
                                        quality, score_item, summarize, wilson_interval, worst_errors)

PREFIX = "补齐五级行政地址: "


@pytest.fixture(scope="module")
def gazetteer():
    return load_gazetteer()


def score(gazetteer, source, prediction, target):
    return score_item(PREFIX + source, prediction, target, gazetteer)


def wrong_levels(result: ItemScore) -> list[str]:
    return [level for level in LEVELS if not result.levels[level]]


# ---------------------------------------------------------------- normalization and exact match


def test_normalize_folds_width_whitespace_and_invisible_marks():
    assert normalize_text("陕西省 西安市\u3000碑林区　扬子江南路４６７－６号\u200b\n") == "陕西省西安市碑林区扬子江南路467-6号"
    assert normalize_text("ＡＢＣ栋１２室") == "ABC栋12室"
    assert normalize_text(None) == "" and normalize_text("") == ""


def test_exact_match_after_normalization_only():
    assert exact_match("陕西省西安市碑林区扬子江南路４６７－６号 ", "陕西省西安市碑林区扬子江南路467-6号")
    assert not exact_match("陕西省西安市碑林区扬子江南路467-7号", "陕西省西安市碑林区扬子江南路467-6号")
    assert not exact_match("", "陕西省西安市碑林区扬子江南路467-6号")


# ---------------------------------------------------------------- per item


def test_exact_answer_scores_everything(gazetteer):
    result = score(gazetteer, "碑林区扬子江南路467-6号", "陕西省西安市碑林区扬子江南路467-6号",
                   "陕西省西安市碑林区扬子江南路467-6号")
    assert result.exact and not wrong_levels(result) and result.detail_kept and not result.invalid_chain


def test_wrong_county_keeps_upper_levels(gazetteer):
    result = score(gazetteer, "碑林区扬子江南路467-6号", "陕西省西安市雁塔区扬子江南路467-6号",
                   "陕西省西安市碑林区扬子江南路467-6号")
    assert not result.exact
    assert wrong_levels(result) == ["county", "town"]  # town: the right division's town level is not reached
    assert result.detail_kept and not result.invalid_chain


def test_municipality_city_level_is_correct_when_both_have_none(gazetteer):
    result = score(gazetteer, "朝阳区建国路88号", "北京市朝阳区建国路88号", "北京市朝阳区建国路88号")
    assert result.exact and result.levels["city"]
    # Writing the municipality twice is not the expected text, but every level is right.
    doubled = score(gazetteer, "朝阳区建国路88号", "北京市北京市朝阳区建国路88号", "北京市朝阳区建国路88号")
    assert not doubled.exact and not wrong_levels(doubled) and doubled.detail_kept
    assert not doubled.invalid_chain


def test_ambiguous_county_resolved_to_the_wrong_division(gazetteer):
    # 朝阳区 exists in Beijing and in Changchun: the same name under the wrong province is a wrong county.
    result = score(gazetteer, "朝阳区建国路88号", "吉林省长春市朝阳区建国路88号", "北京市朝阳区建国路88号")
    assert wrong_levels(result) == ["province", "city", "county", "town"]
    assert result.detail_kept and not result.invalid_chain


def test_renamed_division_counts_as_its_current_name(gazetteer):
    result = score(gazetteer, "襄城区檀溪路1号", "湖北省襄樊市襄城区檀溪路1号", "湖北省襄阳市襄城区檀溪路1号")
    assert not result.exact and not wrong_levels(result) and result.detail_kept
    merged = score(gazetteer, "江干区xx路1号", "浙江省杭州市江干区xx路1号", "浙江省杭州市上城区xx路1号")
    assert not wrong_levels(merged)


def test_hallucinated_chain_is_invalid(gazetteer):
    result = score(gazetteer, "碑林区扬子江南路1号", "陕西省杭州市碑林区扬子江南路1号", "陕西省西安市碑林区扬子江南路1号")
    assert result.invalid_chain
    assert "city" in wrong_levels(result) and result.levels["province"]
    assert result.detail_kept


def test_expected_answer_vouches_for_its_own_chain(gazetteer):
    # 余杭区仁和镇: 仁和镇 became 仁和街道 (2019); an answer equal to an expected address naming it is valid.
    target = "浙江省杭州市余杭区仁和镇三星路17号"
    same = score(gazetteer, "余杭区仁和镇三星路17号", target, target)
    assert same.exact and not same.invalid_chain and same.detail_kept and not wrong_levels(same)
    # 长青乡 is in 蚌埠 (and 黑龙江), never in 余杭: a chain the gazetteer rejects, named by the expected address
    stale = "浙江省杭州市余杭区长青乡三星路17号"
    assert not gazetteer.parse(stale).valid_chain
    echoed = score(gazetteer, "余杭区长青乡三星路17号", stale, stale)
    assert echoed.exact and not echoed.invalid_chain
    # … but another answer with a chain neither the gazetteer nor the expected address vouches for is invalid
    other = score(gazetteer, "余杭区长青乡三星路17号", "浙江省杭州市西湖区长青乡三星路17号", stale)
    assert other.invalid_chain and not other.exact


def test_a_non_existent_county_is_not_credited(gazetteer):
    # There is no 玉环区: 玉环 is 玉环市 (a county-level city), and 玉环区 must not be read as it.
    result = score(gazetteer, "台州市玉环区xx路1号", "浙江省台州市玉环区xx路1号", "浙江省台州市玉环市xx路1号")
    assert wrong_levels(result) == ["county", "town"] and not result.exact
    assert result.levels["city"] and not result.invalid_chain


def test_town_first_with_county_and_town_restated_keeps_detail(gazetteer):
    target = "浙江省湖州市吴兴区织里镇织纺路731号"
    result = score(gazetteer, "浙江省 织里镇 吴兴区织里镇织纺路731号", target, target)
    assert result.exact and result.detail_kept and not result.invalid_chain and not wrong_levels(result)


def test_an_exact_answer_to_an_input_the_parser_cannot_read_keeps_its_detail(gazetteer):
    # 上嗨 is a typo for 上海: the parser reads no division in the input, but the detail is the label's
    target = "上海市杨浦区四平路街道商业中大街87号朝亭嘉园7号楼6单元303"
    result = score(gazetteer, "上嗨杨浦四平路街道商业中大街87号朝亭嘉园7号楼6单元303", target, target)
    assert result.exact and result.detail_kept
    lost = score(gazetteer, "上嗨杨浦四平路街道商业中大街87号", "上海市杨浦区四平路街道商业中大街", target)
    assert not lost.detail_kept


def test_abstention_is_never_exact_nor_an_invalid_chain(gazetteer):
    target = "陕西省西安市碑林区扬子江南路1号"
    kept = score_item(PREFIX + target, target, target, gazetteer, abstained=True)
    assert kept.abstained and not kept.exact and not wrong_levels(kept)  # levels: the text a caller gets
    wild = score_item("碑林区扬子江南路1号", "陕西省杭州市碑林区扬子江南路1号", target, gazetteer, abstained=True)
    assert not wild.invalid_chain and not wild.exact


def test_changed_detail_is_not_kept(gazetteer):
    result = score(gazetteer, "碑林区扬子江南路467-6号", "陕西省西安市碑林区扬子江南路467号",
                   "陕西省西安市碑林区扬子江南路467-6号")
    assert not result.detail_kept and not wrong_levels(result) and not result.exact


def test_town_first_input_and_dropped_town(gazetteer):
    target = "陕西省宝鸡市扶风县法门镇美阳村"
    assert score(gazetteer, "法门镇美阳村", target, target).exact
    dropped = score(gazetteer, "法门镇美阳村", "陕西省宝鸡市扶风县美阳村", target)
    assert wrong_levels(dropped) == ["town"] and dropped.detail_kept


def test_levels_the_answer_does_not_write_are_wrong(gazetteer):
    # The gazetteer could infer 陕西省宝鸡市扶风县 from the unique 法门镇; the answer still did not write them.
    unchanged = score(gazetteer, "法门镇美阳村", "法门镇美阳村", "陕西省宝鸡市扶风县法门镇美阳村")
    assert wrong_levels(unchanged) == list(LEVELS) and unchanged.detail_kept
    no_city = score(gazetteer, "碑林区扬子江南路1号", "陕西省碑林区扬子江南路1号", "陕西省西安市碑林区扬子江南路1号")
    assert wrong_levels(no_city) == ["city", "county", "town"]
    short = score(gazetteer, "碑林区扬子江南路1号", "陕西西安碑林区扬子江南路1号", "陕西省西安市碑林区扬子江南路1号")
    assert not short.exact and not wrong_levels(short)  # short names still name the right divisions


def test_town_level_correct_when_neither_names_a_town(gazetteer):
    result = score(gazetteer, "碑林区扬子江南路1号", "陕西省西安市碑林区扬子江南路1号", "陕西省西安市碑林区扬子江南路1号")
    assert result.levels["town"]


def test_empty_or_non_address_prediction(gazetteer):
    empty = score(gazetteer, "碑林区扬子江南路1号", "", "陕西省西安市碑林区扬子江南路1号")
    assert not empty.exact and not empty.detail_kept and not empty.invalid_chain
    assert wrong_levels(empty) == list(LEVELS)
    chatter = score(gazetteer, "碑林区扬子江南路1号", "好的", "陕西省西安市碑林区扬子江南路1号")
    assert not chatter.invalid_chain and not chatter.detail_kept


def test_full_width_prediction_is_exact(gazetteer):
    result = score(gazetteer, "碑林区扬子江南路４６７－６号", "陕西省西安市碑林区扬子江南路４６７－６号",
                   "陕西省西安市碑林区扬子江南路467-6号")
    assert result.exact and result.detail_kept


def test_input_classes(gazetteer):
    assert classify_input("碑林区扬子江南路467-6号", gazetteer) == "unique_county"
    assert classify_input("陕西省西安市碑林区扬子江南路467-6号", gazetteer) == "already_full"
    assert classify_input("法门镇美阳村", gazetteer) == "town_first"
    assert classify_input("扬子江南路467-6号", gazetteer) == "no_admin_token"
    assert classify_input("北京朝阳区建国路88号", gazetteer) == "ambiguous_county"
    # county and town found (仁和镇 is now 仁和街道; 长青乡 is not in 余杭 at all): unique-county inputs
    assert classify_input("余杭区仁和镇三星路17号", gazetteer) == "unique_county"
    assert classify_input("杭州市余杭区长青乡三星路17号", gazetteer) == "unique_county"
    assert classify_input("浙江省杭州市余杭区长青乡三星路17号", gazetteer) == "already_full"
    assert classify_input("朝阳区长青乡1号", gazetteer) == "ambiguous_county"
    assert classify_input("滨江新区桃园新城26号楼2单元", gazetteer) == "no_admin_token"
    assert set(INPUT_CLASSES) == {"unique_county", "ambiguous_county", "town_first", "no_admin_token",
                                  "already_full"}


# ---------------------------------------------------------------- aggregates


def test_wilson_interval_known_values():
    low, high = wilson_interval(5, 10)
    assert math.isclose(low, 0.2366, abs_tol=1e-4) and math.isclose(high, 0.7634, abs_tol=1e-4)
    assert wilson_interval(0, 10)[0] == 0.0 and math.isclose(wilson_interval(0, 10)[1], 0.2775, abs_tol=1e-4)
    assert wilson_interval(10, 10)[1] == 1.0 and math.isclose(wilson_interval(10, 10)[0], 0.7225, abs_tol=1e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError):
        wilson_interval(11, 10)


def test_rate_and_percentile():
    rate = Rate.of([True, True, False, True])
    assert (rate.count, rate.total, rate.value) == (3, 4, 0.75) and rate.low < 0.75 < rate.high
    assert Rate.of([]).to_dict()["value"] == 0.0
    assert percentile([4.0, 1.0, 3.0, 2.0], 0.5) == 2.5 and percentile([1.0], 0.95) == 1.0


def test_latency_summary_ignores_missing_values():
    summary = latency_summary([0.1, None, 0.3])
    assert summary["measured"] == 2 and math.isclose(summary["mean_s"], 0.2)
    assert math.isclose(summary["throughput_per_s"], 5.0)
    assert latency_summary([None])["throughput_per_s"] is None


def make_item(index, exact, levels_ok=4, invalid=False, detail=True, input_class="unique_county", latency=0.01,
              abstained=False):
    levels = {level: position < levels_ok for position, level in enumerate(LEVELS)}
    return ScoredItem(index=index, source=f"in{index}", target=f"t{index}", prediction=f"p{index}",
                      score=ItemScore(exact, levels, detail, invalid, input_class, abstained), latency_s=latency)


def test_worst_errors_rank_invalid_chain_then_high_levels():
    items = [make_item(0, True), make_item(1, False, levels_ok=3), make_item(2, False, levels_ok=0),
             make_item(3, False, levels_ok=1, invalid=True), make_item(4, False, detail=False)]
    worst = worst_errors(items, 3)
    assert [error["index"] for error in worst] == [3, 2, 1]
    assert worst[0]["invalid_chain"] and worst[1]["wrong_levels"] == list(LEVELS)
    assert worst_errors(items, 0) == []


def test_coverage_and_accuracy_when_answered():
    items = [make_item(0, True), make_item(1, False), make_item(2, False, abstained=True),
             make_item(3, False, abstained=True, input_class="town_first")]
    overall = quality([item.score for item in items])
    assert overall["exact"]["count"] == 1 and overall["exact"]["total"] == 4
    assert (overall["coverage"]["count"], overall["coverage"]["total"]) == (2, 4)
    assert (overall["answered_exact"]["count"], overall["answered_exact"]["total"]) == (1, 2)
    assert overall["coverage"]["ci95"] == list(wilson_interval(2, 4))
    groups = by_input_class([item.score for item in items])
    assert groups["town_first"]["coverage"]["count"] == 0 and groups["town_first"]["answered_exact"]["total"] == 0
    worst = worst_errors(items, 3)
    assert [error["index"] for error in worst] == [1, 2, 3] and worst[1]["abstained"]  # wrong answers first


def test_quality_by_class_and_summary():
    items = [make_item(0, True), make_item(1, False, levels_ok=2, input_class="town_first"),
             make_item(2, True, input_class="already_full")]
    groups = by_input_class([item.score for item in items])
    assert list(groups) == ["unique_county", "town_first", "already_full"]  # INPUT_CLASSES order
    assert groups["town_first"]["exact"]["count"] == 0 and groups["town_first"]["n"] == 1
    overall = quality([item.score for item in items])
    assert overall["exact"]["count"] == 2 and overall["levels"]["county"]["count"] == 2
    summary = summarize(items, worst=5)
    assert summary["n"] == 3 and len(summary["worst_errors"]) == 1
    assert math.isclose(summary["latency"]["throughput_per_s"], 100.0)


def test_model_choices_count_where_the_model_decided(gazetteer):
    from address_completion.evaluation.metrics import ScoredItem, model_choices
    from address_completion.evaluation.report import choices_lines

    def item(candidates, exact, decoding="constrained"):
        target = "北京市朝阳区建国路88号"
        score = score_item(PREFIX + "朝阳区建国路88号", target if exact else "吉林省长春市朝阳区建国路88号", target,
                           gazetteer)
        return ScoredItem(0, "朝阳区建国路88号", target, "", score,
                          extras={"candidates": [{"text": t, "probability": 0.5} for t in candidates],
                                  "decoding": decoding})

    items = [item(["a", "b"], True), item(["a", "b"], False), item(["a"], True), item([], False, "free_fallback")]
    choices = model_choices(items)
    assert (choices["items"], choices["chosen"], choices["free_fallback"]) == (4, 2, 1)
    assert (choices["exact_when_chosen"]["count"], choices["exact_when_chosen"]["total"]) == (1, 2)
    assert model_choices([ScoredItem(0, "x", "y", "y", items[0].score)]) is None  # rules, endpoints
    free = ScoredItem(0, "x", "y", "y", items[0].score, extras={"decoding": "free", "candidates": []})
    assert model_choices([free]) is None
    report = {"systems": [{"name": "trained", "kind": "paddle", "status": "ok", "metrics": {"model_choices": choices}}]}
    assert "trained: the model chose among ≥ 2 candidates for 2 of 4 items" in "\n".join(choices_lines(report))


@pytest.mark.parametrize("target, folded", [
    ("陕西省西安市碑林区_扬子江南路1号", "陕西省西安市碑林区扬子江南路1号"),
    ("陕西省西安市碑林区陕西省西安市碑林区扬子江南路1号", "陕西省西安市碑林区扬子江南路1号"),
    ("陕西省西安市碑林区 (扬子江南路1号)", "陕西省西安市碑林区(扬子江南路1号)"),
])
def test_detail_kept_follows_the_detail_setting(gazetteer, target, folded):
    """verbatim (default): a folded answer lost what the user wrote after the names (a `_`, a repeated run);
    clean: the folded rest is all that counts. The verbatim answer keeps its detail in both."""
    source = PREFIX + target[len("陕西省西安市"):]
    lost = score_item(source, folded, target, gazetteer)
    if normalize_text(folded) != normalize_text(target):
        assert not lost.exact and not lost.detail_kept
        assert score_item(source, folded, target, gazetteer, detail="clean").detail_kept
    for detail in ("verbatim", "clean"):
        kept = score_item(source, target, target, gazetteer, detail=detail)
        assert kept.exact and kept.detail_kept


def test_verbatim_detail_kept_compares_as_exact_match_does(gazetteer):
    """Full-width digits and spaces are no lost detail (normalize_text), as for exact match."""
    result = score_item(PREFIX + "碑林区扬子江南路１号", "陕西省西安市碑林区扬子江南路1号", "陕西省西安市碑林区扬子江南路１号",
                        gazetteer)
    assert result.exact and result.detail_kept
    wrong_street = score_item(PREFIX + "碑林区扬子江南路1号", "陕西省西安市碑林区长安路1号", "陕西省西安市碑林区扬子江南路1号",
                              gazetteer)
    assert not wrong_street.detail_kept and wrong_street.levels["county"]
