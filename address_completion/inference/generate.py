"""Decoding, free or constrained: the one entry point used by predict, serve, evaluate and training's eval.

Free decoding (``decoding="free"``) is batched greedy generation, described below. Constrained decoding
(``decoding="constrained"``, the default of the CLI and configs) lets the model choose among the answers the
gazetteer proposes (:func:`gazetteer.completion_candidates`): every candidate answer is scored by the model
— the sum of the log-probabilities of its tokens and of the EOS, teacher-forced in one batched forward pass
(:func:`score_answers`), no token-by-token loop — and the best one is the answer, with its probability among
the candidates (softmax over the candidates' scores). A single candidate needs no forward pass: its
probability among the candidates is 1 whatever the model says. With no candidate the completer falls back to
free greedy generation and says so (``decoding="free_fallback"``). With ``min_confidence`` P the input is
returned unchanged, marked abstained, when the best probability is below P — and, for P > 0, when there is
no candidate at all (nothing vouches for a generated chain).

Whatever path made it, an answer is returned as a completion only when :func:`answer_problem` finds nothing
wrong with it: it starts with a current administrative chain written in full (province first) whose divisions
nest, and it is not the prompt's own text (its prefix, its candidates line, the no-candidate placeholder 无)
or empty. Otherwise the input comes back unchanged, marked abstained, with the ``reason`` — the one check
predict, serve and evaluate's paddle system share, since all three complete through :class:`Completer`.

Greedy generation:

Prompts are left-padded so every row's answer starts at the same column, the KV cache is on, and
position ids count only real tokens (``clip(cumsum(mask) - 1, 0)``), so a padded row computes
exactly what the same prompt computes alone. Decoding is plain argmax (the model folder's
sampling and repetition-penalty settings are ignored on purpose: evaluation needs the single
most likely answer, and a repetition penalty would punish addresses that repeat characters).
Generation stops at the tokenizer's EOS (``<|im_end|>``) and at every EOS id listed in the model's
generation config (``<|endoftext|>`` for Qwen2.5), or after ``max_new_tokens``.

The loop is the project's own (:func:`_greedy_loop`): the model's body with its KV cache, and the LM head
on the last position only — it gives PaddleNLP's ``generate`` tokens (tests/test_generate.py checks it
token for token), without the full-vocabulary logits of every prompt position that ``generate``
computes and discards. Models without a body + head layout go through ``generate`` itself.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from typing import Any, Optional, Sequence

from .. import DEFAULT_PROMPT_PREFIX
from ..data.gazetteer import DEFAULT_DETAIL, DETAILS, MAX_CANDIDATES, chain_problem, check_detail
from ..data.prompt import (DECODINGS, GROUNDINGS, NO_CANDIDATE, address_candidates, answer_ids, check_grounding,
                           decode_answer, eos_token_id, has_prefix, render_prompt, strip_prefix)
from ..errors import ConfigError
from ..model.encoding import encode_prompts, left_padded_batch, padding_token_id
from ..model.modeling import load_model, load_tokenizer
from ..progress import progress as progress_tracker
from ..runtime import import_paddle, prepare_environment

# Why an input came back unchanged (Completion.reason): stable phrases, so callers can count them.
REASON_LOW_CONFIDENCE = "probability below min_confidence"
REASON_NO_CANDIDATE = "no candidate, and min_confidence > 0: nothing vouches for a generated chain"
REASON_EMPTY = "empty answer"
REASON_PLACEHOLDER = f"not an address: {NO_CANDIDATE}, the prompt's no-candidate placeholder"
REASON_PROMPT_TEXT = "not an address: the prompt's own text"
REASON_CANDIDATES_LINE = "not an address: the prompt's candidates line"
REASON_NOT_CURRENT = "not a current chain: the answer does not start with a current division chain written in full"
REASON_NOT_NESTING = "not a current chain: its divisions do not nest"
_CANDIDATES_LABEL = re.compile(r"候选[ \t]*[:：]")


def answer_problem(answer: str, *, prefix: str = DEFAULT_PROMPT_PREFIX, gazetteer: Any = None) -> Optional[str]:
    """Why ``answer`` may not be returned as a completion (one of the ``REASON_*`` phrases), or None when it may.

    An answer may be returned when it is an address that starts with a current chain written in full whose
    names nest (:func:`gazetteer.chain_problem`: the answer is one of its own candidates — a current chain,
    province first, every name in its current full form, not a former name 江干区, a short name 西安, a typo
    杭洲, traditional characters — and no name right after the chain contradicts it, as 西安市 after 山西省
    does). Empty answers, the prompt's no-candidate placeholder 无, and answers carrying the prompt's prefix or
    candidates line are not addresses. ``gazetteer`` defaults to the bundled one.
    """
    text = (answer or "").strip()
    if not text:
        return REASON_EMPTY
    if text == NO_CANDIDATE:
        return REASON_PLACEHOLDER
    if has_prefix(text, prefix) or has_prefix(text, DEFAULT_PROMPT_PREFIX):
        return REASON_PROMPT_TEXT
    if _CANDIDATES_LABEL.search(text):
        return REASON_CANDIDATES_LINE
    problem = chain_problem(text, gazetteer)
    return {None: None, "not_current": REASON_NOT_CURRENT, "not_nesting": REASON_NOT_NESTING}[problem]


# Distinct prompts encoded in one forward pass by the scorer (their candidates share each prompt's KV cache).
SCORE_BATCH_PROMPTS = 8


def check_decoding(decoding: str) -> str:
    """``decoding`` itself, or ValueError naming the allowed values."""
    if decoding not in DECODINGS:
        raise ValueError(f"decoding must be one of {', '.join(DECODINGS)}, got {decoding!r}")
    return decoding


def add_decoding_arguments(parser: Any) -> None:
    """--grounding / --decoding / --min-confidence / --detail, the same for every command that completes
    addresses."""
    parser.add_argument("--grounding", default="candidates", choices=GROUNDINGS,
                        help="candidates (default): the prompt carries the gazetteer's candidate chains; none: the "
                             "plain prompt. Use the setting the model was trained with")
    parser.add_argument("--decoding", default="constrained", choices=DECODINGS,
                        help="constrained (default): the model chooses among the gazetteer's candidate answers, so "
                             "every answer is an existing chain + your detail (free generation when there is no "
                             "candidate); free: greedy generation")
    parser.add_argument("--min-confidence", "--min_confidence", dest="min_confidence", type=float, default=0.0,
                        metavar="P", help="constrained decoding: return the input unchanged, marked abstained, when "
                                          "the best candidate's probability is below P (0-1; default 0); with P > 0 "
                                          "an input with no candidate abstains too, instead of free generation")
    parser.add_argument("--detail", default=DEFAULT_DETAIL, choices=DETAILS,
                        help="verbatim (default): an answer keeps every character written after the division names "
                             "(a repeated run, _, spaces, brackets); clean: the earlier folding (separators and "
                             "repeated names after the chain dropped, NFKC). Use the setting the data was prepared "
                             "with")


def decoding_options(args: Any) -> dict[str, Any]:
    """Completer.load keyword arguments from :func:`add_decoding_arguments`' options (ConfigError if out of range)."""
    try:
        check_min_confidence(args.min_confidence, args.decoding)
    except ValueError as error:
        raise ConfigError(f"--min-confidence: {error}") from None
    return {"grounding": args.grounding, "decoding": args.decoding, "min_confidence": args.min_confidence,
            "detail": getattr(args, "detail", DEFAULT_DETAIL)}


