"""OpenAI chat options the server honours: ``max_tokens`` / ``max_completion_tokens``, ``stop``, ``logprobs``.

What each does to generated text (free decoding, and the free fallback of constrained decoding when the
gazetteer has no candidate), so a client gets what OpenAI would give it:
- ``max_tokens`` / ``max_completion_tokens`` (an integer >= 1; with both, the smaller): the answer is cut after
  that many tokens and its ``finish_reason`` is ``"length"``. Decoding is greedy, so the first N tokens of a
  longer answer are exactly what a generation capped at N gives. The server's own ``--max-new-tokens`` stays
  the upper bound of free generation.
- ``stop`` (a string or a list of 1-4 non-empty strings): the answer ends before the first stop string it
  contains, ``finish_reason`` ``"stop"``; ``completion_tokens`` counts the tokens up to the one that completed
  the stop string, as a generation that watched for it would have produced.
- ``logprobs: true`` (and ``top_logprobs``) are refused with a 400: token log-probabilities are not computed
  (the answer's probability among the gazetteer's candidates is ``address_completion.probability``).
Constrained decoding: an answer chosen among the gazetteer's candidates is a whole existing chain + the input's
detail, not generated text, so ``max_tokens`` and ``stop`` leave it whole (``finish_reason`` ``"stop"``) —
exactly as ``--max-new-tokens`` bounds free generation only, and as ``predict`` / ``evaluate`` answer locally
(evaluate's ``openai`` system sends its ``max_new_tokens`` as ``max_tokens``). An abstention (the input returned
unchanged) is never cut either: it is not generated text.
Invalid values are a 400 naming the field (OpenAI's status for a bad parameter).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Optional

from ..data.prompt import decode_answer
from .protocol import RequestError

MAX_STOP_STRINGS = 4  # OpenAI's limit


@dataclass(frozen=True)
class ChatOptions:
    """The options of one chat request that change its answer."""

    max_tokens: Optional[int] = None
    stop: tuple[str, ...] = ()

    @property
    def cuts(self) -> bool:
        return self.max_tokens is not None or bool(self.stop)


def _token_limit(body: dict, name: str) -> Optional[int]:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise RequestError(400, f"'{name}' must be an integer >= 1 (the most tokens of the answer), got "
                                f"{value!r}", param=name, code="invalid_value")
    return value


def _stop_strings(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    items = [value] if isinstance(value, str) else value
    if (not isinstance(items, list) or not 1 <= len(items) <= MAX_STOP_STRINGS
            or not all(isinstance(item, str) and item for item in items)):
        raise RequestError(400, f"'stop' must be a non-empty string or a list of 1-{MAX_STOP_STRINGS} non-empty "
                                f"strings, got {value!r}", param="stop", code="invalid_value")
    return tuple(items)


def chat_options(body: dict) -> ChatOptions:
    """The answer-changing options of a chat request body, or RequestError 400 naming the bad field."""
    logprobs = body.get("logprobs")
    if logprobs not in (None, False):
        if logprobs is not True:
            raise RequestError(400, f"'logprobs' must be true or false, got {logprobs!r}", param="logprobs",
                               code="invalid_value")
        raise RequestError(400, "'logprobs' is not supported: this server computes no token log-probabilities; "
                                "a constrained answer's probability among the gazetteer's candidates is in "
                                "choices[0].address_completion.probability", param="logprobs",
                           code="unsupported_parameter")
    if body.get("top_logprobs") is not None:
        raise RequestError(400, "'top_logprobs' is not supported: this server computes no token log-probabilities",
                           param="top_logprobs", code="unsupported_parameter")
    limits = [limit for limit in (_token_limit(body, "max_tokens"), _token_limit(body, "max_completion_tokens"))
              if limit is not None]
    return ChatOptions(max_tokens=min(limits) if limits else None, stop=_stop_strings(body.get("stop")))


def _first_stop(text: str, stops: tuple[str, ...]) -> Optional[int]:
    found = [position for position in (text.find(stop) for stop in stops) if position >= 0]
    return min(found) if found else None


def limit_completion(completion: Any, tokenizer: Any, options: ChatOptions) -> Any:
    """``completion`` (a generate.Completion) cut by ``options``: max_tokens first, then the stop strings.

    Text is decoded from the cut token ids (a character split across the cut is dropped, not shown as U+FFFD).
    """
    if not options.cuts or completion.abstained or not completion.token_ids or completion.decoding == "constrained":
        return completion  # not generated text: a candidate chosen whole, or the input given back
    ids = list(completion.token_ids)
    finish = completion.finish_reason
    text = completion.text
    if options.max_tokens is not None and len(ids) > options.max_tokens:
        ids, finish = ids[:options.max_tokens], "length"
        text = decode_answer(tokenizer, ids).rstrip("\ufffd")
    if options.stop and _first_stop(text, options.stop) is not None:
        for count in range(1, len(ids) + 1):  # the token that completes a stop string ends generation
            prefix = decode_answer(tokenizer, ids[:count])
            position = _first_stop(prefix, options.stop)
            if position is not None:
                ids, finish, text = ids[:count], "stop", prefix[:position].rstrip()
                break
    return replace(completion, text=text, finish_reason=finish, completion_tokens=len(ids), token_ids=tuple(ids))
