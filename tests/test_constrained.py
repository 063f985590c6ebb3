"""Grounded prompts and constrained decoding (generate.score_answers / Completer with decoding="constrained")
on the default model + a random LoRA adapter, checked against log-probabilities summed by hand."""

from __future__ import annotations

import math

import pytest

from address_completion import DEFAULT_PROMPT_PREFIX
from address_completion.inference.generate import Completer, candidate_probabilities, padding_token_id, score_answers
from address_completion.data.prompt import (address_candidates, answer_ids, candidate_chains, encode_example,
                                            render_prompt, user_message)

AMBIGUOUS = "朝阳区建国路88号"  # 北京市朝阳区 or 吉林省长春市朝阳区
UNIQUE = "碑林区扬子江南路467-6号"
NO_DIVISION = "扬子江南路467-6号"


@pytest.fixture(scope="module")
def constrained(default_model_dir, lora_adapter_dir) -> Completer:
    return Completer.load(str(default_model_dir), lora_path=str(lora_adapter_dir), max_new_tokens=6,
                          grounding="candidates", decoding="constrained")


def reference_log_prob(model, prompt_ids, answer) -> float:
    """Full-sequence forward without cache, log-softmax at every answer position, summed by hand."""
    import numpy as np
    import paddle

    ids = list(prompt_ids) + list(answer)
    with paddle.no_grad():
        logits = model(input_ids=paddle.to_tensor([ids]), use_cache=False, return_dict=True).logits
    total = 0.0
    for k, token in enumerate(answer):
        row = logits[0, len(prompt_ids) - 1 + k].astype("float64").numpy()
        total += row[token] - (row.max() + np.log(np.exp(row - row.max()).sum()))
    return float(total)


def test_grounded_message_format():
    assert user_message(AMBIGUOUS) == DEFAULT_PROMPT_PREFIX + AMBIGUOUS
    assert user_message(AMBIGUOUS, grounding="candidates") == (
        DEFAULT_PROMPT_PREFIX + AMBIGUOUS + "\n候选: 北京市朝阳区 | 吉林省长春市朝阳区")
    assert user_message(NO_DIVISION, grounding="candidates").endswith("\n候选: 无")
    with pytest.raises(ValueError, match="grounding must be one of none, candidates"):
        user_message(AMBIGUOUS, grounding="yes")


def test_prompt_order_is_canonical_never_the_gazetteers_ranking():
    found = address_candidates(AMBIGUOUS)
    canonical = user_message(AMBIGUOUS, grounding="candidates")
    assert canonical.endswith("\n候选: 北京市朝阳区 | 吉林省长春市朝阳区")  # 110105 before 220104
    # the ranking reversed (a prior that preferred 长春) lists the chains the same way
    assert user_message(AMBIGUOUS, grounding="candidates", candidates=found[::-1]) == canonical
    gulou = address_candidates("鼓楼区黄河南路1号")
    assert gulou[0].chain.text() == "河南省开封市鼓楼区"  # the gazetteer's ranking (黄河南路 reads as 河南) ...
    assert candidate_chains(gulou) == ["江苏省南京市鼓楼区", "江苏省徐州市鼓楼区", "福建省福州市鼓楼区",
                                       "河南省开封市鼓楼区"]  # ... is not the prompt's: by code, 320106 first
    assert user_message("鼓楼区黄河南路1号", grounding="candidates").endswith(
        "候选: 江苏省南京市鼓楼区 | 江苏省徐州市鼓楼区 | 福建省福州市鼓楼区 | 河南省开封市鼓楼区")
    many = address_candidates("城关镇人民路1号")
    assert candidate_chains(many[::-1]) == candidate_chains(many)
    assert user_message(AMBIGUOUS, grounding="candidates", candidates=[]).endswith("\n候选: 无")


def test_training_order_is_a_seeded_shuffle_independent_of_the_answer():
    import random

    many = address_candidates("城关镇人民路1号")
    orders = [tuple(candidate_chains(many, random.Random(f"42/{index}"))) for index in range(200)]
    assert orders[:5] == [tuple(candidate_chains(many, random.Random(f"42/{index}"))) for index in range(5)]
    assert all(sorted(order) == sorted(candidate_chains(many)) for order in orders)
    first = candidate_chains(many)[0]
    # each chain is listed first about equally often (8 chains: 1/8 each), whatever the gazetteer prefers
    share = sum(order[0] == first for order in orders) / len(orders)
    assert 0.05 < share < 0.25, share
    assert len({order[0] for order in orders}) == len(many)