def check_min_confidence(value: float, decoding: str = "constrained") -> float:
    """A probability threshold in [0, 1], or ValueError; above 0 only with constrained decoding (it is a threshold
    on the candidates' probabilities, which free decoding does not compute)."""
    if not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"min_confidence must be between 0 and 1, got {value}")
    if float(value) > 0 and decoding == "free":
        raise ValueError(f"min_confidence {float(value):g} needs constrained decoding: it is a threshold on the "
                         "candidates' probabilities, which free decoding does not compute")
    return float(value)


@dataclass(frozen=True)
class Completion:
    """One answer with what an API response reports about it.

    ``decoding`` says how it was made: "free" (greedy generation), "constrained" (chosen among the
    gazetteer's candidates), "free_fallback" (constrained asked, no candidate: greedy generation).
    ``candidates`` lists (answer, probability among candidates) best first for constrained answers;
    ``probability`` is the chosen one's; ``abstained`` marks an input returned unchanged: that
    probability was below ``min_confidence``, there was no candidate to vouch for with ``min_confidence``
    > 0, or the answer was no current address (:func:`answer_problem`: empty, 无, the prompt's text, a chain
    that does not exist today); ``reason`` says which (a ``REASON_*`` phrase), None for an answer.
    """

    text: str
    finish_reason: str  # "stop" (an EOS id was generated / a candidate chosen) or "length" (max_new_tokens)
    prompt_tokens: int
    completion_tokens: int
    decoding: str = "free"
    probability: Optional[float] = None
    candidates: tuple[tuple[str, float], ...] = ()
    abstained: bool = False
    more_candidates: bool = False  # the gazetteer had more readings than the cap (城关镇…): the list is cut
    reason: Optional[str] = None  # why the input came back unchanged (abstained), a REASON_* phrase
    # The answer's token ids as generated / scored (the stop id included when reached); the server's
    # max_tokens and stop cut an answer by them (openai_fields.limit_completion). Empty for an abstention.
    token_ids: tuple[int, ...] = ()

    def details(self) -> dict[str, Any]:
        """The non-standard fields as JSON-ready data (predict --json, the server's extra field, evaluation)."""
        return {"decoding": self.decoding, "probability": self.probability, "abstained": self.abstained,
                "reason": self.reason,
                "candidates": [{"text": text, "probability": prob} for text, prob in self.candidates],
                "more_candidates": self.more_candidates}


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
    parts = body_and_head(model)
    with paddle.no_grad():
        if parts is not None:
            rows = _greedy_loop(*parts, input_ids, attention_mask, position_ids, max_new_tokens=max_new_tokens,
                                stop_ids=stop_ids, pad_id=pad_id)
        else:  # a model without the body + head layout: PaddleNLP's own loop
            rows = paddlenlp_greedy(model, input_ids, attention_mask, position_ids, max_new_tokens=max_new_tokens,
                                    stop_ids=stop_ids, pad_id=pad_id)
    return [cut_at_stop(row, stop_ids) for row in rows]


