"""Token ids of rendered prompts and their left-padded batch: what decoding (inference/generate.py) and the
merge / export checks (verify.py) feed a model.
"""

from __future__ import annotations

from typing import Any, Sequence

from ..data.prompt import eos_token_id


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