def test_grounding_none_is_exactly_the_plain_prompt(qwen_tokenizer):
    plain = qwen_tokenizer.apply_chat_template([{"role": "user", "content": DEFAULT_PROMPT_PREFIX + UNIQUE}],
                                               tokenize=False, add_generation_prompt=True)
    assert render_prompt(qwen_tokenizer, UNIQUE) == plain
    grounded = render_prompt(qwen_tokenizer, UNIQUE, grounding="candidates")
    assert "候选: 陕西省西安市碑林区" in grounded and grounded != plain
    prompt_ids, answer = encode_example(qwen_tokenizer, UNIQUE, "陕西省西安市碑林区扬子江南路467-6号",
                                        grounding="candidates")
    assert qwen_tokenizer.decode(prompt_ids) == grounded and answer[-1] == qwen_tokenizer.eos_token_id


def test_scores_equal_log_probs_summed_by_hand(constrained):
    tokenizer, model = constrained.tokenizer, constrained.model
    prompt_ids = tokenizer(constrained.prompt_for(AMBIGUOUS), add_special_tokens=False)["input_ids"]
    answers = [answer_ids(tokenizer, c.text) for c in address_candidates(AMBIGUOUS)]
    short_prompt = tokenizer(constrained.prompt_for(UNIQUE), add_special_tokens=False)["input_ids"]
    pairs = [(prompt_ids, answers[0]), (prompt_ids, answers[1]), (short_prompt, answer_ids(tokenizer, "陕西省"))]
    batched = score_answers(model, pairs, pad_id=padding_token_id(tokenizer))
    one_prompt_at_a_time = score_answers(model, pairs, pad_id=padding_token_id(tokenizer), batch_prompts=1)
    by_hand = [reference_log_prob(model, prompt, answer) for prompt, answer in pairs]
    assert batched == pytest.approx(by_hand, abs=1e-3)
    assert one_prompt_at_a_time == pytest.approx(batched, abs=1e-4)  # padding changes nothing
    assert all(score < 0 for score in batched) and batched[0] != batched[1]
    eos_only = [(short_prompt, [tokenizer.eos_token_id])]  # nothing to feed after the prompt
    assert score_answers(model, eos_only, pad_id=padding_token_id(tokenizer)) == pytest.approx(
        [reference_log_prob(model, *eos_only[0])], abs=1e-3)


def test_candidate_probabilities_are_a_softmax():
    assert candidate_probabilities([math.log(0.2), math.log(0.6)]) == pytest.approx([0.25, 0.75])
    assert candidate_probabilities([-1000.0, -1000.0]) == pytest.approx([0.5, 0.5])


def test_constrained_chooses_the_best_scored_candidate(constrained):
    completion = constrained.complete_detailed([AMBIGUOUS])[0]
    texts = [text for text, _ in completion.candidates]
    assert sorted(texts) == sorted(["北京市朝阳区建国路88号", "吉林省长春市朝阳区建国路88号"])
    probabilities = [p for _, p in completion.candidates]
    assert sum(probabilities) == pytest.approx(1.0) and probabilities == sorted(probabilities, reverse=True)
    # the choice is the model's: recompute both scores by hand and check it picked the higher one
    prompt_ids = constrained.tokenizer(constrained.prompt_for(AMBIGUOUS), add_special_tokens=False)["input_ids"]
    by_hand = {text: reference_log_prob(constrained.model, prompt_ids, answer_ids(constrained.tokenizer, text))
               for text in texts}
    assert completion.text == max(by_hand, key=by_hand.get)
    assert completion.decoding == "constrained" and completion.probability == probabilities[0]
    assert not completion.abstained and completion.finish_reason == "stop"


def test_single_candidate_and_fallback(constrained):
    unique, none = constrained.complete_detailed([UNIQUE, NO_DIVISION])
    assert unique.text == "陕西省西安市碑林区扬子江南路467-6号" and unique.probability == 1.0
    assert unique.candidates == (("陕西省西安市碑林区扬子江南路467-6号", 1.0),)
    assert none.decoding == "free_fallback" and none.candidates == () and none.probability is None


@pytest.mark.parametrize("address, expected", [  # issue 22's former divisions (gazetteer/history.py)
    ("柳州地区忻城县城关镇建设路1号", "广西壮族自治区来宾市忻城县城关镇建设路1号"),
    ("杭州市余杭区南苑街道迎宾路1号", "浙江省杭州市临平区南苑街道迎宾路1号"),
    ("江干区下沙街道福城路9号", "浙江省杭州市钱塘区下沙街道福城路9号"),
    ("旬阳县城关镇1号", "陕西省安康市旬阳市城关镇1号"),
])
def test_former_divisions_complete_to_the_current_chain(constrained, address, expected):
    completion, = constrained.complete_detailed([address])
    assert completion.text == expected and completion.decoding == "constrained" and completion.probability == 1.0


def test_a_cut_candidate_list_says_so(constrained):
    from address_completion.data.gazetteer import MAX_CANDIDATES

    many, two = constrained.complete_detailed(["城关镇人民路1号", AMBIGUOUS])
    assert len(many.candidates) == MAX_CANDIDATES and many.more_candidates and many.details()["more_candidates"]
    assert len(two.candidates) == 2 and not two.more_candidates