def paddlenlp_greedy(model: Any, input_ids: list[list[int]], attention_mask: list[list[int]],
                     position_ids: list[list[int]], *, max_new_tokens: int, stop_ids: Sequence[int],
                     pad_id: int) -> list[list[int]]:
    """PaddleNLP's ``model.generate`` in greedy mode on a left-padded batch: new ids per row (a finished row
    continues with ``pad_id``), not cut. The reference the project's own loop is checked and timed against."""
    import paddle

    output_ids, _ = model.generate(
        input_ids=paddle.to_tensor(input_ids, dtype="int64"),
        attention_mask=paddle.to_tensor(attention_mask, dtype="int64"),
        position_ids=paddle.to_tensor(position_ids, dtype="int64"),
        max_new_tokens=max_new_tokens,
        decode_strategy="greedy_search",
        repetition_penalty=1.0,
        eos_token_id=list(stop_ids) if len(stop_ids) > 1 else stop_ids[0],
        pad_token_id=pad_id,
        use_cache=True,
    )
    return output_ids.numpy().tolist()


def _greedy_loop(body: Any, head: Any, input_ids: list[list[int]], attention_mask: list[list[int]],
                 position_ids: list[list[int]], *, max_new_tokens: int, stop_ids: Sequence[int],
                 pad_id: int) -> list[list[int]]:
    """Greedy decoding over the body's forward with its KV cache; the LM head runs on the last position only.

    The tokens PaddleNLP's ``generate(decode_strategy="greedy_search")`` gives for the same inputs (argmax,
    a finished row continues with ``pad_id``, stop when every row has generated a stop id or after
    ``max_new_tokens``), without its per-step machinery and without the prompt's full-vocabulary logits
    it computes and throws away (the head over 151,936 ids for every prompt position). Returns one list
    of new ids per row, all of the same length.
    """
    import numpy as np
    import paddle

    def tensor(value: Any) -> Any:
        return paddle.to_tensor(value, dtype="int64")

    mask, next_position = tensor(attention_mask), tensor([row[-1] + 1 for row in position_ids]).unsqueeze(-1)
    output = body(input_ids=tensor(input_ids), attention_mask=mask, position_ids=tensor(position_ids),
                  use_cache=True, return_dict=True)
    stops = np.asarray(list(stop_ids))
    finished = np.zeros(len(input_ids), dtype=bool)
    generated: list[Any] = []
    while True:
        logits = head(output[0][:, -1:, :])  # [batch, 1, vocab]
        tokens = np.where(finished, pad_id, paddle.argmax(logits[:, -1, :], axis=-1).numpy())
        generated.append(tokens)
        finished |= np.isin(tokens, stops)
        if finished.all() or len(generated) == max_new_tokens:
            return np.stack(generated, axis=1).tolist()
        mask = paddle.concat([mask, paddle.ones([len(input_ids), 1], dtype="int64")], axis=-1)
        output = body(input_ids=tensor(tokens).unsqueeze(-1), attention_mask=mask, position_ids=next_position,
                      past_key_values=output.past_key_values, use_cache=True, return_dict=True)
        next_position = next_position + 1


