"""The one place that turns an address into model input. Training, evaluation, prediction and
serving all call :func:`render_prompt`, so the model always sees the same text.

- The user message is the address with the task prefix (``补齐五级行政地址: ``) added when missing.
- With a chat template (Qwen2.5-Instruct has one) the prompt is the template rendered with a
  generation prompt; the answer is the full address followed by the tokenizer's EOS
  (``<|im_end|>`` for Qwen2.5-Instruct), which generation stops on.
- Without a chat template, a plain ``{message}\\n`` prompt is used.
- A grounded prompt lists the gazetteer's candidate chains in an order that carries no answer: at inference the
  canonical order (by division codes, :func:`candidate_chains`), in training a seeded shuffle per example. The
  gazetteer's own ranking (its prior) is kept out of the prompt, so "copy the first" is not something to learn.
"""

from __future__ import annotations

import random
import re

from typing import Any, Optional, Sequence

from .. import DEFAULT_PROMPT_PREFIX
from .gazetteer import DEFAULT_DETAIL, MAX_CANDIDATES, completion_candidates

PLAIN_TEMPLATE = "{message}\n"
# Longest address predict and serve accept, in characters. A postal address is well under 100; the cap keeps one
# pasted document from tying the CPU up (a 2,400-character input took about a minute in predict here).
MAX_INPUT_CHARS = 256
GROUNDINGS = ("none", "candidates")
# How an answer is decoded (inference.generate.Completer): free generation, or a choice among the candidates.
DECODINGS = ("free", "constrained")
CANDIDATES_LINE = "\n候选: {chains}"
NO_CANDIDATE = "无"
CHAIN_SEPARATOR = " | "
# The start of CANDIDATES_LINE as people also type it: full-width colon, spaces around the label.
_GROUNDING_LINE = re.compile(r"\n[ \t]*候选[ \t]*[:：]")


def with_prefix(address: str, prefix: str = DEFAULT_PROMPT_PREFIX) -> str:
    """The user message for ``address``: ``prefix`` + the address :func:`strip_prefix` finds in the text (so a
    prefix the text already carries, however typed, is written once, as ``prefix``; a candidates line the text
    carries, :func:`strip_grounding`, is dropped)."""
    address = strip_prefix(address, prefix)
    return prefix + address if prefix else address


def strip_grounding(message: str) -> str:
    """``message`` without a trailing candidates line of this project's grounded prompt (``\n候选: …``).

    A client that sends the grounded training message itself (evaluate's ``openai`` system with ``grounding:
    candidates`` pointed at ``serve``) must get the same answer as one that sends the address: the candidates are
    the gazetteer's to propose again, never part of the address."""
    found = _GROUNDING_LINE.search(message)
    return message[:found.start()].rstrip() if found else message


def has_address_text(address: str) -> bool:
    """Whether a bare address (prefix stripped) has a letter or digit; [] or 【】 alone has nothing to complete
    (predict and serve refuse it)."""
    return any(char.isalnum() for char in address)


def strip_prefix(message: str, prefix: str = DEFAULT_PROMPT_PREFIX) -> str:
    """The address inside a user message (inverse of :func:`with_prefix`; a grounded message's candidates line,
    :func:`strip_grounding`, is not part of it).

    Inside the package an address is bare; this is called only where text that may carry the prefix enters:
    records as read (split's inputs, evaluate's test file and prediction cache, a predictions file, the
    city-frequency baseline's train file, prepare's --input addresses and summary, training's dev pairs), input as it arrives (predict's
    and serve's address check, :meth:`inference.generate.Completer.complete_detailed`, the web page's echo), and
    :func:`user_message` when it finds the candidates of a training record's src itself.
    """
    message = strip_grounding(message).strip()
    found = _leading_prefixes(prefix).match(message) if prefix.strip() else None
    return message[found.end():].strip() if found else message


def has_prefix(text: str, prefix: str = DEFAULT_PROMPT_PREFIX) -> bool:
    """Whether ``text`` carries ``prefix`` anywhere, typed any way :func:`strip_prefix` recognises (a generated
    answer that repeats the prompt is no address, wherever the prefix sits in it)."""
    return bool(prefix.strip()) and re.search(_prefix_pattern(prefix), text) is not None


def _prefix_pattern(prefix: str) -> str:
    """The regular expression of ``prefix`` as people also type it: a full-width colon for an ASCII one (or the
    reverse), any blanks before the colon."""
    body = prefix.strip()
    colon = body[-1:] in (":", "：")
    return re.escape(body[:-1].rstrip() if colon else body) + (r"[ \t]*[:：]" if colon else "")


def _leading_prefixes(prefix: str) -> re.Pattern:
    """The ``prefix`` at the start of a message (:func:`_prefix_pattern`), repeated too (a client that adds it to
    text that has it), with the blanks after it."""
    return re.compile(rf"(?:{_prefix_pattern(prefix)}[ \t]*)+")


def has_chat_template(tokenizer: Any) -> bool:
    return getattr(tokenizer, "chat_template", None) is not None


