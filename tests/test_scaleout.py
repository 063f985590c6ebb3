"""Scale-out documents: the evaluation config for served models loads, and the Ollama Modelfile reproduces the
training prompt (vLLM, llama.cpp and Ollama themselves cannot run here)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from address_completion.evaluation.config import load_config
from address_completion.model.modelfile import PROMPT_VARIABLE, ollama_modelfile
from address_completion.data.prompt import render_prompt, user_message
from address_completion.evaluation.registry import create_system

ROOT = Path(__file__).resolve().parents[1]
ADDRESS = "朝阳区建国路88号"


def test_served_models_config_loads_with_the_training_prompt(monkeypatch):
    monkeypatch.chdir(ROOT)  # test_file is relative to the repository root, as its run command says
    config = load_config(ROOT / "configs" / "eval_served.yaml")
    assert [(spec.name, spec.kind) for spec in config.systems] == [
        ("vllm", "openai"), ("llama-server-q8_0", "openai"), ("ollama-q8_0", "openai"), ("gazetteer", "rules")]
    vllm = create_system(config.systems[0], config.settings)
    body = vllm.request_body(ADDRESS)
    assert vllm.url == "http://127.0.0.1:8000/v1/chat/completions"
    assert body["model"] == "address-completion" and body["temperature"] == 0 and body["max_tokens"] == 64
    assert body["messages"] == [{"role": "user", "content": user_message(ADDRESS, grounding="candidates")}]
    assert body["messages"][0]["content"] == "补齐五级行政地址: 朝阳区建国路88号\n候选: 北京市朝阳区 | 吉林省长春市朝阳区"


def test_deployment_doc_shows_the_served_config_and_its_commands():
    section = (ROOT / "docs" / "deployment.md").read_text(encoding="utf-8")
    for command in ("python -m paddle.distributed.launch", "vllm serve", "--served-model-name", "llama-server -m",
                    "--jinja", "ollama create", "configs/eval_served.yaml", "NPROC=2 bash scripts/train.sh"):
        assert command in section, command
    served = (ROOT / "configs" / "eval_served.yaml").read_text(encoding="utf-8")
    assert "vllm serve outputs/export-hf --served-model-name address-completion" in served


def test_modelfile_template_renders_the_training_prompt(qwen_tokenizer):
    text = ollama_modelfile(qwen_tokenizer, "export-q8_0.gguf")
    template = re.search(r'TEMPLATE """(.*?)"""', text, flags=re.S).group(1)
    message = user_message(ADDRESS, grounding="candidates")
    assert template.replace(PROMPT_VARIABLE, message) == render_prompt(qwen_tokenizer, ADDRESS, grounding="candidates")
    assert text.startswith("FROM export-q8_0.gguf\n")
    assert 'PARAMETER stop "<|im_end|>"\n' in text and "PARAMETER temperature 0\n" in text
    # Qwen2.5's template adds its default system turn when none is given: the Modelfile must carry it too.
    assert template.startswith("<|im_start|>system\nYou are Qwen, created by Alibaba Cloud.")


def test_modelfile_needs_a_chat_template(qwen_tokenizer, monkeypatch):
    monkeypatch.setattr(qwen_tokenizer, "chat_template", None)
    with pytest.raises(ValueError, match="no chat template"):
        ollama_modelfile(qwen_tokenizer, "x.gguf")