def greedy_generate(model: Any, tokenizer: Any, prompts: list[str], *, max_new_tokens: int) -> list[list[int]]:
    """Greedy continuation ids of rendered prompts (one batch, order kept); each ends at its stop id if reached."""
    return generate_token_ids(model, tokenizer, encode_prompts(tokenizer, prompts), max_new_tokens=max_new_tokens)


def body_and_head(model: Any) -> Optional[tuple[Any, Any]]:
    """The transformer body (e.g. ``qwen2``) and the LM head of a causal LM (inside a PaddleNLP LoRAModel,
    whose LoRA layers live in its inner model, too), or None for models without that layout. Running the
    head on chosen positions only is what keeps training's loss and constrained scoring cheap."""
    inner = getattr(model, "model", None)
    lm = inner if inner is not None and hasattr(model, "lora_config") else model
    body = getattr(lm, getattr(lm, "base_model_prefix", ""), None)
    head = getattr(lm, "lm_head", None)
    return None if body is None or head is None else (body, head)


def _target_log_probs(logits: Any, targets: Sequence[int]) -> list[float]:
    """log_softmax(logits)[row, target] for a NumPy [N, vocab] array: target logit minus log-sum-exp.

    In NumPy because Paddle 3.3.1's CPU log_softmax takes ~40 s on [18, 151936] (measured here).
    """
    import numpy as np

    top = logits.max(axis=-1, keepdims=True)
    log_norm = top[:, 0] + np.log(np.exp(logits - top).sum(axis=-1))
    return (logits[np.arange(len(targets)), np.asarray(targets)] - log_norm).astype(float).tolist()


def score_answers(model: Any, pairs: Sequence[tuple[Sequence[int], Sequence[int]]], *, pad_id: int,
                  batch_prompts: int = SCORE_BATCH_PROMPTS) -> list[float]:
    """Log-probability (natural log, summed) of each answer given its prompt, teacher-forced.

    ``pairs`` holds (prompt ids, answer ids ending with EOS). Each distinct prompt is encoded once
    (``batch_prompts`` prompts per forward pass, left-padded, positions counted from the first real
    token); its KV cache is then shared by all its candidate answers, which are scored together in one
    more forward pass (right-padded: causal attention keeps real positions blind to the padding after
    them). The LM head runs only where an answer token is predicted. No sequential decoding. Returns
    one float per pair, in order. Raises ValueError for an empty prompt or answer.
    """
    import paddle

    if any(not prompt or not answer for prompt, answer in pairs):
        raise ValueError("cannot score an empty prompt or answer")
    parts = body_and_head(model)
    if parts is None:
        raise ValueError(f"constrained decoding needs a causal LM with a base model and an lm_head; "
                         f"{type(model).__name__} has none (use decoding free)")
    body, head = parts
    prompts = list(dict.fromkeys(tuple(prompt) for prompt, _ in pairs))
    number = {prompt: index for index, prompt in enumerate(prompts)}
    scores = [0.0] * len(pairs)
    with paddle.no_grad():
        for start in range(0, len(prompts), batch_prompts):
            chunk = prompts[start:start + batch_prompts]
            members = [i for i, (prompt, _) in enumerate(pairs) if start <= number[tuple(prompt)] < start + len(chunk)]
            rows = [(number[tuple(pairs[i][0])] - start, list(pairs[i][1])) for i in members]
            for i, score in zip(members, _score_chunk(body, head, chunk, rows, pad_id)):
                scores[i] = score
    return scores


