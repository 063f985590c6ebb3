"""The HTTP server over real sockets on 127.0.0.1: good requests, every refusal, batching, shutdown."""

from __future__ import annotations

import json
import signal
import socket
import threading
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from address_completion import DEFAULT_PROMPT_PREFIX
from address_completion.inference.generate import Completer
from address_completion.inference.protocol import ServerSettings
from address_completion.inference.server import start_in_thread

API_KEY = "test-key"
MAX_NEW_TOKENS = 6
ADDRESSES = [f"海淀区中关村大街{number}号" for number in range(25)] + [f"碑林区扬子江南路{number}号" for number in range(25)]


@pytest.fixture(scope="module")
def completer(default_model_dir, lora_adapter_dir) -> Completer:
    return Completer.load(str(default_model_dir), lora_path=str(lora_adapter_dir), max_new_tokens=MAX_NEW_TOKENS)


@pytest.fixture(scope="module")
def detailed(completer) -> dict:
    """predict's answers with finish reason and token counts (computed before the server shares the model with
    its worker thread)."""
    return dict(zip(ADDRESSES, completer.complete_detailed(ADDRESSES, batch_size=8)))


@pytest.fixture(scope="module")
def expected(detailed) -> dict[str, str]:
    return {address: completion.text for address, completion in detailed.items()}


@pytest.fixture(scope="module")
def server(completer, expected):
    settings = ServerSettings(port=0, api_key=API_KEY, model_name="tiny", max_batch_size=8, batch_wait_ms=50,
                              max_addresses=4, max_input_chars=40)
    running = start_in_thread(completer, settings)
    yield running
    running.stop()


def call(base_url, path, body=None, *, key=API_KEY, raw=None, method=None, details=False):
    """(status, parsed JSON) of one request (/v1/complete's "details" dropped unless ``details``)."""
    data = raw if raw is not None else (None if body is None else json.dumps(body, ensure_ascii=False).encode())
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    request = urllib.request.Request(base_url + path, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            payload = json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())
    if path == "/v1/complete" and set(payload) == {"results", "details"} and not details:
        assert len(payload["details"]) == len(payload["results"])
        payload = {"results": payload["results"]}  # how each was made: checked in test_constrained_server
    return response.status, payload


def chat(address, **extra):
    return {"model": "tiny", "messages": [{"role": "system", "content": "ignored"},
                                          {"role": "user", "content": address}], **extra}


# ---------------------------------------------------------------- good requests


@pytest.mark.slow
def test_health_and_models(server):
    assert call(server.url, "/health", key=None) == (200, {"status": "ok", "model": "tiny"})
    status, body = call(server.url, "/v1/models")
    assert status == 200 and body["object"] == "list" and [item["id"] for item in body["data"]] == ["tiny"]


@pytest.mark.slow
def test_complete_endpoint(server, expected):
    addresses = ADDRESSES[:3]
    assert call(server.url, "/v1/complete", {"addresses": addresses}) == (200, {"results": [expected[a] for a in addresses]})
    status, body = call(server.url, "/v1/complete", {"addresses": []})  # one rule for an empty request (issue 23)
    assert status == 422 and body["error"]["param"] == "addresses"


@pytest.mark.slow
def test_chat_completions_endpoint(server, expected, detailed):
    status, body = call(server.url, "/v1/chat/completions", chat(DEFAULT_PROMPT_PREFIX + ADDRESSES[0]))
    assert status == 200
    assert body["object"] == "chat.completion" and body["model"] == "tiny" and body["id"].startswith("chatcmpl-")
    [choice] = body["choices"]
    assert choice["index"] == 0 and choice["message"] == {"role": "assistant", "content": expected[ADDRESSES[0]]}
    known = detailed[ADDRESSES[0]]
    assert choice["finish_reason"] == known.finish_reason
    assert body["usage"] == {"prompt_tokens": known.prompt_tokens, "completion_tokens": known.completion_tokens,
                             "total_tokens": known.prompt_tokens + known.completion_tokens}


@pytest.mark.slow
def test_chat_accepts_content_parts(server, expected):
    parts = [{"type": "text", "text": ADDRESSES[1][:3]}, {"type": "text", "text": ADDRESSES[1][3:]}]
    status, body = call(server.url, "/v1/chat/completions", {"messages": [{"role": "user", "content": parts}]})
    assert status == 200 and body["choices"][0]["message"]["content"] == expected[ADDRESSES[1]]