def check_grounding(grounding: str) -> str:
    """``grounding`` itself, or ValueError naming the allowed values."""
    if grounding not in GROUNDINGS:
        raise ValueError(f"grounding must be one of {', '.join(GROUNDINGS)}, got {grounding!r}")
    return grounding


def address_candidates(address: str, limit: Optional[int] = None, detail: Optional[str] = None) -> list:
    """The gazetteer's candidates (:class:`gazetteer.Candidate`) for a bare address (prefix stripped: see
    :func:`strip_prefix`), at most ``limit`` (default: the gazetteer's cap, :data:`gazetteer.MAX_CANDIDATES`);
    ``detail``: verbatim (default) or clean, :data:`gazetteer.DETAILS`."""
    return completion_candidates(address, limit=limit or MAX_CANDIDATES, detail=detail or DEFAULT_DETAIL)


def candidate_chains(candidates: Sequence[Any], rng: Optional[random.Random] = None) -> list[str]:
    """The distinct chain texts of ``candidates`` (:class:`gazetteer.Candidate`) in the order a prompt lists them.

    Without ``rng``: the canonical order, by the chain's division codes (province, city, county, town), so the
    order is a property of the places, never of the gazetteer's ranking or of the answer. With ``rng`` (training):
    that order shuffled by ``rng`` — the right chain's position is then independent of the answer.
    """
    chains = {}
    for candidate in candidates:
        chains.setdefault(candidate.chain.text(), tuple(d.code for d in candidate.chain.divisions()))
    ordered = sorted(chains, key=lambda text: (chains[text], text))
    if rng is not None:
        rng.shuffle(ordered)
    return ordered


def user_message(address: str, prefix: str = DEFAULT_PROMPT_PREFIX, grounding: str = "none",
                 candidates: Optional[Sequence[Any]] = None, rng: Optional[random.Random] = None,
                 detail: Optional[str] = None) -> str:
    """The user turn: prefixed address, plus the candidate chains when grounded (:func:`candidate_chains`'s
    order: canonical, or shuffled with ``rng``; ``候选: 无`` when there is none). ``address`` may carry the prefix
    (training passes its records' src as read).

    ``candidates`` (from :func:`address_candidates`, read under ``detail``) is computed when not given; pass it
    when the caller needs it too (constrained decoding) so the gazetteer runs once; ``[]`` gives the
    no-candidate prompt.
    """
    message = with_prefix(address, prefix)
    if check_grounding(grounding) == "none":
        return message
    if candidates is None:
        candidates = address_candidates(strip_prefix(address, prefix), detail=detail)
    chains = CHAIN_SEPARATOR.join(candidate_chains(candidates, rng)) or NO_CANDIDATE
    return message + CANDIDATES_LINE.format(chains=chains)


def render_prompt(tokenizer: Any, address: str, prefix: str = DEFAULT_PROMPT_PREFIX, grounding: str = "none",
                  candidates: Optional[Sequence[Any]] = None, rng: Optional[random.Random] = None,
                  detail: Optional[str] = None) -> str:
    """The exact text the model is conditioned on, ending where the answer starts (arguments: :func:`user_message`)."""
    message = user_message(address, prefix, grounding, candidates, rng, detail)
    if has_chat_template(tokenizer):
        return tokenizer.apply_chat_template([{"role": "user", "content": message}], tokenize=False,
                                             add_generation_prompt=True)
    return PLAIN_TEMPLATE.format(message=message)


def eos_token_id(tokenizer: Any) -> int:
    """The id the answer ends with and generation stops on."""
    if tokenizer.eos_token_id is None:
        raise ValueError("the tokenizer defines no eos_token; set eos_token in tokenizer_config.json")
    return int(tokenizer.eos_token_id)


def answer_ids(tokenizer: Any, answer: str) -> list[int]:
    """Token ids of an answer as the model is trained to produce it: the text, then EOS."""
    return list(tokenizer(answer.strip(), add_special_tokens=False)["input_ids"]) + [eos_token_id(tokenizer)]


def encode_example(tokenizer: Any, address: str, answer: str, prefix: str = DEFAULT_PROMPT_PREFIX,
                   grounding: str = "none", candidates: Optional[Sequence[Any]] = None,
                   rng: Optional[random.Random] = None, detail: Optional[str] = None) -> tuple[list[int], list[int]]:
    """Token ids of the prompt and of the answer (answer ids end with EOS); ``candidates``, ``rng`` and ``detail``
    as in :func:`user_message` (training passes ``rng`` to shuffle the chains, ``[]`` to withhold them)."""
    prompt = render_prompt(tokenizer, address, prefix, grounding, candidates, rng, detail)
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    return list(prompt_ids), answer_ids(tokenizer, answer)


def decode_answer(tokenizer: Any, token_ids: list[int]) -> str:
    """Text of generated ids, cut at the first EOS, without special tokens."""
    eos = eos_token_id(tokenizer)
    if eos in token_ids:
        token_ids = token_ids[: token_ids.index(eos)]
    return tokenizer.decode(token_ids, skip_special_tokens=True).strip()