def _score_chunk(body: Any, head: Any, prompts: Sequence[Sequence[int]], rows: Sequence[tuple[int, list[int]]],
                 pad_id: int) -> list[float]:
    """Summed log-probs of ``rows`` = (index into ``prompts``, answer ids): one prompt pass, one answer pass."""
    import paddle

    def tensor(value: Any) -> Any:
        return paddle.to_tensor(value, dtype="int64")

    ids, mask, positions = left_padded_batch(prompts, pad_id)
    encoded = body(input_ids=tensor(ids), attention_mask=tensor(mask), position_ids=tensor(positions),
                   use_cache=True, return_dict=True)
    select = tensor([prompt for prompt, _ in rows])
    vectors = [paddle.index_select(encoded[0][:, -1, :], select, axis=0)]  # predicts each answer's first token
    targets = [answer[0] for _, answer in rows]
    owners = list(range(len(rows)))
    tails = [answer[:-1] for _, answer in rows]  # fed to predict answer[1:]
    width = max(len(tail) for tail in tails)
    if width:
        cache = [tuple(paddle.index_select(part, select, axis=0) for part in layer)
                 for layer in encoded.past_key_values]
        hidden = body(
            input_ids=tensor([tail + [pad_id] * (width - len(tail)) for tail in tails]),
            attention_mask=tensor([mask[prompt] + [1] * len(tail) + [0] * (width - len(tail))
                                   for (prompt, _), tail in zip(rows, tails)]),
            position_ids=tensor([[len(prompts[prompt]) + j for j in range(width)] for prompt, _ in rows]),
            past_key_values=cache, use_cache=True, return_dict=True)[0]
        index = [[row, j] for row, tail in enumerate(tails) for j in range(len(tail))]
        vectors.append(paddle.gather_nd(hidden, tensor(index)))
        targets += [rows[row][1][j + 1] for row, j in index]
        owners += [row for row, _ in index]
    logits = head(paddle.concat(vectors, axis=0).unsqueeze(0))[0]
    picked = _target_log_probs(logits.astype("float32").numpy(), targets)
    sums = [0.0] * len(rows)
    for owner, value in zip(owners, picked):
        sums[owner] += value
    return sums


