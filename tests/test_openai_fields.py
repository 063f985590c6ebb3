"""OpenAI's max_tokens / max_completion_tokens, stop and logprobs through the real server and the openai client."""

from __future__ import annotations

import pytest

from address_completion.inference.generate import Completer
from address_completion.inference.protocol import ServerSettings
from address_completion.inference.server import start_in_thread

openai = pytest.importorskip("openai")

ADDRESS = "海淀区中关村大街7号"
SERVER_TOKENS = 12


@pytest.fixture(scope="module")
def completer(taught_model_dir) -> Completer:
    """Free decoding of a model taught to answer ADDRESS right (conftest.TAUGHT_PLAIN_ANSWERS): a random model's
    free answers are no address, so the answer check would return the input, which nothing cuts."""
    return Completer.load(str(taught_model_dir), max_new_tokens=SERVER_TOKENS)


@pytest.fixture(scope="module")
def full(completer):
    """The free answer with the server's own cap (computed before the server's worker owns the model)."""
    answer = completer.complete_detailed([ADDRESS])[0]
    assert answer.text == "北京市海淀区中关村大街7号" and not answer.abstained  # the premise
    return answer


@pytest.fixture(scope="module")
def capped(completer):
    """What a generation capped at 4 tokens gives (the text itself: cut, it is no whole address, which the
    answer check would abstain): what max_tokens=4 must return."""
    from types import SimpleNamespace

    from address_completion.data.prompt import decode_answer
    from address_completion.inference.generate import encode_prompts, generate_token_ids

    prompt_ids = encode_prompts(completer.tokenizer, [completer.prompt_for(ADDRESS)])
    ids = generate_token_ids(completer.model, completer.tokenizer, prompt_ids, max_new_tokens=4,
                             stop_ids=completer.stop_ids)[0]
    return SimpleNamespace(text=decode_answer(completer.tokenizer, ids))


@pytest.fixture(scope="module")
def client(completer, full, capped):
    running = start_in_thread(completer, ServerSettings(port=0, model_name="tiny"))
    yield openai.OpenAI(base_url=running.url + "/v1", api_key="unused", max_retries=0, timeout=120)
    running.stop()


def ask(client, address=ADDRESS, **options):
    return client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": address}], **options)


@pytest.mark.slow
def test_max_tokens_cuts_the_answer_as_a_shorter_generation_would(client, full, capped):
    assert full.completion_tokens > 4 and full.text != capped.text  # the cap has something to cut
    for option in ("max_tokens", "max_completion_tokens"):
        answer = ask(client, **{option: 4})
        assert answer.choices[0].message.content == capped.text
        assert answer.choices[0].finish_reason == "length"
        assert answer.usage.completion_tokens == 4
    both = ask(client, max_tokens=30, max_completion_tokens=4)  # the smaller of the two
    assert both.choices[0].message.content == capped.text
    roomy = ask(client, max_tokens=100)  # above the answer's length: the full answer, untouched
    assert roomy.choices[0].message.content == full.text
    assert roomy.choices[0].finish_reason == full.finish_reason
    assert roomy.usage.completion_tokens == full.completion_tokens


@pytest.mark.slow
def test_stop_ends_the_answer_before_the_stop_string(client, full):
    stop = full.text[3:5]
    assert len(stop) == 2 and full.text.find(stop) >= 1
    answer = ask(client, stop=["no such text", stop])
    assert answer.choices[0].message.content == full.text[:full.text.find(stop)].rstrip()
    assert answer.choices[0].finish_reason == "stop"
    assert 0 < answer.usage.completion_tokens < full.completion_tokens
    unchanged = ask(client, stop="no such text")
    assert unchanged.choices[0].message.content == full.text
    assert unchanged.choices[0].finish_reason == full.finish_reason


@pytest.mark.slow
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


@pytest.mark.slow
def test_logprobs_is_refused_never_silently_null(client):
    with pytest.raises(openai.BadRequestError) as caught:
        ask(client, logprobs=True)
    assert caught.value.body["param"] == "logprobs" and "not supported" in caught.value.body["message"]
    with pytest.raises(openai.BadRequestError) as caught:
        ask(client, top_logprobs=2)
    assert caught.value.body["param"] == "top_logprobs"
    plain = ask(client, logprobs=False)  # asking for none is fine
    assert plain.choices[0].logprobs is None


def test_constrained_answers_stay_whole(completer):
    """An answer chosen among the gazetteer's candidates is a whole chain, not generated text: max_tokens and stop
    leave it whole, as --max_new_tokens does and as predict and evaluate answer locally (evaluate's openai system
    sends its max_new_tokens as max_tokens). Generated text — free decoding and the free fallback — is cut (the
    tests above)."""
    constrained = Completer(model=completer.model, tokenizer=completer.tokenizer, max_new_tokens=SERVER_TOKENS,
                            grounding="candidates", decoding="constrained")
    running = start_in_thread(constrained, ServerSettings(port=0, model_name="tiny"))
    try:
        client = openai.OpenAI(base_url=running.url + "/v1", api_key="unused", max_retries=0, timeout=120)
        for options in ({}, {"max_tokens": 2}, {"max_completion_tokens": 1}, {"stop": "碑林"}):
            whole = ask(client, "碑林区扬子江南路467-6号", **options)
            assert whole.choices[0].message.content == "陕西省西安市碑林区扬子江南路467-6号", options
            assert whole.choices[0].finish_reason == "stop", options
            assert whole.choices[0].model_extra["address_completion"]["decoding"] == "constrained"
    finally:
        running.stop()
