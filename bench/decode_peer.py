"""Paddle's greedy decoding and constrained scorer against HF transformers on torch CPU, alternated in one run.

Used by ``bench/generate_throughput.py --peer``. Each framework lives in its own worker process (two
framework thread pools in one process would spin against each other), both with the same number of
threads; the torch worker runs with the Python of its own venv (``.venv-peer``, see
bench/peer-requirements.txt: transformers 5 and PaddleNLP 3.0.0b4 need incompatible huggingface_hub). The Paddle worker builds the random model, renders and tokenizes the project's real prompts
(prompt.py, the bundled test inputs) and writes the SAME weights as a Hugging Face Qwen2 folder; the torch
worker loads that folder with transformers and receives the very same token ids. Stop ids are disabled on
both sides, so every row generates exactly ``--max-new-tokens`` tokens, and the tokens are compared.

Per round, every implementation decodes every batch once; the order of the implementations rotates
from round to round. "paddle / peer" is each round's Paddle time over the same round's transformers time;
the table prints its median and its spread (min-max over the rounds).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

NEVER_GENERATED = -1  # a stop id no token has: every row decodes exactly max_new_tokens
PADDLE_IMPLS = {"paddle": "project loop (generate.py)", "paddlenlp": "PaddleNLP generate"}


# ---------------------------------------------------------------- Paddle -> Hugging Face weights


def hf_state_dict(paddle_state: dict[str, Any], tied: bool) -> dict[str, Any]:
    """A Paddle Qwen2 state dict (NumPy arrays) in transformers' layout: ``qwen2.`` -> ``model.``, every 2-D
    weight but the embedding transposed (Paddle's Linear stores [in, out], torch's [out, in]), the LM head
    dropped when it is the tied embedding."""
    import numpy as np

    converted = {}
    for name, value in paddle_state.items():
        if tied and name == "lm_head.weight":
            continue
        if value.ndim == 2 and not name.endswith("embed_tokens.weight"):
            value = value.T
        hf_name = "model." + name[len("qwen2."):] if name.startswith("qwen2.") else name
        converted[hf_name] = np.ascontiguousarray(value, dtype=np.float32)
    return converted


def write_hf_folder(model: Any, config: dict[str, Any], folder: Path) -> None:
    """``model``'s weights and config as a transformers Qwen2 folder (model.safetensors + config.json)."""
    import json

    from safetensors.numpy import save_file

    state = {name: tensor.numpy() for name, tensor in model.state_dict().items()}
    save_file(hf_state_dict(state, bool(config.get("tie_word_embeddings"))), str(folder / "model.safetensors"),
              metadata={"format": "pt"})
    hf_config = {key: value for key, value in config.items() if key not in ("dtype", "use_flash_attention")}
    hf_config.update(architectures=["Qwen2ForCausalLM"], torch_dtype="float32")
    (folder / "config.json").write_text(json.dumps(hf_config, indent=2), encoding="utf-8")


# ---------------------------------------------------------------- workers


