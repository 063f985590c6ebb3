"""Batched greedy generation: the one decoding loop used by predict, serve and evaluate.

Prompts are left-padded so every row's answer starts at the same column, the KV cache is on, and
position ids count only real tokens (``clip(cumsum(mask) - 1, 0)``), so a padded row computes
exactly what the same prompt computes alone. Decoding is plain argmax (the model folder's
sampling and repetition-penalty settings are ignored on purpose: evaluation needs the single
most likely answer, and a repetition penalty would punish addresses that repeat characters).
Generation stops at the tokenizer's EOS (``<|im_end|>``) and at every EOS id listed in the model's
generation config (``<|endoftext|>`` for Qwen2.5), or after ``max_new_tokens``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from . import DEFAULT_PROMPT_PREFIX
from .prompt import decode_answer, eos_token_id, render_prompt


@dataclass(frozen=True)
class Completion:
    """One generated answer with what an API response reports about it."""

    text: str
    finish_reason: str  # "stop" (an EOS id was generated) or "length" (max_new_tokens reached)
    prompt_tokens: int
    completion_tokens: int


def _as_id_list(value: Any) -> list[int]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [int(item) for item in value if item is not None]
    return [int(value)]


def stop_token_ids(model: Any, tokenizer: Any) -> list[int]:
    """The tokenizer's EOS first, then every other EOS id the model's configs declare."""
    ids = [eos_token_id(tokenizer)]
    for config in (getattr(model, "generation_config", None), getattr(model, "config", None)):
        for token_id in _as_id_list(getattr(config, "eos_token_id", None)):
            if token_id not in ids:
                ids.append(token_id)
    return ids


def padding_token_id(tokenizer: Any) -> int:
    """Left-padding id; never attended to, so any id works, but the tokenizer's pad is the honest one."""
    pad = tokenizer.pad_token_id
    return int(pad) if pad is not None else eos_token_id(tokenizer)


def encode_prompts(tokenizer: Any, prompts: Sequence[str]) -> list[list[int]]:
    """Token ids of already rendered prompts (no extra special tokens: the template holds them)."""
    if not prompts:
        return []
    return [list(ids) for ids in tokenizer(list(prompts), add_special_tokens=False)["input_ids"]]