@pytest.mark.slow
def test_openai_client(server, expected):
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=server.url + "/v1", api_key=API_KEY, max_retries=0)
    response = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": ADDRESSES[2]}])
    assert response.choices[0].message.content == expected[ADDRESSES[2]]
    assert [model.id for model in client.models.list()] == ["tiny"]
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=server.url + "/v1", api_key="wrong", max_retries=0).models.list()


@pytest.mark.slow
def test_stream_true_answers_with_openai_server_sent_events(server, expected, detailed):
    body = json.dumps(chat(ADDRESSES[3], stream=True, stream_options={"include_usage": True}),
                      ensure_ascii=False).encode()
    request = urllib.request.Request(server.url + "/v1/chat/completions", data=body,
                                     headers={"Authorization": f"Bearer {API_KEY}"})
    with urllib.request.urlopen(request, timeout=120) as response:
        assert response.headers["Content-Type"].startswith("text/event-stream")
        events = [event for event in response.read().decode("utf-8").split("\n\n") if event]
    assert all(event.startswith("data: ") for event in events) and events[-1] == "data: [DONE]"
    chunks = [json.loads(event[len("data: "):]) for event in events[:-1]]
    assert {chunk["object"] for chunk in chunks} == {"chat.completion.chunk"}
    assert len({chunk["id"] for chunk in chunks}) == 1
    deltas = [chunk["choices"][0]["delta"] for chunk in chunks if chunk["choices"]]
    assert deltas[0]["role"] == "assistant"
    assert "".join(delta.get("content", "") for delta in deltas) == expected[ADDRESSES[3]]
    finishing = [chunk for chunk in chunks if chunk["choices"] and chunk["choices"][0]["finish_reason"]]
    known = detailed[ADDRESSES[3]]
    assert len(finishing) == 1 and finishing[0]["choices"][0]["finish_reason"] == known.finish_reason
    assert chunks[-1]["choices"] == []  # stream_options.include_usage: a last chunk with no choices
    assert chunks[-1]["usage"] == {"prompt_tokens": known.prompt_tokens, "completion_tokens": known.completion_tokens,
                                   "total_tokens": known.prompt_tokens + known.completion_tokens}


@pytest.mark.slow
def test_openai_client_streaming(server, expected, detailed):
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=server.url + "/v1", api_key=API_KEY, max_retries=0)
    stream = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": ADDRESSES[4]}],
                                            stream=True)
    chunks = list(stream)
    assert "".join(chunk.choices[0].delta.content or "" for chunk in chunks) == expected[ADDRESSES[4]]
    assert chunks[-1].choices[0].finish_reason == detailed[ADDRESSES[4]].finish_reason


@pytest.mark.slow
def test_openapi_page_and_schema(server):
    with urllib.request.urlopen(server.url + "/docs", timeout=60) as response:  # no API key needed
        assert response.status == 200 and "swagger" in response.read().decode().lower()
    with urllib.request.urlopen(server.url + "/openapi.json", timeout=60) as response:
        schema = json.loads(response.read())
    assert {"/v1/chat/completions", "/v1/complete", "/v1/models", "/health"} <= set(schema["paths"])
    request_schema = schema["components"]["schemas"]["ChatCompletionRequest"]
    assert "messages" in request_schema["required"]
    assert {"type": "boolean"} in request_schema["properties"]["stream"]["anyOf"]


# ---------------------------------------------------------------- refusals (the server keeps serving)