class PaddleWorker:
    """The random model, the prompts, and Paddle's two greedy loops and its scorer."""

    def __init__(self, options: dict[str, Any]):
        from address_completion.runtime import prepare_environment

        prepare_environment(offline=True)
        import logging

        import paddle
        from paddlenlp.transformers import AutoTokenizer

        from address_completion.model import speedups, tokenizer as qwen_tokenizer
        from address_completion.model.default_model import ModelShape, create_model, model_config
        from address_completion.inference.generate import Completer, encode_prompts, padding_token_id
        from address_completion.data.prompt import address_candidates, answer_ids

        logging.getLogger("PaddleNLP").setLevel(logging.WARNING)
        speedups.apply()  # what load_model applies for predict and serve: the bench times the product's code
        self.paddle = paddle
        with tempfile.TemporaryDirectory() as folder:
            self.tokenizer = AutoTokenizer.from_pretrained(str(qwen_tokenizer.write_qwen25_tokenizer(folder)))
        shape = ModelShape(**options["shape"])
        self.model = create_model(shape, options["seed"])
        self.pad_id = padding_token_id(self.tokenizer)
        completer = Completer(model=self.model, tokenizer=self.tokenizer, grounding=options["grounding"])
        addresses = options["addresses"]
        self.prompt_ids = encode_prompts(self.tokenizer, [
            completer.prompt_for(address, address_candidates(address) if options["grounding"] == "candidates"
                                 else None) for address in addresses])
        self.pairs = []  # per ambiguous address: (prompt ids, answer ids) of each candidate
        for address in options["ambiguous"]:
            candidates = address_candidates(address)
            prompt = encode_prompts(self.tokenizer, [completer.prompt_for(address, candidates)])[0]
            self.pairs.append([(prompt, answer_ids(self.tokenizer, c.text)) for c in candidates])
        if options.get("hf_folder"):
            write_hf_folder(self.model, model_config(shape), Path(options["hf_folder"]))
        self.max_new_tokens = options["max_new_tokens"]

    def info(self) -> dict[str, Any]:
        return {"prompt_ids": self.prompt_ids, "pairs": self.pairs, "pad_id": self.pad_id,
                "threads": int(os.environ.get("OMP_NUM_THREADS", "0"))}

    def run(self, request: dict[str, Any]) -> dict[str, Any]:
        from address_completion.inference.generate import generate_token_ids, left_padded_batch, paddlenlp_greedy, score_answers

        batch = request["batch"]
        started = time.perf_counter()
        if request["work"] == "score":
            result = score_answers(self.model, [pair for pairs in self.pairs[:batch] for pair in pairs],
                                   pad_id=self.pad_id)
        elif request["impl"] == "paddle":
            result = generate_token_ids(self.model, self.tokenizer, self.prompt_ids[:batch],
                                        max_new_tokens=self.max_new_tokens, stop_ids=[NEVER_GENERATED])
        else:
            with self.paddle.no_grad():
                result = paddlenlp_greedy(self.model, *left_padded_batch(self.prompt_ids[:batch], self.pad_id),
                                          max_new_tokens=self.max_new_tokens, stop_ids=[NEVER_GENERATED],
                                          pad_id=self.pad_id)
        return {"seconds": time.perf_counter() - started, "result": result}


