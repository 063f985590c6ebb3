"""Batched greedy generation on the default model + a random LoRA adapter (real Paddle, tiny model)."""

from __future__ import annotations

import pytest

from address_completion import DEFAULT_PROMPT_PREFIX
from address_completion.generate import (Completer, cut_at_stop, greedy_generate, left_padded_batch,
                                         length_sorted_batches, stop_token_ids)

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
    results = completer.complete_detailed(ADDRESSES[:2])
    assert all(item.completion_tokens <= MAX_NEW_TOKENS for item in results)
    assert all(item.finish_reason == "length" for item in results if item.completion_tokens == MAX_NEW_TOKENS)


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
