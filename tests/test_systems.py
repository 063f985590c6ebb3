"""The system kinds: rules (jionlp, cpca, gazetteer), predictions files and OpenAI-compatible endpoints (real HTTP)."""

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from address_completion.errors import AddressCompletionError, ConfigError, DataError
from address_completion.data.prompt import with_prefix
from address_completion.evaluation.baselines import RulesSystem, join_address
from address_completion.evaluation.paddle_system import PaddleSystem
from address_completion.evaluation.registry import create_system
from address_completion.evaluation.remote_systems import (OpenAISystem, PredictionsSystem, RemoteSystemError,
                                                          user_message)
from address_completion.evaluation.systems import EvalSettings, SystemSpec, as_answer

PREFIX = "补齐五级行政地址: "


def make(kind, settings=None, **options):
    spec = SystemSpec(name=options.pop("name", kind), kind=kind, options=options, where=f"test: {kind}")
    return create_system(spec, settings or EvalSettings())


# ---------------------------------------------------------------- rules


def test_join_address_drops_placeholders_and_repeated_municipality():
    assert join_address("上海市", "市辖区", "徐汇区", None, "漕溪北路1号") == "上海市徐汇区漕溪北路1号"
    assert join_address("北京市", "北京市", "朝阳区", None, "建国路88号") == "北京市朝阳区建国路88号"
    assert join_address("湖北省", "省直辖县级行政区划", "仙桃市", None, "xx路") == "湖北省仙桃市xx路"
    assert join_address(None, None, None, None, "xx路1号") == "xx路1号"
    assert join_address("陕西省", "宝鸡市", "扶风县", "法门镇", "美阳村") == "陕西省宝鸡市扶风县法门镇美阳村"


def test_jionlp_completes_addresses():
    system = make("rules", engine="jionlp")
    assert system.unavailable_reason() is None
    answers = system.predict(["碑林区扬子江南路467-6号", "扶风县法门镇美阳村", "徐汇区漕溪北路1号"])
    assert answers == ["陕西省西安市碑林区扬子江南路467-6号", "陕西省宝鸡市扶风县法门镇美阳村", "上海市徐汇区漕溪北路1号"]
    assert system.fingerprint()["version"]


def test_cpca_completes_addresses():
    system = make("rules", engine="cpca")
    assert system.unavailable_reason() is None
    answers = system.predict(["碑林区扬子江南路467-6号", "徐汇区漕溪北路1号", "仙桃市干河路8号", "长安街道xx路"])
    assert answers == ["陕西省西安市碑林区扬子江南路467-6号", "上海市徐汇区漕溪北路1号", "湖北省仙桃市干河路8号",
                       {"predict": "长安街道xx路", "abstained": True}]  # nothing recognized: abstains, input unchanged


def test_jionlp_does_not_insert_a_town_found_later_in_the_detail():
    system = make("rules", engine="jionlp")
    assert system.predict(["禹会区东海大道西长青乡政府", "禹会区长青乡东海大道西"]) == [
        "安徽省蚌埠市禹会区东海大道西长青乡政府", "安徽省蚌埠市禹会区长青乡东海大道西"]  # written first: kept


def test_jionlp_abstains_when_it_finds_no_division():
    answers = make("rules", engine="jionlp").predict(["abc路1号", "法门镇美阳村"])
    assert answers == [{"predict": "abc路1号", "abstained": True}, {"predict": "法门镇美阳村", "abstained": True}]


def test_gazetteer_engine_answers_one_consistent_chain_else_abstains():
    system = make("rules", engine="gazetteer")
    assert system.unavailable_reason() is None
    answers = system.predict(["碑林区扬子江南路467-6号", "朝阳区建国路88号", "重庆渝北区金开大道68号",
                              "陕西省杭州市碑林区1号", "滨江新区桃园新城26号楼2单元", "浙江省 织里镇 吴兴区织里镇织纺路731号"])
    assert answers == ["陕西省西安市碑林区扬子江南路467-6号",
                       {"predict": "朝阳区建国路88号", "abstained": True},  # ambiguous: 北京 or 长春 …
                       "重庆市两江新区金开大道68号",
                       {"predict": "陕西省杭州市碑林区1号", "abstained": True},  # divisions that do not nest
                       {"predict": "滨江新区桃园新城26号楼2单元", "abstained": True},  # no division at all
                       "浙江省湖州市吴兴区织里镇织纺路731号"]
    fingerprint = system.fingerprint()
    assert fingerprint["engine"] == "gazetteer" and fingerprint["version"] and fingerprint["parser"]


