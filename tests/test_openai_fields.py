"""OpenAI's max_tokens / max_completion_tokens, stop and logprobs through the real server and the openai client."""

from __future__ import annotations

import pytest

from address_completion.inference.generate import Completer
from address_completion.inference.serve import ServerSettings, start_in_thread

openai = pytest.importorskip("openai")

ADDRESS, FULL = "海淀区中关村大街7号", "北京市海淀区中关村大街7号"
SERVER_TOKENS = 12


@pytest.fixture(scope="module")
def completer(default_model_dir, tmp_path_factory) -> Completer:
    """Free decoding of a model that learned one pair, so its free answer is a current address (the completer
    gives anything else back as an abstention, which is never cut)."""
    import json

    from address_completion.data import dataio
    from address_completion.training.train import train

    root = tmp_path_factory.mktemp("memorized")
    dataio.write_jsonl(root / "data" / "train.json", [{"src": ADDRESS, "tgt": FULL}] * 8)
    config = root / "run.json"
    config.write_text(json.dumps({
        "model_name_or_path": str(default_model_dir), "dataset_name_or_path": str(root / "data"),
        "output_dir": str(root / "run"), "per_device_train_batch_size": 8, "learning_rate": 1e-2, "warmup_steps": 0,
        "logging_steps": 10, "src_length": 64, "max_length": 96, "do_train": True, "lora": True, "lora_rank": 8,
        "max_steps": 40, "report_to": "none", "seed": 1}), encoding="utf-8")
    train(config, device="cpu")
    return Completer.load(str(default_model_dir), lora_path=str(root / "run"), max_new_tokens=SERVER_TOKENS)


@pytest.fixture(scope="module")
def full(completer):
    """The free answer with the server's own cap (computed before the server's worker owns the model)."""
    [answer] = completer.complete_detailed([ADDRESS])
    assert answer.text == FULL and not answer.abstained and answer.finish_reason == "stop"
    return answer


@pytest.fixture(scope="module")
def capped(completer, full):
    """The first 4 tokens of the answer: what a generation capped at 4 tokens produces (greedy decoding)."""
    from address_completion.data.prompt import decode_answer

    return decode_answer(completer.tokenizer, list(full.token_ids[:4]))


@pytest.fixture(scope="module")
def client(completer, full, capped):
    running = start_in_thread(completer, ServerSettings(port=0, model_name="tiny"))
    yield openai.OpenAI(base_url=running.url + "/v1", api_key="unused", max_retries=0, timeout=120)
    running.stop()


def ask(client, address=ADDRESS, **options):
    return client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": address}], **options)


def test_max_tokens_cuts_the_answer_as_a_shorter_generation_would(client, full, capped):
    assert full.completion_tokens > 4 and FULL.startswith(capped) and capped != FULL  # the cap has something to cut
    for option in ("max_tokens", "max_completion_tokens"):
        answer = ask(client, **{option: 4})
        assert answer.choices[0].message.content == capped
        assert answer.choices[0].finish_reason == "length"
        assert answer.usage.completion_tokens == 4
    both = ask(client, max_tokens=30, max_completion_tokens=4)  # the smaller of the two
    assert both.choices[0].message.content == capped
    roomy = ask(client, max_tokens=100)  # above the answer's length: the full answer, untouched
    assert roomy.choices[0].message.content == full.text
    assert roomy.choices[0].finish_reason == full.finish_reason
    assert roomy.usage.completion_tokens == full.completion_tokens


def test_stop_ends_the_answer_before_the_stop_string(client, full):
    answer = ask(client, stop=["no such text", "中关村"])
    assert answer.choices[0].message.content == "北京市海淀区"
    assert answer.choices[0].finish_reason == "stop"
    assert 0 < answer.usage.completion_tokens < full.completion_tokens
    unchanged = ask(client, stop="no such text")
    assert unchanged.choices[0].message.content == full.text
    assert unchanged.choices[0].finish_reason == full.finish_reason


@pytest.mark.parametrize("options, field", [
    ({"max_tokens": -5}, "max_tokens"), ({"max_tokens": 0}, "max_tokens"), ({"max_tokens": "lots"}, "max_tokens"),
    ({"max_tokens": True}, "max_tokens"), ({"max_tokens": 2.5}, "max_tokens"),
    ({"max_completion_tokens": -1}, "max_completion_tokens"),
    ({"stop": ""}, "stop"), ({"stop": [""]}, "stop"), ({"stop": 5}, "stop"), ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ({"logprobs": "yes"}, "logprobs"), ({"n": 2}, "n"),
])
def test_invalid_values_are_a_400_naming_the_field(client, options, field):
    with pytest.raises(openai.BadRequestError) as caught:
        ask(client, extra_body=options)
    assert caught.value.status_code == 400
    assert caught.value.body["param"] == field and field in caught.value.body["message"]


def test_logprobs_is_refused_never_silently_null(client):
    with pytest.raises(openai.BadRequestError) as caught:
        ask(client, logprobs=True)
    assert caught.value.body["param"] == "logprobs" and "not supported" in caught.value.body["message"]
    with pytest.raises(openai.BadRequestError) as caught:
        ask(client, top_logprobs=2)
    assert caught.value.body["param"] == "top_logprobs"
    plain = ask(client, logprobs=False)  # asking for none is fine
    assert plain.choices[0].logprobs is None


def test_constrained_answers_stay_whole_and_their_free_fallback_is_cut(completer):
    """A chosen candidate is a whole chain (as predict and evaluate answer locally); only generated text (the free
    fallback when the gazetteer has no candidate) is cut."""
    constrained = Completer(model=completer.model, tokenizer=completer.tokenizer, max_new_tokens=SERVER_TOKENS,
                            grounding="none", decoding="constrained")
    [fallback] = constrained.complete_detailed([ADDRESS[3:]])  # 中关村大街7号: no division, no candidate
    assert fallback.decoding == "free_fallback" and not fallback.abstained and fallback.completion_tokens > 2
    from address_completion.data.prompt import decode_answer

    fallback_capped = decode_answer(completer.tokenizer, list(fallback.token_ids[:2]))
    running = start_in_thread(constrained, ServerSettings(port=0, model_name="tiny"))
    try:
        client = openai.OpenAI(base_url=running.url + "/v1", api_key="unused", max_retries=0, timeout=120)
        for options in ({}, {"max_tokens": 2}, {"stop": "碑林"}):
            whole = ask(client, "碑林区扬子江南路467-6号", **options)
            assert whole.choices[0].message.content == "陕西省西安市碑林区扬子江南路467-6号", options
            assert whole.choices[0].finish_reason == "stop"
        cut = ask(client, ADDRESS[3:], max_tokens=2)
        assert cut.choices[0].message.content == fallback_capped and fallback_capped != fallback.text
        assert cut.choices[0].finish_reason == "length" and cut.usage.completion_tokens == 2
        assert cut.choices[0].model_extra["address_completion"]["decoding"] == "free_fallback"
    finally:
        running.stop()