@pytest.mark.slow
@pytest.mark.parametrize("path, body, raw, key, status, words", [
    ("/v1/complete", None, b'{"addresses": [', API_KEY, 400, "broken JSON"),
    ("/v1/chat/completions", None, b"[" * 5000 + b"]" * 5000, API_KEY, 400,
     "broken JSON: nested deeper than Python's JSON parser can follow"),  # was a RecursionError: 500
    ("/v1/complete", None, b"\xff\xfe", API_KEY, 400, "UTF-8"),
    ("/v1/chat/completions", chat("海淀区", stream="yes"), None, API_KEY, 422, "'stream'"),
    ("/v1/chat/completions", chat("海淀区", stream=1), None, API_KEY, 422, "'stream'"),
    ("/v1/chat/completions", chat("海淀区", n=2), None, API_KEY, 400, "n=1"),
    ("/v1/chat/completions", chat("   "), None, API_KEY, 422, "messages[1].content is empty"),
    ("/v1/chat/completions", chat("补齐五级行政地址: 【】"), None, API_KEY, 422, "messages[1].content has no letter or digit"),
    ("/v1/complete", {"addresses": ["海淀区", "[]"]}, None, API_KEY, 422, "addresses[1] has no letter or digit"),
    ("/v1/complete", {"addresses": ["补齐五级行政地址:"]}, None, API_KEY, 422,
     "addresses[0] is the prompt prefix alone: nothing to complete"),  # predict's rule (address_check.py)
    ("/v1/complete", {"addresses": ["海淀区"]}, None, None, 401, "API key"),
    ("/v1/complete", {"addresses": ["海淀区"]}, None, "wrong", 401, "API key"),
    ("/v1/chat/completions", chat("海淀区"), None, None, 401, "API key"),
    ("/v1/models", None, None, "wrong", 401, "API key"),
    ("/v1/nowhere", {"addresses": []}, None, API_KEY, 404, "unknown path"),
    ("/v1/complete", {"addresses": ["a"] * 5}, None, API_KEY, 413, "--max-addresses"),
    ("/v1/complete", {"addresses": ["海" * 41]}, None, API_KEY, 413, "limit is 40"),
    ("/v1/chat/completions", chat("海" * 41), None, API_KEY, 413, "--max-input-chars"),
    ("/v1/complete", {"address": "海淀区"}, None, API_KEY, 422, "'addresses'"),
    ("/v1/complete", {"addresses": "海淀区"}, None, API_KEY, 422, "list"),
    ("/v1/complete", {"addresses": ["海淀区", 7]}, None, API_KEY, 422, "addresses[1]"),
    ("/v1/complete", [1, 2], None, API_KEY, 422, "JSON object"),
    ("/v1/chat/completions", {"model": "tiny"}, None, API_KEY, 422, "'messages'"),
    ("/v1/chat/completions", {"messages": [{"role": "system", "content": "x"}]}, None, API_KEY, 422, "user message"),
    ("/v1/chat/completions", {"messages": [{"role": "user"}]}, None, API_KEY, 422, "messages[0]"),
])
def test_bad_requests_get_openai_errors(server, expected, path, body, raw, key, status, words):
    got_status, payload = call(server.url, path, body, key=key, raw=raw)
    assert got_status == status
    assert set(payload) == {"error"} and set(payload["error"]) == {"message", "type", "param", "code"}
    assert words in payload["error"]["message"]
    assert call(server.url, "/v1/complete", {"addresses": [ADDRESSES[0]]}) == (200, {"results": [expected[ADDRESSES[0]]]})


@pytest.mark.slow
def test_constrained_server_reports_how_each_answer_was_made(completer):
    constrained = Completer(model=completer.model, tokenizer=completer.tokenizer, max_new_tokens=MAX_NEW_TOKENS,
                            grounding="candidates", decoding="constrained")
    running = start_in_thread(constrained, ServerSettings(port=0, model_name="tiny"))
    try:
        status, body = call(running.url, "/v1/complete", {"addresses": ["碑林区扬子江南路1号", "扬子江南路1号"]},
                            key=None, details=True)
        assert status == 200 and body["results"][0] == "陕西省西安市碑林区扬子江南路1号"
        assert body["details"][0] == {"decoding": "constrained", "probability": 1.0, "abstained": False,
                                      "reason": None, "more_candidates": False,
                                      "candidates": [{"text": "陕西省西安市碑林区扬子江南路1号", "probability": 1.0}]}
        assert body["details"][1]["decoding"] == "free_fallback" and body["details"][1]["candidates"] == []
        status, reply = call(running.url, "/v1/chat/completions", chat("朝阳区建国路88号"), key=None)
        choice = reply["choices"][0]
        extra = choice["address_completion"]
        assert status == 200 and extra["decoding"] == "constrained" and len(extra["candidates"]) == 2
        assert choice["message"]["content"] == extra["candidates"][0]["text"]
        assert set(choice) == {"index", "message", "logprobs", "finish_reason", "address_completion"}
        from openai import OpenAI  # the README's way to read the extra field

        client = OpenAI(base_url=running.url + "/v1", api_key="unused", max_retries=0, timeout=120)
        answer = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "碑林区1号"}])
        assert answer.choices[0].model_extra["address_completion"]["candidates"] == [
            {"text": "陕西省西安市碑林区1号", "probability": 1.0}]
    finally:
        running.stop()


