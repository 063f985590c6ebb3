"""Record layouts of instruction-tuning data: this project's ``src``/``tgt`` pairs, and the ones LLaMA-Factory and
OpenAI users bring, each turned into one ``{"src", "tgt"}`` pair (the task is single-turn: one address in, one
completed address out).

- ``src_tgt``: ``{"src": "补齐五级行政地址: 碑林区…", "tgt": "陕西省西安市碑林区…"}`` (PaddleNLP's fine-tuning format).
- ``alpaca``: ``{"instruction", "input" (optional), "output"}``; ``src`` is ``instruction`` and ``input`` joined
  by a newline as LLaMA-Factory joins them, except that an instruction that is the task prefix (``补齐五级行政地址``,
  with or without its colon) or empty gives exactly the project's own prompt, prefix + ``input``; ``tgt`` is
  ``output``. An optional ``system`` is not used (the prompt is the project's own); a
  non-empty ``history`` (earlier turns) is refused.
- ``sharegpt``: ``{"conversations": [{"from": "human", "value": …}, {"from": "gpt", "value": …}]}`` (``user`` /
  ``assistant`` are accepted too; a leading ``system`` turn is not used).
- ``messages``: OpenAI's ``{"messages": [{"role": "user", "content": …}, {"role": "assistant", "content": …}]}``
  (a leading ``system`` message is not used).
A conversation with more than one user turn is refused with the record's line: every example must be one
address and its answer (split a multi-turn chat into one conversation per pair).
"""

from __future__ import annotations

from typing import Any, Optional

from .. import DEFAULT_PROMPT_PREFIX

LAYOUTS = ("src_tgt", "alpaca", "sharegpt", "messages")
ACCEPTED = ("src_tgt (src, tgt), alpaca (instruction, input, output), sharegpt (conversations: from/value), "
            "messages (OpenAI messages: role/content)")
USER_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}


def detect_layout(obj: dict) -> Optional[str]:
    """The layout an object's keys say it is in, or None."""
    if "src" in obj or "tgt" in obj:
        return "src_tgt"
    if "instruction" in obj or "output" in obj:
        return "alpaca"
    if "conversations" in obj:
        return "sharegpt"
    if "messages" in obj:
        return "messages"
    return None


def unknown_layout(obj: dict) -> str:
    """The one-line complaint for an object in no known layout: the keys found and the layouts accepted."""
    keys = ", ".join(repr(key) for key in list(obj)[:8]) + (", …" if len(obj) > 8 else "") if obj else "none"
    return f"a record in no known format: keys found: {keys}; formats accepted: {ACCEPTED}"


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{where} must be a string, got {type(value).__name__}")
    return value


def _turns(items: Any, field: str, role_key: str, text_key: str) -> tuple[str, str]:
    """(user text, assistant text) of a single-turn conversation; ValueError saying what is wrong."""
    if not isinstance(items, list) or not items:
        raise ValueError(f"field {field!r} must be a non-empty list of turns")
    turns = []
    for index, turn in enumerate(items):
        where = f"{field}[{index}]"
        if not isinstance(turn, dict) or role_key not in turn or text_key not in turn:
            raise ValueError(f"{where} must be an object with {role_key!r} and {text_key!r}")
        role = USER_ROLES.get(turn[role_key]) if isinstance(turn[role_key], str) else None
        if role is None:
            raise ValueError(f"{where}.{role_key} must be one of {', '.join(USER_ROLES)}, got {turn[role_key]!r}")
        turns.append((role, _text(turn[text_key], f"{where}.{text_key}")))
    if turns[0][0] == "system":
        turns = turns[1:]
    users = sum(1 for role, _ in turns if role == "user")
    if users != 1 or [role for role, _ in turns] != ["user", "assistant"]:
        if users > 1:
            raise ValueError(f"field {field!r} holds {users} user turns: this task is single-turn (one address, "
                             "one answer); split the conversation into one record per pair")
        raise ValueError(f"field {field!r} must be one user turn then one assistant turn (after an optional system "
                         f"turn), got {', '.join(role for role, _ in turns) or 'nothing'}")
    return turns[0][1], turns[1][1]


def _bare(instruction: str) -> str:
    return instruction.strip().rstrip(":：").strip()


def to_pair(obj: dict, layout: str) -> dict[str, Any]:
    """``obj`` (a JSON object in ``layout``) as ``{"src", "tgt"}`` (values unchecked: the reader checks them);
    ValueError naming the field when the object does not fit the layout."""
    if layout == "src_tgt":
        return obj
    if layout == "alpaca":
        if "output" not in obj and "instruction" not in obj:
            raise ValueError("missing field 'instruction' (alpaca format: instruction, input, output)")
        if obj.get("history"):
            raise ValueError("field 'history' holds earlier turns: this task is single-turn (one address, one "
                             "answer); give each pair its own record")
        instruction = _text(obj.get("instruction", ""), "field 'instruction'")
        extra = _text(obj.get("input") or "", "field 'input'")
        if extra.strip() and _bare(instruction) in ("", _bare(DEFAULT_PROMPT_PREFIX)):
            pair = {"src": DEFAULT_PROMPT_PREFIX + extra.strip()}
        else:
            pair = {"src": "\n".join(part for part in (instruction.strip(), extra.strip()) if part)}
        if "output" in obj:
            pair["tgt"] = obj["output"]
        return pair
    if layout == "sharegpt":
        if "conversations" not in obj:
            raise ValueError("missing field 'conversations' (sharegpt format)")
        src, tgt = _turns(obj["conversations"], "conversations", "from", "value")
        return {"src": src, "tgt": tgt}
    if layout == "messages":
        if "messages" not in obj:
            raise ValueError("missing field 'messages' (OpenAI messages format)")
        src, tgt = _turns(obj["messages"], "messages", "role", "content")
        return {"src": src, "tgt": tgt}
    raise ValueError(f"unknown record format {layout!r}; expected one of {', '.join(LAYOUTS)}")