def test_batch_equals_one_at_a_time(constrained):
    addresses = [AMBIGUOUS, NO_DIVISION, UNIQUE, "城关镇人民路1号"]
    alone = [constrained.complete_detailed([address])[0] for address in addresses]
    batched = constrained.complete_detailed(addresses, batch_size=3)
    assert [c.text for c in batched] == [c.text for c in alone]
    assert [c.decoding for c in batched] == ["constrained", "free_fallback", "constrained", "constrained"]
    for together, single in zip(batched, alone):  # scores agree to float rounding (other rows change shapes)
        assert [t for t, _ in together.candidates] == [t for t, _ in single.candidates]
        assert [p for _, p in together.candidates] == pytest.approx([p for _, p in single.candidates], abs=1e-6)


def test_min_confidence_abstains_with_the_input_unchanged(constrained):
    best = constrained.complete_detailed([AMBIGUOUS])[0].probability
    assert 0.5 <= best < 1.0
    cautious = Completer(model=constrained.model, tokenizer=constrained.tokenizer, max_new_tokens=6,
                         grounding="candidates", decoding="constrained", min_confidence=(best + 1.0) / 2)
    ambiguous, unique, none = cautious.complete_detailed([DEFAULT_PROMPT_PREFIX + AMBIGUOUS, UNIQUE, NO_DIVISION])
    assert ambiguous.abstained and ambiguous.text == AMBIGUOUS and ambiguous.probability == best
    assert not unique.abstained and unique.probability == 1.0
    # no candidate: nothing vouches for a generated chain, so a cautious completer does not generate one
    assert none.abstained and none.text == NO_DIVISION and none.completion_tokens == 0
    lenient = Completer(model=constrained.model, tokenizer=constrained.tokenizer, grounding="candidates",
                        decoding="constrained", min_confidence=best)  # "below P" abstains: equal to P answers
    assert not lenient.complete_detailed([AMBIGUOUS])[0].abstained


@pytest.mark.parametrize("kwargs, message", [
    ({"decoding": "beam"}, "decoding must be one of free, constrained"),
    ({"grounding": "gazetteer"}, "grounding must be one of none, candidates"),
    ({"min_confidence": 1.5}, "min_confidence must be between 0 and 1"),
])
def test_bad_settings_fail_before_loading(kwargs, message):
    from address_completion.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        Completer.load("/nonexistent/model", **kwargs)


# issue 22 items 3-5: every named input, completed with constrained decoding (one candidate each: probability 1)
ISSUE_22_SCAN = {
    "山西西安市雁塔区小寨东路1号": "陕西省西安市雁塔区小寨东路1号",
    "广东省南昌市南山区粤海街道科技园路1号": "广东省深圳市南山区粤海街道科技园路1号",
    "广东省杭州市西湖区文三路1号": "浙江省杭州市西湖区文三路1号",
    "湖北省省直辖县级行政区划天门市竟陵街道东湖路2号": "湖北省天门市竟陵街道东湖路2号",
    "新疆维吾尔自治区自治区直辖县级行政区划五家渠市青湖路街道长征西街8号": "新疆维吾尔自治区五家渠市青湖路街道长征西街8号",
    "鄞州站前路1号": "浙江省宁波市鄞州区站前路1号",
    "江宁开发区胜太路1号": "江苏省南京市江宁区开发区胜太路1号",
    "鄞州市心路1号": "浙江省宁波市鄞州区市心路1号",
    "旬阳县城关镇1号": "陕西省安康市旬阳市城关镇1号",
    # found by a fresh-user attack: a town the written city lacks is detail, a word across a name (市区) too
    "西安市城关镇1号": "陕西省西安市城关镇1号",
    "西安市玉泉镇1号": "陕西省西安市玉泉镇1号",
    "甘肃省嘉峪关市玉泉镇1号": "甘肃省嘉峪关市玉泉镇1号",
    "龙亭区开封市区1号": "河南省开封市龙亭区开封市区1号",
    "象山区桂林市区环城西一路117号": "广西壮族自治区桂林市象山区桂林市区环城西一路117号",
    "东莞市东莞市中心大道南2号": "广东省东莞市东莞市中心大道南2号",
    "蚌山区(蚌埠市定安小学西南侧约100米)": "安徽省蚌埠市蚌山区(蚌埠市定安小学西南侧约100米)",
}


def test_issue_22_conflicts_placeholders_and_short_names_complete_as_expected(constrained):
    completions = constrained.complete_detailed(list(ISSUE_22_SCAN))
    assert [c.text for c in completions] == list(ISSUE_22_SCAN.values())
    assert all(c.decoding == "constrained" and not c.abstained for c in completions)