def test_an_empty_free_answer_is_an_abstention_not_a_success(default_model_dir):
    """The untrained default model stops at once on street-first input (free decoding, as for no candidate):
    the reply is the input unchanged, marked abstained, in the plain endpoint and the chat reply."""
    untrained = Completer.load(str(default_model_dir), max_new_tokens=MAX_NEW_TOKENS)
    address = "扬子江南路碑林区1号"
    running = start_in_thread(untrained, ServerSettings(port=0, model_name="tiny"))
    try:
        status, body = call(running.url, "/v1/complete", {"addresses": [address]}, key=None, details=True)
        assert status == 200 and body["results"] == [address]
        assert (body["details"][0]["decoding"], body["details"][0]["abstained"]) == ("free", True)
        status, reply = call(running.url, "/v1/chat/completions", chat(address), key=None)
        choice = reply["choices"][0]
        assert status == 200 and choice["message"]["content"] == address
        assert choice["address_completion"]["abstained"] is True
    finally:
        running.stop()


@pytest.mark.slow
def test_a_free_answer_that_is_no_current_address_is_abstained(taught_model_dir):
    """The taught model's fallback answers 无 and 陕西省杭州市碑林区1号 (no such chain): the server returns the
    input unchanged, abstained with the reason, in the plain endpoint, the chat reply and the stream."""
    from conftest import TAUGHT_ANSWERS

    taught = Completer.load(str(taught_model_dir), grounding="candidates", decoding="constrained", max_new_tokens=16)
    addresses = list(TAUGHT_ANSWERS)
    running = start_in_thread(taught, ServerSettings(port=0, model_name="tiny"))
    try:
        status, body = call(running.url, "/v1/complete", {"addresses": addresses}, key=None, details=True)
        assert status == 200 and body["results"] == addresses
        assert [(d["decoding"], d["abstained"], d["reason"]) for d in body["details"]] == [
            ("free_fallback", True, "not an address: 无, the prompt's no-candidate placeholder"),
            ("free_fallback", True,
             "not a current chain: the answer does not start with a current division chain written in full")]
        for address in addresses:
            status, reply = call(running.url, "/v1/chat/completions", chat(address), key=None)
            choice = reply["choices"][0]
            assert status == 200 and choice["message"]["content"] == address
            assert choice["address_completion"]["abstained"] is True and choice["address_completion"]["reason"]
    finally:
        running.stop()


@pytest.mark.slow
def test_detail_request_option(completer):
    """A request may name its detail setting; the server's --detail (verbatim by default) applies otherwise."""
    constrained = Completer(model=completer.model, tokenizer=completer.tokenizer, max_new_tokens=MAX_NEW_TOKENS,
                            grounding="candidates", decoding="constrained")
    running = start_in_thread(constrained, ServerSettings(port=0, model_name="tiny"))
    addresses = ["碑林区_扬子江南路1号", "陕西省西安市碑林区陕西省西安市碑林区扬子江南路1号"]
    try:
        assert call(running.url, "/v1/complete", {"addresses": addresses}, key=None) == (200, {"results": [
            "陕西省西安市碑林区_扬子江南路1号", "陕西省西安市碑林区陕西省西安市碑林区扬子江南路1号"]})
        assert call(running.url, "/v1/complete", {"addresses": addresses, "detail": "clean"}, key=None) == (
            200, {"results": ["陕西省西安市碑林区扬子江南路1号"] * 2})
        status, reply = call(running.url, "/v1/chat/completions", {**chat(addresses[0]), "detail": "clean"}, key=None)
        assert status == 200 and reply["choices"][0]["message"]["content"] == "陕西省西安市碑林区扬子江南路1号"
        status, reply = call(running.url, "/v1/complete", {"addresses": addresses, "detail": "folded"}, key=None)
        assert status == 422 and "detail" in reply["error"]["message"]
    finally:
        running.stop()


@pytest.mark.slow
def test_stream_given_as_a_string_names_the_field(server):
    status, payload = call(server.url, "/v1/chat/completions", chat("海淀区", stream="true"))
    assert status == 422 and payload["error"]["param"] == "stream" and "boolean" in payload["error"]["message"]


@pytest.mark.slow
def test_body_over_the_limit_is_413(completer):
    small = start_in_thread(completer, ServerSettings(port=0, model_name="tiny", max_body_bytes=100))
    try:
        status, payload = call(small.url, "/v1/complete", {"addresses": ["海淀区中关村大街" * 10]}, key=None)
        assert status == 413 and "limit of 100 bytes" in payload["error"]["message"]
        assert call(small.url, "/health", key=None)[0] == 200
    finally:
        small.stop()