def candidate_probabilities(scores: Sequence[float]) -> list[float]:
    """Softmax of summed log-probabilities: each candidate's probability among the candidates."""
    top = max(scores)
    weights = [math.exp(score - top) for score in scores]
    total = sum(weights)
    return [weight / total for weight in weights]


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
    grounding: str = "none"  # prompt.GROUNDINGS
    decoding: str = "free"  # DECODINGS
    min_confidence: float = 0.0
    detail: str = DEFAULT_DETAIL  # gazetteer.DETAILS: how the candidates keep the text after the division names
    # answer_problem() on every answer. Off only where the model is used for something else than addresses (a
    # general model's sanity question in the GGUF import tests): predict, serve and evaluate always check.
    check_answers: bool = True
    stop_ids: list[int] = field(init=False)

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be at least 1, got {self.max_new_tokens}")
        check_grounding(self.grounding)
        check_decoding(self.decoding)
        check_detail(self.detail)
        self.min_confidence = check_min_confidence(self.min_confidence, self.decoding)
        self.stop_ids = stop_token_ids(self.model, self.tokenizer)

    @classmethod
    def load(cls, model: str, *, lora_path: str | None = None, dtype: str = "float32", max_new_tokens: int = 64,
             prefix: str = DEFAULT_PROMPT_PREFIX, grounding: str = "none", decoding: str = "free",
             min_confidence: float = 0.0, flag: str = "--model", detail: str = DEFAULT_DETAIL) -> "Completer":
        """Load a model folder (or hub name), optionally with an unmerged LoRA adapter, in eval mode.

        ``flag`` is the option that named the model (error hints name it). Raises ConfigError for a bad
        max_new_tokens / grounding / decoding / min_confidence / detail before loading.
        """
        if max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
        try:
            check_grounding(grounding), check_decoding(decoding), check_min_confidence(min_confidence)
            check_detail(detail)
        except ValueError as error:
            raise ConfigError(str(error)) from error
        prepare_environment(model=model)  # idempotent; callers that ran setup_runtime lose nothing
        import_paddle()
        loaded = load_model(model, dtype=dtype, lora_path=lora_path, flag=flag)
        loaded.eval()
        name = str(model).rstrip("/").split("/")[-1] or str(model)
        if lora_path:
            name += "+" + str(lora_path).rstrip("/").split("/")[-1]
        return cls(model=loaded, tokenizer=load_tokenizer(model, flag), max_new_tokens=max_new_tokens, prefix=prefix,
                   name=name, grounding=grounding, decoding=decoding, min_confidence=min_confidence, detail=detail)

    @property
    def needs_candidates(self) -> bool:
        return self.grounding == "candidates" or self.decoding == "constrained"

    def prompt_for(self, address: str, candidates: Optional[Sequence[Any]] = None) -> str:
        return render_prompt(self.tokenizer, address, self.prefix, self.grounding, candidates)

    def complete_detailed(self, addresses: Sequence[str], *, batch_size: int = 16, progress: bool = False,
                          details: Optional[Sequence[Optional[str]]] = None) -> list[Completion]:
        """Completions in input order (free, constrained or free fallback, as ``decoding`` says), each checked by
        :func:`answer_problem` (a failing answer becomes the input unchanged, abstained, with its reason).

        ``addresses`` may carry the prompt prefix (user text): it is stripped here, once, and everything below
        works on the bare address, which is also the text an abstention returns.

        ``details`` gives each address its own detail setting (the server's per-request option; None entries
        and a missing list mean :attr:`detail`). Free batches are formed by prompt length to limit padding; a
        batch gives exactly the one-at-a-time answers. Raises ValueError for batch_size < 1 or an unknown
        detail setting.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        modes = [check_detail(mode or self.detail) for mode in (details or [None] * len(addresses))]
        if len(modes) != len(addresses):
            raise ValueError(f"{len(modes)} detail settings for {len(addresses)} addresses")
        addresses = [strip_prefix(address, self.prefix) for address in addresses]
        found = [address_candidates(address, MAX_CANDIDATES + 1, mode) if self.needs_candidates
                 else None for address, mode in zip(addresses, modes)]
        cut = [bool(f) and len(f) > MAX_CANDIDATES for f in found]  # one more than the cap tells a list was cut
        candidates = [f[:MAX_CANDIDATES] if f else f for f in found]
        prompt_ids = encode_prompts(self.tokenizer, [self.prompt_for(address, found)
                                                     for address, found in zip(addresses, candidates)])
        results: list[Completion | None] = [None] * len(prompt_ids)
        free = list(range(len(addresses)))
        with progress_tracker(len(prompt_ids), "completing", "addr", enabled=progress, leave=False) as bar:
            if self.decoding == "constrained":
                free = [i for i in free if not candidates[i]]
                if self.min_confidence > 0:  # nothing to vouch for an answer without candidates: abstain
                    for index in free:
                        results[index] = self._abstention(addresses[index], prompt_ids[index])
                    bar.update(len(free))
                    free = []
                chosen = [i for i in range(len(addresses)) if candidates[i]]
                for start in range(0, len(chosen), batch_size):
                    batch = chosen[start:start + batch_size]
                    for index, completion in zip(batch, self._choose(addresses, batch, prompt_ids, candidates)):
                        results[index] = replace(completion, more_candidates=cut[index])
                    bar.update(len(batch))
            decoding = "free_fallback" if self.decoding == "constrained" else "free"
            for batch in length_sorted_batches([len(prompt_ids[i]) for i in free], batch_size):
                batch = [free[i] for i in batch]
                generated = generate_token_ids(self.model, self.tokenizer, [prompt_ids[i] for i in batch],
                                               max_new_tokens=self.max_new_tokens, stop_ids=self.stop_ids)
                for index, new_ids in zip(batch, generated):
                    results[index] = self._completion(addresses[index], prompt_ids[index], new_ids, decoding)
                bar.update(len(batch))
        return [self._checked(address, result) for address, result in zip(addresses, results)]  # type: ignore

    def _checked(self, address: str, completion: Completion) -> Completion:
        """``completion``, or the input unchanged, abstained with the reason, when :func:`answer_problem` finds
        the answer is no current address — whatever path made it (one candidate, the model's choice, free
        generation, the free fallback)."""
        if completion.abstained or not self.check_answers:
            return completion
        reason = answer_problem(completion.text, prefix=self.prefix)
        if reason is None:
            return completion
        return replace(completion, text=address, abstained=True, reason=reason, token_ids=())

    def _choose(self, addresses: Sequence[str], batch: Sequence[int], prompt_ids: Sequence[Sequence[int]],
                candidates: Sequence[Any]) -> list[Completion]:
        """Constrained answers for ``batch``: every candidate of every address scored in shared forward passes."""
        answers = {index: [(c.text, answer_ids(self.tokenizer, c.text)) for c in candidates[index]]
                   for index in batch}
        to_score = [index for index in batch if len(answers[index]) > 1]  # one candidate: probability 1
        scores = iter(score_answers(self.model, [(prompt_ids[i], ids) for i in to_score for _, ids in answers[i]],
                                    pad_id=padding_token_id(self.tokenizer)))
        completions = []
        for index in batch:
            options = answers[index]
            probabilities = (candidate_probabilities([next(scores) for _ in options]) if len(options) > 1
                             else [1.0])
            ranked = sorted(zip(options, probabilities), key=lambda item: -item[1])
            (best_text, best_ids), best_probability = ranked[0]
            abstained = best_probability < self.min_confidence
            completions.append(Completion(
                text=addresses[index] if abstained else best_text, finish_reason="stop",
                prompt_tokens=len(prompt_ids[index]), completion_tokens=len(best_ids), decoding="constrained",
                probability=best_probability, candidates=tuple((text, p) for (text, _), p in ranked),
                abstained=abstained, reason=REASON_LOW_CONFIDENCE if abstained else None,
                token_ids=() if abstained else tuple(best_ids)))
        return completions

    def complete(self, addresses: list[str], *, batch_size: int = 16, progress: bool = False) -> list[str]:
        """Completed addresses in input order; a batch gives exactly the one-at-a-time answers."""
        return [item.text for item in self.complete_detailed(addresses, batch_size=batch_size, progress=progress)]

    def _abstention(self, address: str, prompt_ids: Sequence[int]) -> Completion:
        """The input unchanged, marked abstained: constrained decoding with min_confidence and no candidate."""
        return Completion(text=address, finish_reason="stop", prompt_tokens=len(prompt_ids),
                          completion_tokens=0, decoding="constrained", abstained=True, reason=REASON_NO_CANDIDATE)

    def _completion(self, address: str, prompt_ids: Sequence[int], new_ids: list[int],
                    decoding: str = "free") -> Completion:
        """A free answer; an empty one (the model stopped at once, or made only blanks) is no answer, so it
        comes back as the input unchanged, marked abstained — never as an empty "success"."""
        stopped = bool(new_ids) and new_ids[-1] in self.stop_ids
        text = decode_answer(self.tokenizer, new_ids)
        return Completion(text=text or address, finish_reason="stop" if stopped else "length",
                          prompt_tokens=len(prompt_ids), completion_tokens=len(new_ids), decoding=decoding,
                          abstained=not text, reason=None if text else REASON_EMPTY,
                          token_ids=tuple(new_ids) if text else ())