def left_padded_batch(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[list[list[int]], list[list[int]],
                                                                            list[list[int]]]:
    """input_ids, attention_mask and position_ids (real tokens count from 0) for left padding."""
    width = max(len(row) for row in rows)
    input_ids, attention_mask, position_ids = [], [], []
    for row in rows:
        padding = width - len(row)
        input_ids.append([pad_id] * padding + list(row))
        attention_mask.append([0] * padding + [1] * len(row))
        position_ids.append([0] * padding + list(range(len(row))))
    return input_ids, attention_mask, position_ids


def cut_at_stop(token_ids: Sequence[int], stop_ids: Sequence[int]) -> list[int]:
    """Ids up to and including the first stop id (later ids are padding)."""
    for index, token_id in enumerate(token_ids):
        if token_id in stop_ids:
            return list(token_ids[: index + 1])
    return list(token_ids)


def generate_token_ids(model: Any, tokenizer: Any, prompt_ids: Sequence[Sequence[int]], *, max_new_tokens: int,
                       stop_ids: Sequence[int] | None = None) -> list[list[int]]:
    """New token ids for each prompt (one batch), each cut after its first stop id.

    ``stop_ids`` defaults to :func:`stop_token_ids` (the tokenizer's EOS and the model's EOS ids).
    """
    import paddle

    if not prompt_ids:
        return []
    if any(not row for row in prompt_ids):
        raise ValueError("cannot generate from an empty prompt")
    stop_ids = list(stop_ids) if stop_ids else stop_token_ids(model, tokenizer)
    pad_id = padding_token_id(tokenizer)
    input_ids, attention_mask, position_ids = left_padded_batch(prompt_ids, pad_id)
    with paddle.no_grad():
        output_ids, _ = model.generate(
            input_ids=paddle.to_tensor(input_ids, dtype="int64"),
            attention_mask=paddle.to_tensor(attention_mask, dtype="int64"),
            position_ids=paddle.to_tensor(position_ids, dtype="int64"),
            max_new_tokens=max_new_tokens,
            decode_strategy="greedy_search",
            repetition_penalty=1.0,
            eos_token_id=stop_ids if len(stop_ids) > 1 else stop_ids[0],
            pad_token_id=pad_id,
            use_cache=True,
        )
    return [cut_at_stop(row, stop_ids) for row in output_ids.numpy().tolist()]


def greedy_generate(model: Any, tokenizer: Any, prompts: list[str], *, max_new_tokens: int) -> list[list[int]]:
    """Greedy continuation ids of rendered prompts (one batch, order kept); each ends at its stop id if reached."""
    return generate_token_ids(model, tokenizer, encode_prompts(tokenizer, prompts), max_new_tokens=max_new_tokens)


def length_sorted_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar length (longest first), so little padding is computed."""
    order = sorted(range(len(lengths)), key=lambda index: (-lengths[index], index))
    return [order[start:start + batch_size] for start in range(0, len(order), batch_size)]


@dataclass
class Completer:
    """A loaded model + tokenizer ready to complete addresses."""

    model: Any
    tokenizer: Any
    max_new_tokens: int = 64
    prefix: str = DEFAULT_PROMPT_PREFIX
    name: str = "model"
    stop_ids: list[int] = field(init=False)

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be at least 1, got {self.max_new_tokens}")
        self.stop_ids = stop_token_ids(self.model, self.tokenizer)

    @classmethod
    def load(cls, model: str, *, lora_path: str | None = None, dtype: str = "float32", max_new_tokens: int = 64,
             prefix: str = DEFAULT_PROMPT_PREFIX, flag: str = "--model") -> "Completer":
        """Load a model folder (or hub name), optionally with an unmerged LoRA adapter, in eval mode. ``flag`` is
        the option that named the model (error hints name it)."""
        from .errors import ConfigError
        from .runtime import prepare_environment

        if max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
        prepare_environment(model=model)  # idempotent; callers that ran setup_runtime lose nothing
        from .modeling import load_model, load_tokenizer

        loaded = load_model(model, dtype=dtype, lora_path=lora_path, flag=flag)
        loaded.eval()
        name = str(model).rstrip("/").split("/")[-1] or str(model)
        if lora_path:
            name += "+" + str(lora_path).rstrip("/").split("/")[-1]
        return cls(model=loaded, tokenizer=load_tokenizer(model, flag), max_new_tokens=max_new_tokens, prefix=prefix,
                   name=name)

    def prompt_for(self, address: str) -> str:
        return render_prompt(self.tokenizer, address, self.prefix)

    def complete_detailed(self, addresses: Sequence[str], *, batch_size: int = 16,
                          progress: bool = False) -> list[Completion]:
        """Completions in input order; batches are formed by prompt length to limit padding."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        prompt_ids = encode_prompts(self.tokenizer, [self.prompt_for(address) for address in addresses])
        results: list[Completion | None] = [None] * len(prompt_ids)
        from tqdm import tqdm

        with tqdm(total=len(prompt_ids), unit="addr", desc="completing", disable=None if progress else True,
                  leave=False) as bar:
            for batch in length_sorted_batches([len(ids) for ids in prompt_ids], batch_size):
                generated = generate_token_ids(self.model, self.tokenizer, [prompt_ids[i] for i in batch],
                                               max_new_tokens=self.max_new_tokens, stop_ids=self.stop_ids)
                for index, new_ids in zip(batch, generated):
                    results[index] = self._completion(prompt_ids[index], new_ids)
                bar.update(len(batch))
        return results  # type: ignore[return-value]

    def complete(self, addresses: list[str], *, batch_size: int = 16, progress: bool = False) -> list[str]:
        """Completed addresses in input order; a batch gives exactly the one-at-a-time answers."""
        return [item.text for item in self.complete_detailed(addresses, batch_size=batch_size, progress=progress)]

    def _completion(self, prompt_ids: Sequence[int], new_ids: list[int]) -> Completion:
        stopped = bool(new_ids) and new_ids[-1] in self.stop_ids
        return Completion(text=decode_answer(self.tokenizer, new_ids), finish_reason="stop" if stopped else "length",
                          prompt_tokens=len(prompt_ids), completion_tokens=len(new_ids))