class TorchWorker:
    """The same weights in transformers' Qwen2ForCausalLM: ``generate`` (greedy) and a teacher-forced scorer."""

    def __init__(self, options: dict[str, Any]):
        import warnings

        import torch
        from transformers import AutoModelForCausalLM, GenerationConfig
        from transformers.utils import logging as hf_logging

        warnings.filterwarnings("ignore", category=FutureWarning)  # past_key_values' rename, once per call
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
        self.torch = torch
        self.model = AutoModelForCausalLM.from_pretrained(options["hf_folder"], dtype=torch.float32)
        self.model.eval()
        self.prompt_ids, self.pairs, self.pad_id = options["prompt_ids"], options["pairs"], options["pad_id"]
        # No EOS: every row generates exactly max_new_tokens, as on the Paddle side.
        self.generation = GenerationConfig(do_sample=False, num_beams=1, max_new_tokens=options["max_new_tokens"],
                                           eos_token_id=None, pad_token_id=self.pad_id, bos_token_id=None)

    def info(self) -> dict[str, Any]:
        return {"threads": self.torch.get_num_threads()}

    def run(self, request: dict[str, Any]) -> dict[str, Any]:
        batch = request["batch"]
        with self.torch.inference_mode():
            started = time.perf_counter()
            if request["work"] == "score":
                result = self.score([pair for pairs in self.pairs[:batch] for pair in pairs])
            else:
                result = self.generate(self.prompt_ids[:batch])
            seconds = time.perf_counter() - started
        return {"seconds": seconds, "result": result}

    def generate(self, prompts: Sequence[Sequence[int]]) -> list[list[int]]:
        """transformers' greedy ``generate`` on the left-padded batch: the new ids of each row."""
        ids, mask = self._left_padded(prompts)
        output = self.model.generate(input_ids=ids, attention_mask=mask, generation_config=self.generation)
        return output[:, ids.shape[1]:].tolist()

    def _left_padded(self, prompts: Sequence[Sequence[int]]) -> tuple[Any, Any]:
        width = max(len(row) for row in prompts)
        ids = [[self.pad_id] * (width - len(row)) + list(row) for row in prompts]
        mask = [[0] * (width - len(row)) + [1] * len(row) for row in prompts]
        return self.torch.tensor(ids), self.torch.tensor(mask)

    def score(self, pairs: Sequence[tuple[Sequence[int], Sequence[int]]]) -> list[float]:
        """What generate.score_answers computes, written for transformers: each prompt encoded once (left-padded),
        its KV cache repeated for its candidates, all answers teacher-forced in one more pass (right-padded),
        the LM head only where an answer token is predicted. Summed log-probs, one per pair."""
        torch = self.torch
        prompts = list(dict.fromkeys(tuple(prompt) for prompt, _ in pairs))
        owner = [prompts.index(tuple(prompt)) for prompt, _ in pairs]
        ids, mask = self._left_padded(prompts)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        encoded = self.model.model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True)
        select = torch.tensor(owner)
        cache = encoded.past_key_values
        cache.reorder_cache(select)  # index_select on the batch axis of every layer
        vectors = [encoded.last_hidden_state[select, -1]]
        targets = [answer[0] for _, answer in pairs]
        rows = list(range(len(pairs)))
        tails = [list(answer[:-1]) for _, answer in pairs]
        width = max(len(tail) for tail in tails)
        if width:
            tail_ids = torch.tensor([tail + [self.pad_id] * (width - len(tail)) for tail in tails])
            tail_mask = torch.tensor([[1] * len(tail) + [0] * (width - len(tail)) for tail in tails])
            lengths = torch.tensor([len(prompts[index]) for index in owner])
            hidden = self.model.model(
                input_ids=tail_ids, attention_mask=torch.cat([mask[select], tail_mask], dim=1),
                position_ids=lengths[:, None] + torch.arange(width)[None, :], past_key_values=cache,
                use_cache=True).last_hidden_state
            where = [(row, j) for row, tail in enumerate(tails) for j in range(len(tail))]
            vectors.append(hidden[[row for row, _ in where], [j for _, j in where]])
            targets += [pairs[row][1][j + 1] for row, j in where]
            rows += [row for row, _ in where]
        logits = self.model.lm_head(torch.cat(vectors))
        picked = torch.log_softmax(logits, dim=-1)[torch.arange(len(targets)), torch.tensor(targets)]
        sums = torch.zeros(len(pairs), dtype=torch.float64).index_add_(0, torch.tensor(rows), picked.double())
        return sums.tolist()


REPLY = "@@decode-peer-reply "  # marks the worker's answers on its stdout (libraries print there too)


def worker_main(kind: str) -> int:
    """A worker process (``decode_peer.py --worker KIND``): options as one JSON line on stdin, then one JSON
    request per line until EOF; each answer is one stdout line starting with REPLY."""
    import json

    def reply(message: dict[str, Any]) -> None:
        sys.stdout.write(REPLY + json.dumps(message) + "\n")
        sys.stdout.flush()

    options = json.loads(sys.stdin.readline())
    os.environ["OMP_NUM_THREADS"] = str(options["threads"])  # before either framework is imported
    try:
        worker = PaddleWorker(options) if kind == "paddle" else TorchWorker(options)
        reply({"info": worker.info()})
        for line in sys.stdin:
            reply(worker.run(json.loads(line)))
    except Exception as error:  # noqa: BLE001 - reported to the parent, which prints it and stops
        import traceback

        reply({"error": f"{kind} worker: {type(error).__name__}: {error}", "traceback": traceback.format_exc()})
        return 1
    return 0


