"""The one place that turns an address into model input. Training, evaluation, prediction and
serving all call :func:`render_prompt`, so the model always sees the same text.

- The user message is the address with the task prefix (``补齐五级行政地址: ``) added when missing.
- With a chat template (Qwen2.5-Instruct has one) the prompt is the template rendered with a
  generation prompt; the answer is the full address followed by the tokenizer's EOS
  (``<|im_end|>`` for Qwen2.5-Instruct), which generation stops on.
- Without a chat template, a plain ``{message}\\n`` prompt is used.
"""

from __future__ import annotations

from typing import Any

from . import DEFAULT_PROMPT_PREFIX

PLAIN_TEMPLATE = "{message}\n"


def with_prefix(address: str, prefix: str = DEFAULT_PROMPT_PREFIX) -> str:
    """The user message for ``address``: the prefix is added unless the text already starts with it."""
    address = address.strip()
    if not prefix:
        return address
    bare_prefix = prefix.strip()
    if address.startswith(bare_prefix):
        return address
    return prefix + address


def strip_prefix(message: str, prefix: str = DEFAULT_PROMPT_PREFIX) -> str:
    """The address inside a user message (inverse of :func:`with_prefix`)."""
    message = message.strip()
    bare_prefix = prefix.strip()
    if bare_prefix and message.startswith(bare_prefix):
        return message[len(bare_prefix):].strip()
    return message


def has_chat_template(tokenizer: Any) -> bool:
    return getattr(tokenizer, "chat_template", None) is not None


def render_prompt(tokenizer: Any, address: str, prefix: str = DEFAULT_PROMPT_PREFIX) -> str:
    """The exact text the model is conditioned on, ending where the answer starts."""
    message = with_prefix(address, prefix)
    if has_chat_template(tokenizer):
        return tokenizer.apply_chat_template([{"role": "user", "content": message}], tokenize=False,
                                             add_generation_prompt=True)
    return PLAIN_TEMPLATE.format(message=message)


def eos_token_id(tokenizer: Any) -> int:
    """The id the answer ends with and generation stops on."""
    if tokenizer.eos_token_id is None:
        raise ValueError("the tokenizer defines no eos_token; set eos_token in tokenizer_config.json")
    return int(tokenizer.eos_token_id)


def encode_example(tokenizer: Any, address: str, answer: str, prefix: str = DEFAULT_PROMPT_PREFIX
                   ) -> tuple[list[int], list[int]]:
    """Token ids of the prompt and of the answer (answer ids end with EOS)."""
    prompt_ids = tokenizer(render_prompt(tokenizer, address, prefix), add_special_tokens=False)["input_ids"]
    answer_ids = tokenizer(answer.strip(), add_special_tokens=False)["input_ids"] + [eos_token_id(tokenizer)]
    return list(prompt_ids), list(answer_ids)


def decode_answer(tokenizer: Any, token_ids: list[int]) -> str:
    """Text of generated ids, cut at the first EOS, without special tokens."""
    eos = eos_token_id(tokenizer)
    if eos in token_ids:
        token_ids = token_ids[: token_ids.index(eos)]
    return tokenizer.decode(token_ids, skip_special_tokens=True).strip()