@pytest.mark.slow
def test_a_stalled_body_gets_408_and_the_server_keeps_serving(completer, expected):
    slow = start_in_thread(completer, ServerSettings(port=0, model_name="tiny", body_timeout=1))
    try:
        host, port = slow.socket.getsockname()[:2]
        with socket.create_connection((host, port), timeout=120) as client:
            client.sendall(b"POST /v1/complete HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                           b"Content-Length: 100\r\n\r\n{\"addresses\"")  # then nothing more
            reply = b""
            while chunk := client.recv(65536):  # the server answers, then closes the connection
                reply += chunk
        head, _, body = reply.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408")
        assert "--body-timeout" in json.loads(body)["error"]["message"]
        assert call(slow.url, "/v1/complete", {"addresses": [ADDRESSES[0]]}, key=None) == (
            200, {"results": [expected[ADDRESSES[0]]]})
    finally:
        slow.stop()


@pytest.mark.slow
def test_wrong_method_is_refused(server):
    assert call(server.url, "/v1/complete", method="GET")[0] == 405
    assert call(server.url, "/health", {}, method="POST")[0] == 405


# ---------------------------------------------------------------- concurrency


@pytest.mark.slow
def test_50_concurrent_requests_are_batched_and_match_predict(server, expected):
    def one(address_index):
        address = ADDRESSES[address_index]
        if address_index % 2:
            status, body = call(server.url, "/v1/chat/completions", chat(address))
            return status, body["choices"][0]["message"]["content"]
        status, body = call(server.url, "/v1/complete", {"addresses": [address]})
        return status, body["results"][0]

    batches_before = server.worker.batches_run
    with ThreadPoolExecutor(max_workers=50) as pool:
        answers = list(pool.map(one, range(len(ADDRESSES))))
    assert [status for status, _ in answers] == [200] * 50
    assert [answer for _, answer in answers] == [expected[address] for address in ADDRESSES]
    assert server.worker.batches_run - batches_before < 50
    assert server.worker.most_requests_in_a_batch > 1


# ---------------------------------------------------------------- the CLI process and SIGTERM


@pytest.mark.slow
def test_sigterm_finishes_the_request_in_flight(default_model_dir, lora_adapter_dir, expected, start_server):
    server = start_server(
        "--debug", "--model", str(default_model_dir), "--lora_path", str(lora_adapter_dir), "--port", "0",
        "--max_new_tokens", str(MAX_NEW_TOKENS), "--batch-wait-ms", "200", "--max-batch-size", "1",
        "--body-timeout", "1",
        "--decoding", "free", "--grounding", "none")  # decoded one token at a time: long enough to be in flight
    with socket.create_connection(("127.0.0.1", server.port), timeout=120) as stalled:  # a slow body: 408, a line
        stalled.sendall(b"POST /v1/complete HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n{")
        assert stalled.recv(65536).startswith(b"HTTP/1.1 408")
    addresses = ADDRESSES[:4]  # decoded one at a time (--max-batch-size 1): long enough to be in flight
    result: list = []
    client = threading.Thread(target=lambda: result.append(call(server.url, "/v1/complete", {"addresses": addresses},
                                                                key=None)))
    client.start()
    server.stderr.wait_for("queued 4 address")
    server.process.send_signal(signal.SIGTERM)
    client.join(timeout=120)
    assert result == [(200, {"results": [expected[address] for address in addresses]})]
    assert server.process.wait(timeout=60) == 0
    log = server.stderr.read_to_end()
    assert "received SIGTERM" in log and "Traceback" not in log
    assert [line for line in log.splitlines() if " 408 " in line and "--body-timeout" in line]


@pytest.mark.parametrize("wait", ["-5", "inf", "nan"])
def test_a_batch_wait_that_is_not_a_finite_non_negative_number_is_refused(wait, tmp_path, capsys):
    """inf made the batching worker's queue.get(timeout=inf) overflow; nan silently meant no wait."""
    from address_completion.cli import main

    assert main(["serve", "--model", str(tmp_path / "never-loaded"), "--batch-wait-ms", wait]) == 2
    assert capsys.readouterr().err.strip() == f"error: --batch-wait-ms must be a finite number >= 0, got {float(wait)}"


@pytest.mark.parametrize("key", ["", "   "])
def test_an_empty_api_key_is_refused_not_served_without_auth(key, tmp_path, capsys):
    """`--api-key "$KEY"` with KEY unset started a server that asked no key at all."""
    from address_completion.cli import main
    from address_completion.errors import ConfigError

    with pytest.raises(ConfigError, match=r"--api-key is empty \(an unset variable\?\)"):
        ServerSettings(port=0, api_key=key).validate()
    assert main(["serve", "--model", str(tmp_path / "never-loaded"), "--api-key", key]) == 2
    assert capsys.readouterr().err.strip() == ("error: --api-key is empty (an unset variable?); give the key, or leave "
                                               "the option out to serve without one")