class Worker:
    """The parent's handle on a worker process run by ``python`` (the peer has its own venv)."""

    def __init__(self, kind: str, python: str, options: dict[str, Any]):
        import json
        import subprocess

        self.json = json
        self.process = subprocess.Popen([python, str(Path(__file__).resolve()), "--worker", kind],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                        env={**os.environ, "OMP_NUM_THREADS": str(options["threads"])})
        self._send(options)
        self.info = self._receive()["info"]

    def _send(self, message: Any) -> None:
        self.process.stdin.write(self.json.dumps(message) + "\n")
        self.process.stdin.flush()

    def _receive(self) -> dict[str, Any]:
        for line in self.process.stdout:
            if line.startswith(REPLY):
                reply = self.json.loads(line[len(REPLY):])
                if "error" in reply:
                    print(reply["traceback"], file=sys.stderr)
                    raise RuntimeError(reply["error"])
                return reply
            sys.stderr.write(line)  # a library's own output, passed on
        raise RuntimeError(f"worker exited with status {self.process.wait()} before answering")

    def run(self, **request: Any) -> dict[str, Any]:
        self._send(request)
        return self._receive()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.stdin.close()
            try:
                self.process.wait(timeout=60)
            except Exception:  # noqa: BLE001 - a worker that does not stop is killed
                self.process.kill()


def peer_python(requested: Optional[str]) -> tuple[Optional[str], str]:
    """A Python that imports torch and transformers: ``requested``, else ./.venv-peer, else this one.
    Returns (path or None, why not)."""
    import subprocess

    root = Path(__file__).resolve().parents[1]
    candidates = [requested] if requested else [str(root / ".venv-peer" / "bin" / "python"), sys.executable]
    for python in candidates:
        if Path(python).exists() and subprocess.run([python, "-c", "import torch, transformers"],
                                                    capture_output=True).returncode == 0:
            return python, ""
    where = requested or "./.venv-peer or this Python"
    return None, (f"no torch + transformers in {where} (python -m venv .venv-peer && .venv-peer/bin/pip install "
                  f"-r bench/peer-requirements.txt; they cannot share the Paddle venv)")


# ---------------------------------------------------------------- the comparison


def spread(values: Sequence[float]) -> str:
    return f"{statistics.median(values):.2f} [{min(values):.2f}-{max(values):.2f}]"


def run_round(workers: dict[str, tuple[Worker, str]], works: Sequence[tuple[str, int]], round_number: int,
              times: dict[tuple[str, str, int], list[float]], results: dict[tuple[str, str, int], Any]) -> None:
    """Every (work, batch) once per implementation; the implementations' order rotates with the round."""
    names = list(workers)
    order = names[round_number % len(names):] + names[:round_number % len(names)]
    for work, batch in works:
        for name in order:
            worker, impl = workers[name]
            if work == "score" and name == "paddlenlp":
                continue  # one Paddle scorer
            reply = worker.run(work=work, batch=batch, impl=impl)
            times.setdefault((name, work, batch), []).append(reply["seconds"])
            results.setdefault((name, work, batch), reply["result"])


def identical_rows(mine: Sequence[Sequence[int]], peer: Sequence[Sequence[int]]) -> str:
    same = sum(list(a) == list(b) for a, b in zip(mine, peer))
    return f"{same}/{len(peer)}"


def print_peer_table(names: Sequence[str], works: Sequence[tuple[str, int]], times: dict, results: dict,
                     peer: Optional[str], labels: dict[str, str]) -> None:
    header = ["work", "batch", *[f"{labels[name]} s" for name in names]]
    own_vs_paddlenlp = "paddle" in names and "paddlenlp" in names
    if peer:
        header += [f"{name} / peer" for name in names if name != peer] + ["same tokens"]
    if own_vs_paddlenlp:
        header.append("paddle / paddlenlp")
    lines = []
    for work, batch in works:
        present = [name for name in names if (name, work, batch) in times]
        cells = [("greedy" if work == "free" else "scorer"), str(batch)]
        cells += [f"{statistics.median(times[name, work, batch]):.2f}" if name in present else "-" for name in names]
        if peer:
            for name in names:
                if name == peer:
                    continue
                if name in present and peer in present:
                    cells.append(spread([mine / theirs for mine, theirs in
                                         zip(times[name, work, batch], times[peer, work, batch])]))
                else:
                    cells.append("-")
            if work == "free":
                cells.append(", ".join(f"{name} {identical_rows(results[name, work, batch], results[peer, work, batch])}"
                                       for name in present if name != peer))
            else:
                cells.append(f"max |dlogp| {max_difference(results['paddle', work, batch], results[peer, work, batch])}")
        if own_vs_paddlenlp:
            cells.append(spread([mine / theirs for mine, theirs in zip(times["paddle", work, batch],
                                                                       times["paddlenlp", work, batch])])
                         if ("paddlenlp", work, batch) in times else "-")
        lines.append(cells)
    widths = [max(len(cell) for cell in column) for column in zip(header, *lines)]
    for cells in [header, ["-" * width for width in widths], *lines]:
        print("  ".join(cell.ljust(width) for cell, width in zip(cells, widths)).rstrip(), flush=True)