def test_answers_are_strings_or_marked_dicts():
    assert as_answer("x", "s") == {"predict": "x", "abstained": False}
    assert as_answer({"predict": "x", "probability": 0.4}, "s") == {"predict": "x", "probability": 0.4,
                                                                    "abstained": False}
    for bad, message in ((3, "expected a string or"), ({"predict": "x", "abstained": "yes"}, "must be true or false"),
                         ({"predict": "x", "label": "y"}, "label are reserved"),
                         ({"predict": "x", "candidates": {1, 2}}, "not JSON-serializable")):
        with pytest.raises(AddressCompletionError, match=message):
            as_answer(bad, "s")


def test_rules_engine_missing_is_reported_not_raised(monkeypatch):
    monkeypatch.setitem(sys.modules, "cpca", None)  # makes `import cpca` raise ImportError
    reason = make("rules", engine="cpca").unavailable_reason()
    assert "cpca is not installed" in reason and ".[rules]" in reason


def test_rules_engine_is_validated():
    with pytest.raises(ConfigError, match=r"engine: unknown rule engine 'hanlp'"):
        RulesSystem.check_options({"engine": "hanlp"}, "cfg: systems[0]")


# ---------------------------------------------------------------- predictions made elsewhere


def test_predictions_file_matched_by_input(tmp_path):
    rendered = ("<|im_start|>system\nYou are Qwen.<|im_end|>\n<|im_start|>user\n" + PREFIX +
                "碑林区扬子江南路467-6号<|im_end|>\n<|im_start|>assistant\n")
    lines = [{"prompt": rendered, "predict": "陕西省西安市碑林区扬子江南路467-6号", "label": "x"},
             {"src": PREFIX + "扶风县 法门镇美阳村", "predict": "陕西省宝鸡市扶风县法门镇美阳村"},
             {"prompt": "徐汇区漕溪北路1号", "predict": "上海市徐汇区漕溪北路1号"},
             {"prompt": "朝阳区建国路88号", "predict": "朝阳区建国路88号", "abstained": True}]
    path = tmp_path / "generated_predictions.jsonl"
    path.write_text("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines), encoding="utf-8")
    system = make("predictions", path=str(path))
    assert user_message(rendered) == PREFIX + "碑林区扬子江南路467-6号"
    answers = system.predict(["碑林区扬子江南路467-6号", "扶风县法门镇美阳村", "徐汇区漕溪北路1号"])  # bare, as evaluate gives
    assert answers == ["陕西省西安市碑林区扬子江南路467-6号", "陕西省宝鸡市扶风县法门镇美阳村", "上海市徐汇区漕溪北路1号"]
    assert system.predict(["朝阳区建国路88号"]) == [{"predict": "朝阳区建国路88号", "abstained": True}]
    with pytest.raises(DataError, match=r"no prediction for 1 of the 2 test inputs, e.g. '海淀区1号'"):
        system.check_inputs(["碑林区扬子江南路467-6号", "海淀区1号"])


def test_vllm_infer_predictions_are_matched(tmp_path):
    """LLaMA-Factory's scripts/vllm_infer.py writes prompts decoded without special tokens."""
    vllm = "system\nYou are Qwen, created by Alibaba Cloud.\nuser\n" + PREFIX + "碑林区扬子江南路467-6号\nassistant\n"
    assert user_message(vllm) == PREFIX + "碑林区扬子江南路467-6号"
    assert user_message("user\n海淀区中关村大街27号\nassistant\n") == "海淀区中关村大街27号"  # no system turn
    assert user_message("海淀区 user\nassistant") == "海淀区 user\nassistant"  # not a rendered prompt
    path = tmp_path / "generated_predictions.jsonl"
    path.write_text(json.dumps({"prompt": vllm, "predict": "陕西省西安市碑林区扬子江南路467-6号", "label": "x"},
                               ensure_ascii=False) + "\n", encoding="utf-8")
    assert make("predictions", path=str(path)).predict(["碑林区扬子江南路467-6号"]) == ["陕西省西安市碑林区扬子江南路467-6号"]


def test_grounded_prompts_in_a_predictions_file_are_matched_by_their_address(tmp_path):
    """A run with grounding: candidates writes prompts that end in the candidates line: still the same input."""
    grounded = ("<|im_start|>user\n" + PREFIX + "朝阳区建国路88号\n候选: 北京市朝阳区 | 吉林省长春市朝阳区<|im_end|>\n"
                "<|im_start|>assistant\n")
    path = tmp_path / "generated_predictions.jsonl"
    path.write_text(json.dumps({"prompt": grounded, "predict": "北京市朝阳区建国路88号"}, ensure_ascii=False) + "\n",
                    encoding="utf-8")
    assert make("predictions", path=str(path)).predict(["朝阳区建国路88号"]) == ["北京市朝阳区建国路88号"]


def test_predictions_file_errors_name_the_line(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"prompt": "a", "predict": "b"}\n{"prompt": "c"\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"p.jsonl:2: broken JSON"):
        make("predictions", path=str(path)).predict(["a"])
    path.write_text('{"prompt": "a", "predict": 3}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"p.jsonl:1: expected"):
        make("predictions", path=str(path)).predict(["a"])
    path.write_text('{"prompt": "a", "predict": "b", "abstained": "no"}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"p.jsonl:1: \"abstained\": expected true or false"):
        make("predictions", path=str(path)).predict(["a"])
    with pytest.raises(ConfigError, match=r"systems\[0\].path: predictions file .* not found"):
        PredictionsSystem.check_options({"path": str(tmp_path / "missing.jsonl")}, "cfg: systems[0]")


# ---------------------------------------------------------------- openai-compatible endpoint (local stub)


class StubEndpoint:
    """A tiny OpenAI-compatible server on 127.0.0.1 whose failures the test scripts."""

    def __init__(self):
        self.requests: list[tuple[dict, dict]] = []
        self.failures: list[int] = []  # HTTP statuses to answer before succeeding
        self.retry_after = "0"  # the Retry-After header of those failures
        self.delay = 0.0
        self.replies: dict[str, dict] = {}  # address in the message -> the choice's fields to send instead
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def handle(self):
                try:
                    super().handle()
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client timed out on purpose

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                stub.requests.append((body, {key.lower(): value for key, value in self.headers.items()}))
                if stub.delay:
                    time.sleep(stub.delay)
                if stub.failures:
                    status = stub.failures.pop(0)
                    self.send_response(status)
                    self.send_header("Retry-After", stub.retry_after)
                    self.end_headers()
                    self.wfile.write(b'{"error": "scripted"}')
                    return
                content = body["messages"][-1]["content"].replace(PREFIX, "完整:")
                choice = {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
                choice.update(stub.replies.get(content.replace("完整:", ""), {}))
                payload = {"id": "x", "object": "chat.completion", "model": body["model"], "choices": [choice]}
                data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def stub():
    endpoint = StubEndpoint()
    yield endpoint
    endpoint.close()


FAST = EvalSettings(timeout=2.0, retries=2, backoff=0.01, max_new_tokens=40)


def test_openai_sends_training_message_greedy_with_key(stub, monkeypatch):
    monkeypatch.setenv("EVAL_TEST_KEY", "sekrit")
    system = make("openai", FAST, base_url=stub.url, model="qwen2.5-7b-instruct", api_key_env="EVAL_TEST_KEY")
    try:
        answers = system.predict(["碑林区扬子江南路467-6号", PREFIX + "徐汇区漕溪北路1号"])
    finally:
        system.close()
    assert answers == ["完整:碑林区扬子江南路467-6号", "完整:徐汇区漕溪北路1号"]
    sent = {body["messages"][0]["content"]: (body, headers) for body, headers in stub.requests}  # any order
    assert set(sent) == {with_prefix("碑林区扬子江南路467-6号"), with_prefix("徐汇区漕溪北路1号")}
    body, headers = sent[with_prefix("碑林区扬子江南路467-6号")]
    assert body["messages"] == [{"role": "user", "content": PREFIX + "碑林区扬子江南路467-6号"}]
    assert body["temperature"] == 0 and body["max_tokens"] == 40 and body["model"] == "qwen2.5-7b-instruct"
    assert headers["authorization"] == "Bearer sekrit"  # header names are case-insensitive
    assert headers["user-agent"].startswith("OpenAI/Python")  # the openai client makes the calls (its retries)


def test_openai_grounded_message_carries_the_candidates(stub):
    system = make("openai", FAST, base_url=stub.url, model="m", grounding="candidates")
    try:
        system.predict(["朝阳区建国路88号"])
    finally:
        system.close()
    (body, _), = stub.requests
    assert body["messages"][0]["content"] == PREFIX + "朝阳区建国路88号\n候选: 北京市朝阳区 | 吉林省长春市朝阳区"
    assert system.fingerprint()["grounding"] == "candidates"
    with pytest.raises(ConfigError, match="grounding: expected one of none, candidates"):
        OpenAISystem.check_options({"base_url": stub.url, "model": "m", "grounding": "yes"}, "systems[0]")


def test_openai_empty_or_abstained_replies_are_abstentions(stub):
    """As the paddle system counts them: an empty reply is no answer (the input comes back, abstained), and this
    project's server marks its own abstentions in the reply's address_completion field."""
    stub.replies = {"扬子江南路碑林区1号": {"message": {"role": "assistant", "content": ""}},
                    "扬子江南路2号": {"message": {"role": "assistant", "content": "扬子江南路2号"},
                                  "address_completion": {"abstained": True}},
                    "扬子江南路3号": {"message": {"role": "assistant", "content": None}},
                    "扬子江南路4号": {"message": {"role": "assistant", "content": "扬子江南路4号"},
                                  "address_completion": {"abstained": True, "reason": "empty answer"}}}
    system = make("openai", FAST, base_url=stub.url, model="m")
    try:
        answers = system.predict(["扬子江南路碑林区1号", "扬子江南路2号", "扬子江南路3号", "碑林区1号", "扬子江南路4号"])
    finally:
        system.close()
    assert answers == [{"predict": "扬子江南路碑林区1号", "abstained": True},
                       {"predict": "扬子江南路2号", "abstained": True},
                       {"predict": "扬子江南路3号", "abstained": True}, "完整:碑林区1号",
                       {"predict": "扬子江南路4号", "abstained": True, "reason": "empty answer"}]  # the server's reason


def test_openai_retries_transient_failures(stub):
    stub.failures = [503, 429]
    system = make("openai", FAST, base_url=stub.url + "/", model="m")
    assert system.predict(["碑林区扬子江南路1号"]) == ["完整:碑林区扬子江南路1号"]
    assert len(stub.requests) == 3


def test_openai_gives_up_after_retries(stub):
    stub.failures = [500, 500, 500, 500]
    system = make("openai", FAST, base_url=stub.url, model="m")
    with pytest.raises(RemoteSystemError, match=r"failed 3 times .*HTTP 500.*rerun to resume"):
        system.predict(["碑林区扬子江南路1号"])
    assert len(stub.requests) == 3


def test_openai_does_not_retry_auth_errors(stub):
    stub.failures = [401]
    system = make("openai", FAST, base_url=stub.url, model="m")
    with pytest.raises(RemoteSystemError, match=r"HTTP 401.*check the API key"):
        system.predict(["碑林区扬子江南路1号"])
    assert len(stub.requests) == 1


@pytest.mark.parametrize("status, hint", [
    (403, r"HTTP 403.* — check the API key and its permissions$"),
    (404, r"HTTP 404.* — check base_url \(it usually ends with /v1\) and the model name$")])
def test_openai_403_and_404_are_not_retried_and_say_what_to_check(stub, status, hint):
    stub.failures = [status]
    system = make("openai", FAST, base_url=stub.url, model="m")
    with pytest.raises(RemoteSystemError, match=hint):
        system.predict(["碑林区扬子江南路1号"])
    assert len(stub.requests) == 1


def test_openai_waits_as_long_as_retry_after_asks():
    """Backoff doubles per attempt; a longer Retry-After (seconds) wins, capped at 60 s; junk is ignored."""
    system = make("openai", EvalSettings(backoff=0.5), base_url="http://127.0.0.1:9/v1", model="m")
    assert [system._delay(attempt, None) for attempt in range(4)] == [0.5, 1.0, 2.0, 4.0]
    assert system._delay(0, "7") == 7.0 and system._delay(3, "1") == 4.0  # the longer of the two
    assert system._delay(0, "3600") == 60.0 and system._delay(10, None) == 60.0
    assert system._delay(1, "Wed, 21 Oct 2026 07:28:00 GMT") == 1.0  # an HTTP date is not understood: backoff


def test_openai_retry_after_is_honoured_on_the_wire(stub):
    stub.failures, stub.retry_after = [429], "1"
    system = make("openai", FAST, base_url=stub.url, model="m")  # backoff 0.01 s alone
    started = time.monotonic()
    assert system.predict(["碑林区扬子江南路1号"]) == ["完整:碑林区扬子江南路1号"]
    assert time.monotonic() - started >= 1.0 and len(stub.requests) == 2  # a lower bound: load only adds


def test_openai_timeout_is_retried_then_reported(stub):
    stub.delay = 0.5
    system = make("openai", EvalSettings(timeout=0.1, retries=1, backoff=0.01), base_url=stub.url, model="m")
    with pytest.raises(RemoteSystemError, match=r"failed 2 times \(timeout 0.1s\)"):
        system.predict(["碑林区扬子江南路1号"])


def test_openai_unreachable_endpoint(refused_port):
    system = make("openai", EvalSettings(timeout=0.5, retries=1, backoff=0.01),
                  base_url=f"http://127.0.0.1:{refused_port}/v1", model="m")
    with pytest.raises(RemoteSystemError, match=r"failed 2 times"):
        system.predict(["碑林区扬子江南路1号"])


def test_openai_options_are_validated(monkeypatch):
    monkeypatch.delenv("EVAL_MISSING_KEY", raising=False)
    with pytest.raises(ConfigError, match=r"api_key_env: environment variable EVAL_MISSING_KEY is not set"):
        OpenAISystem.check_options({"base_url": "http://x/v1", "model": "m", "api_key_env": "EVAL_MISSING_KEY"},
                                   "cfg: systems[1]")
    with pytest.raises(ConfigError, match=r"systems\[1\].base_url: expected an http"):
        OpenAISystem.check_options({"base_url": "localhost:8000", "model": "m"}, "cfg: systems[1]")
    with pytest.raises(ConfigError, match=r"systems\[1\].concurrency: expected an integer >= 1"):
        OpenAISystem.check_options({"base_url": "http://x/v1", "model": "m", "concurrency": 0}, "cfg: systems[1]")


def test_paddle_min_confidence_with_free_decoding_is_a_config_error(default_model_dir):
    """As predict and serve refuse it: a threshold on candidate probabilities means nothing to free decoding."""
    options = {"model": str(default_model_dir), "decoding": "free", "min_confidence": 0.5}
    with pytest.raises(ConfigError, match=r"cfg: systems\[0\]\.min_confidence: min_confidence 0.5 needs constrained "
                                          r"decoding"):
        PaddleSystem.check_options(options, "cfg: systems[0]")
    PaddleSystem.check_options({**options, "decoding": "constrained"}, "cfg: systems[0]")
    PaddleSystem.check_options({**options, "min_confidence": 0}, "cfg: systems[0]")


def test_a_number_yaml_read_as_text_gets_the_spelling_yaml_reads(default_model_dir):
    """PyYAML (YAML 1.1) reads `min_confidence: 1e-9` as the text "1e-9"; the error says how to write it."""
    import yaml

    options = {"model": str(default_model_dir), **yaml.safe_load("min_confidence: 1e-9")}
    with pytest.raises(ConfigError, match=r"systems\[0\]\.min_confidence: expected a finite number >= 0, got '1e-9' "
                                          r"\(YAML read it as text: write 1\.0e-9, unquoted; YAML 1\.1 numbers need "
                                          r"a dot and a signed exponent\)$"):
        PaddleSystem.check_options(options, "cfg: systems[0]")
    options.update(yaml.safe_load("min_confidence: 1.0e-9\nmax_new_tokens: '64'"))
    assert options["min_confidence"] == 1e-9
    with pytest.raises(ConfigError, match=r"max_new_tokens: expected an integer >= 1, got '64' \(YAML read it as "
                                          r"text: write 64, unquoted\)$"):
        PaddleSystem.check_options(options, "cfg: systems[0]")



@pytest.mark.parametrize("kind, options", [("openai", {"base_url": "http://127.0.0.1:9/v1", "model": "m"}),
                                           ("paddle", {"model": "x"})])
def test_choices_are_read_in_any_case_and_kept_lower_cased(kind, options):
    """The config's validation folds the choice's case and keeps the folded value, so a system never sees
    "Candidates" (openai's grounding was case-sensitive while paddle's was not)."""
    from address_completion.evaluation.config import parse_system

    spec = parse_system({"kind": kind, "grounding": "Candidates", **options}, "systems[0]")
    assert spec.options["grounding"] == "candidates"


def test_a_rule_engine_is_read_in_any_case():
    from address_completion.evaluation.config import parse_system

    assert parse_system({"kind": "rules", "engine": "Gazetteer"}, "systems[0]").options["engine"] == "gazetteer"


def test_a_missing_train_file_of_the_prior_is_refused_with_the_config(tmp_path):
    """Found missing only when the system ran, it left a report with no system scored (exit 1)."""
    from address_completion.evaluation.config import parse_system

    with pytest.raises(ConfigError, match=r"^systems\[0\]\.train_file: training pairs file /nope/train\.json not "
                                          r"found$"):
        parse_system({"kind": "prior", "train_file": "/nope/train.json"}, "systems[0]")
    train = tmp_path / "train.json"
    train.write_text("", encoding="utf-8")
    assert parse_system({"kind": "prior", "train_file": str(train)}, "systems[0]").options["train_file"] == str(train)