def max_difference(mine: Sequence[float], theirs: Sequence[float]) -> str:
    return f"{max(abs(a - b) for a, b in zip(mine, theirs)):.1e}"


def run(args: argparse.Namespace, shape: Any, addresses: Sequence[str], ambiguous: Sequence[str]) -> int:
    """The --peer comparison at one shape; prints the table. Returns the exit status."""
    from dataclasses import asdict

    from address_completion.runtime import usable_cores

    threads = args.threads or usable_cores()
    python, why_not = peer_python(args.peer_python)
    missing = python is None
    if missing:
        print(f"peer column skipped: {why_not}; timing Paddle alone", flush=True)
    batches = sorted(set(args.peer_batch_sizes))
    works = [("free", batch) for batch in batches]
    works += [("score", batch) for batch in batches if args.peer_scorer and batch <= len(ambiguous)]
    workers: dict[str, tuple[Worker, str]] = {}
    with tempfile.TemporaryDirectory() as folder:
        options = {"shape": asdict(shape), "seed": args.seed, "grounding": args.grounding, "threads": threads,
                   "addresses": list(addresses[:max(batches)]), "ambiguous": list(ambiguous[:max(batches)]),
                   "max_new_tokens": args.max_new_tokens, "hf_folder": None if missing else folder}
        print(f"building the model and prompts in the Paddle worker ({threads} threads) ...", file=sys.stderr,
              flush=True)
        paddle_worker = Worker("paddle", sys.executable, options)
        workers["paddle"] = (paddle_worker, "paddle")
        if args.peer_paddlenlp:
            workers["paddlenlp"] = (paddle_worker, "paddlenlp")
        if not missing:
            print("loading the same weights in transformers (torch worker) ...", file=sys.stderr, flush=True)
            workers["peer"] = (Worker("torch", python, {**options, **paddle_worker.info}), "torch")
        try:
            times: dict = {}
            results: dict = {}
            run_round(workers, works, -1, {}, {})  # warm-up: first-call allocations on every side
            for round_number in range(args.peer_rounds):
                print(f"  round {round_number + 1}/{args.peer_rounds} ...", file=sys.stderr, flush=True)
                run_round(workers, works, round_number, times, results)
        finally:
            for worker in {id(w): w for w, _ in workers.values()}.values():
                worker.close()
    lengths = [len(ids) for ids in paddle_worker.info["prompt_ids"]]
    labels = {"paddle": "paddle", "paddlenlp": "paddlenlp", "peer": "transformers"}
    print_peer_table(list(workers), works, times, results, "peer" if "peer" in workers else None, labels)
    candidates = [len(pairs) for pairs in paddle_worker.info["pairs"]]
    print(f"greedy: the first {max(batches)} bundled test inputs (prompt grounding={args.grounding}, "
          f"{min(lengths)}-{max(lengths)} prompt tokens, left-padded), exactly {args.max_new_tokens} new tokens per row "
          f"(stop ids disabled on both sides); scorer: generate.score_answers over the candidates of the first "
          f"batch ambiguous inputs ({'/'.join(map(str, candidates))} candidates), transformers: the same algorithm "
          f"(bench/decode_peer.py). paddle = the project's loop (generate.py), paddlenlp = PaddleNLP's generate. "
          f"Seconds: median over {args.peer_rounds} alternated rounds, absolute figures of THIS machine at this "
          f"moment ({threads} threads each; load average {os.getloadavg()[0]:.1f}); x / peer: median "
          f"[min-max] of the per-round ratios.", flush=True)
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"] and len(sys.argv) == 3:
        sys.exit(worker_main(sys.argv[2]))
    sys.exit("usage: decode_peer.py --worker paddle|torch (run by bench/generate_throughput.py --peer)")
