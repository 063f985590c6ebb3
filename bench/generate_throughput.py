#!/usr/bin/env python
"""Generation throughput and latency: batch 1 vs 8 vs 32, then the HTTP server under concurrent clients.

Models have random weights (nothing is downloaded): the Qwen2.5-0.5B shape (24 layers, hidden 896,
14 heads / 2 KV heads, intermediate 4864, vocab 151,936, tied embeddings) and the default model's
shape, both with the real Qwen2.5 tokenizer and chat template. Stop ids are disabled so every address
generates exactly --max-new-tokens tokens (random weights would otherwise stop at arbitrary points).

Offline rows: addresses/s, ms per address (wall time / addresses) and the latency of a batch (what a
caller of that batch waits), p50 / p99 over the batches. Server rows: N client threads on 127.0.0.1
each send one-address /v1/complete requests back to back; throughput and request latency p50 / p99,
with dynamic batching (--server-batch-sizes; 1 = no batching). Clients run in the benchmark process.
The last server row connects --burst-clients clients at once (one request each, all released together)
and counts the requests that failed: a connection refused or reset, a timeout, or a status other than 200.

Decoding rows compare constrained decoding (the gazetteer's candidates, scored by the model; one
candidate needs no forward pass) with free greedy decoding, both with the same model, prompt grounding
(--grounding) and batch size (--decoding-batch-sizes), on the first --decoding-inputs inputs of the
bundled test split, data/test.json. The two are measured in the same run, alternated (--decoding-rounds
passes each, the order swapped every pass), and "vs free" is constrained addr/s / free addr/s. Free
decoding generates exactly --max-new-tokens tokens per address here (random weights never emit EOS), so
its figure depends on that flag; a trained model stops at its EOS after ~20-30 tokens. Most bundled
inputs have exactly one candidate, so the same comparison is also made on addresses with several
candidates (ambiguous county or town names), where every candidate is scored; the "score_answers" row
times the scorer alone on those (prompt and candidate token ids prepared beforehand).

Peer comparison (--peer): instead of the rows above, greedy decoding and the constrained scorer against
HF transformers on torch CPU (in its own venv: bench/peer-requirements.txt says how), with the same
weights, prompts, padding, token counts and threads, alternated over --peer-rounds rounds in one run,
printing the seconds of each side and the ratio paddle / transformers with its spread (see
bench/decode_peer.py). Without torch/transformers it says so in one line and times Paddle alone.
    python bench/generate_throughput.py --shapes 0.5b --peer

Quick run (about a minute on 2 cores):
    python bench/generate_throughput.py --shapes default --max-new-tokens 8
Full run (long on 2 cores: the 0.5b decoding rows alone take the time given below):
    python bench/generate_throughput.py
Constrained vs free at the 0.5B shape (took 14 min 40 s on 2 cores shared with other jobs, load ~4;
--decoding-rounds 1 halves the decoding rows):
    python bench/generate_throughput.py --shapes 0.5b --max-new-tokens 19 --batch-sizes 1,8
"""

from __future__ import annotations

import argparse
import functools
import gc
from typing import Any, Callable, Sequence
import json
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from address_completion.runtime import prepare_environment  # noqa: E402

NEVER_GENERATED = -1  # a stop id no token has: every row decodes exactly max_new_tokens
TEST_SPLIT = Path(__file__).resolve().parents[1] / "data" / "test.json"
# Ambiguous county or town names: the gazetteer proposes 2-8 chains for each, so every candidate is scored.
SEVERAL_CANDIDATES = ["朝阳区建国路88号", "鼓楼区中山路1号", "城关镇人民路1号", "西湖区文三路1号", "铁西区兴华街1号",
                      "普陀区曹杨路1号", "长安区长安路1号", "朝阳区朝阳路2号"]
DISTRICTS = ["碑林区", "海淀区", "天河区", "南山区", "西湖区", "武侯区", "江汉区", "鼓楼区", "历下区", "浦东新区"]
STREETS = ["扬子江南路", "中关村大街", "体育西路", "科技园南区高新南七道", "文三路", "人民南路四段", "解放大道"]


def sample_addresses(count: int) -> list[str]:
    """Deterministic short addresses of varied length (district + street + number)."""
    return [f"{DISTRICTS[i % len(DISTRICTS)]}{STREETS[(i // 3) % len(STREETS)]}{17 + 37 * i % 900}号"
            for i in range(count)]


def shapes() -> dict:
    from address_completion.model.default_model import ModelShape

    return {
        "default": ModelShape(),
        "0.5b": ModelShape(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                           num_key_value_heads=2),
    }


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))]


def describe(shape) -> str:
    return f"{shape.num_hidden_layers}L h{shape.hidden_size}"


def batch_summary(addresses: int, wall: float, batch_times: list[float]) -> dict:
    return {"addresses": addresses, "wall_s": wall, "addr_per_s": addresses / wall,
            "ms_per_addr": 1000 * wall / addresses, "p50_ms": 1000 * percentile(batch_times, 0.5),
            "p99_ms": 1000 * percentile(batch_times, 0.99)}


def bench_batches(completer, addresses: list[str], batch_size: int) -> dict:
    """Decode ``addresses`` in batches of ``batch_size``; time every batch."""
    batch_times = []
    started = time.perf_counter()
    for start in range(0, len(addresses), batch_size):
        batch_started = time.perf_counter()
        completer.complete(addresses[start:start + batch_size], batch_size=batch_size)
        batch_times.append(time.perf_counter() - batch_started)
    return batch_summary(len(addresses), time.perf_counter() - started, batch_times)


def bench_alternating(runs: dict[str, tuple[Callable[[list], Any], Sequence]], batch_size: int,
                      rounds: int) -> dict[str, dict]:
    """Time ``run(batch)`` over every batch of its items, for each ``name: (run, items)``, ``rounds`` times.

    The runs alternate (pass 1 in the given order, pass 2 reversed, ...) so a machine that slows down or
    speeds up during the benchmark affects them alike. Wall time is the sum of the batch times.
    """
    batch_times: dict[str, list[float]] = {name: [] for name in runs}
    for round_number in range(rounds):
        for name in (list(runs) if round_number % 2 == 0 else list(reversed(runs))):
            run, items = runs[name]
            for start in range(0, len(items), batch_size):
                batch_started = time.perf_counter()
                run(list(items[start:start + batch_size]))
                batch_times[name].append(time.perf_counter() - batch_started)
    return {name: batch_summary(len(runs[name][1]) * rounds, sum(batch_times[name]), batch_times[name])
            for name in runs}


def bundled_test_inputs(count: int) -> list[str]:
    """The first ``count`` ``src`` of the bundled test split (with the task prefix, as the file has them)."""
    from address_completion.data.dataio import read_records

    return [record["src"] for record in read_records(TEST_SPLIT).records[:count]]


def expected_answer_tokens(tokenizer, count: int) -> float:
    """Mean token count (answer + EOS) of the expected answers of the first ``count`` test inputs: what a
    trained model generates for them, against the fixed --max-new-tokens of these random weights."""
    from address_completion.data.dataio import read_records
    from address_completion.data.prompt import answer_ids

    records = read_records(TEST_SPLIT).records[:count]
    return sum(len(answer_ids(tokenizer, record["tgt"])) for record in records) / len(records)


def candidate_counts(addresses: Sequence[str]) -> dict[str, int]:
    """How many of ``addresses`` have 0 (free fallback), 1 (no forward pass) and 2+ (scored) candidates."""
    from address_completion.data.prompt import address_candidates

    counts = [len(address_candidates(address)) for address in addresses]
    return {"0": counts.count(0), "1": counts.count(1), "2+": sum(count >= 2 for count in counts)}


def scoring_pairs(completer, addresses: Sequence[str]) -> list[list[tuple[list[int], list[int]]]]:
    """For each address, the (prompt ids, answer ids) of each candidate, as constrained decoding scores them."""
    from address_completion.inference.generate import encode_prompts
    from address_completion.data.prompt import address_candidates, answer_ids

    pairs = []
    for address in addresses:
        candidates = address_candidates(address)
        prompt = encode_prompts(completer.tokenizer, [completer.prompt_for(address, candidates)])[0]
        pairs.append([(prompt, answer_ids(completer.tokenizer, candidate.text)) for candidate in candidates])
    return pairs


def bench_decoding(model, tokenizer, label: str, args: argparse.Namespace) -> list[dict]:
    """Rows comparing constrained with free decoding (see the module docstring)."""
    from address_completion.inference.generate import Completer, padding_token_id, score_answers

    def completer(decoding: str):
        made = Completer(model=model, tokenizer=tokenizer, max_new_tokens=args.max_new_tokens,
                         grounding=args.grounding, decoding=decoding, name=decoding)
        made.stop_ids = [NEVER_GENERATED]  # free (and a free fallback) decodes exactly max_new_tokens
        return made

    free, constrained = completer("free"), completer("constrained")
    several = [address for address in SEVERAL_CANDIDATES if candidate_counts([address])["2+"]]
    constrained.complete(several[:1])  # warm-up: gazetteer, typo index, first scoring pass
    free.complete(several[:1])
    pairs = scoring_pairs(constrained, several)
    pad_id = padding_token_id(tokenizer)

    def score(batch: list) -> None:
        score_answers(model, [pair for pairs_of_one in batch for pair in pairs_of_one], pad_id=pad_id)

    sets = [("test", bundled_test_inputs(args.decoding_inputs)), ("2+ cand", several)]
    rows = []
    for set_name, addresses in sets:
        counts = candidate_counts(addresses)
        print(f"  {set_name} inputs: {len(addresses)}, candidates 0 / 1 / 2+: {counts['0']} / {counts['1']} / "
              f"{counts['2+']}", file=sys.stderr, flush=True)
        for batch_size in args.decoding_batch_sizes:
            print(f"  free vs constrained, {set_name}, batch {batch_size}: {len(addresses)} addresses x "
                  f"{args.decoding_rounds} ...", file=sys.stderr, flush=True)
            runs = {"free": (functools.partial(free.complete, batch_size=batch_size), addresses),
                    "constrained": (functools.partial(constrained.complete, batch_size=batch_size), addresses)}
            if set_name != "test":
                runs["score_answers"] = (score, pairs)
            results = bench_alternating(runs, batch_size, args.decoding_rounds)
            for name, result in results.items():
                rows.append({"shape": label, "mode": f"{name} ({set_name})", "batch": batch_size,
                             "new_tokens": args.max_new_tokens if name == "free" else "-",
                             "vs_free": None if name == "free" else
                             result["addr_per_s"] / results["free"]["addr_per_s"], **result})
    return rows


def bench_server(completer, addresses: list[str], *, clients: int, max_batch_size: int, batch_wait_ms: float,
                 burst: bool = False) -> dict:
    """``clients`` threads send one-address requests back to back until every address was served (``burst``: each
    client sends one request, all released at the same moment). Failed requests are counted, not raised."""
    from address_completion.inference.protocol import ServerSettings
    from address_completion.inference.server import start_in_thread

    settings = ServerSettings(port=0, max_batch_size=max_batch_size, batch_wait_ms=batch_wait_ms,
                              max_addresses=1, model_name="bench")
    server = start_in_thread(completer, settings)
    pending = iter(addresses)
    lock = threading.Lock()
    latencies: list[float] = []
    errors: list[str] = []
    release = threading.Barrier(clients) if burst else None

    def client() -> None:
        if release is not None:
            release.wait()
        while True:
            with lock:
                address = next(pending, None)
            if address is None:
                return
            body = json.dumps({"addresses": [address]}, ensure_ascii=False).encode()
            request = urllib.request.Request(server.url + "/v1/complete", data=body)
            sent = time.perf_counter()
            try:
                with urllib.request.urlopen(request, timeout=600) as response:
                    response.read()
            except (OSError, ValueError) as error:  # HTTPError, refused, reset, timeout
                with lock:
                    errors.append(f"{type(error).__name__}: {error}")
                continue
            with lock:
                latencies.append(time.perf_counter() - sent)
            if release is not None:
                return

    try:
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=clients) as pool:
            for future in [pool.submit(client) for _ in range(clients)]:
                future.result()
        wall = time.perf_counter() - started
    finally:
        server.stop()
    if errors:
        print(f"    {len(errors)} failed request(s), e.g. {errors[0]}", file=sys.stderr, flush=True)
    served = latencies or [float("nan")]
    return {"addresses": len(addresses), "wall_s": wall, "addr_per_s": len(latencies) / wall,
            "ms_per_addr": 1000 * wall / max(1, len(latencies)), "p50_ms": 1000 * statistics.median(served),
            "p99_ms": 1000 * percentile(served, 0.99), "batches": server.worker.batches_run, "errors": len(errors)}


def print_table(rows: list[dict]) -> None:
    header = ["model shape", "mode", "batch", "addr", "new tok", "wall s", "addr/s", "ms/addr", "p50 ms", "p99 ms",
              "errors", "vs free"]
    lines = [[row["shape"], row["mode"], str(row["batch"]), str(row["addresses"]), str(row["new_tokens"]),
              f"{row['wall_s']:.1f}", f"{row['addr_per_s']:.2f}", f"{row['ms_per_addr']:.0f}", f"{row['p50_ms']:.0f}",
              f"{row['p99_ms']:.0f}", str(row["errors"]) if "errors" in row else "-",
              f"{row['vs_free']:.1f}x" if row.get("vs_free") else "-"] for row in rows]
    widths = [max(len(cell) for cell in column) for column in zip(header, *lines)]
    for cells in [header, ["-" * width for width in widths], *lines]:
        print("  ".join(cell.rjust(width) if index > 1 else cell.ljust(width)
                        for index, (cell, width) in enumerate(zip(cells, widths))), flush=True)


def csv_ints(text: str) -> list[int]:
    return [int(item) for item in text.split(",") if item.strip()]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--shapes", default="default,0.5b", help="comma list of: default, 0.5b")
    parser.add_argument("--batch-sizes", type=csv_ints, default=[1, 8, 32])
    parser.add_argument("--max-new-tokens", type=int, default=16, help="tokens generated per address")
    parser.add_argument("--min-addresses", type=int, default=8,
                        help="addresses per offline row (at least one full batch)")
    parser.add_argument("--server-shapes", default="default", help="shapes to benchmark the server with ('' = none)")
    parser.add_argument("--server-clients", type=int, default=16, help="concurrent client threads")
    parser.add_argument("--server-requests", type=int, default=64, help="one-address requests in total")
    parser.add_argument("--server-batch-sizes", type=csv_ints, default=[1, 16],
                        help="server --max-batch-size values to compare (1 = no dynamic batching)")
    parser.add_argument("--burst-clients", type=int, default=200,
                        help="clients connecting at once for the error-count row (0 = skip it)")
    parser.add_argument("--batch-wait-ms", type=float, default=10.0)
    parser.add_argument("--decoding-inputs", type=int, default=16,
                        help="bundled test inputs for the constrained vs free rows (0 = skip those rows)")
    parser.add_argument("--decoding-batch-sizes", type=csv_ints, default=[1, 8])
    parser.add_argument("--decoding-rounds", type=int, default=2,
                        help="alternated passes over the inputs per decoding (order swapped every pass)")
    parser.add_argument("--grounding", choices=("none", "candidates"), default="candidates",
                        help="prompt of both decodings in the constrained vs free rows")
    parser.add_argument("--seed", type=int, default=0)
    peer = parser.add_argument_group("peer comparison (--peer)")
    peer.add_argument("--peer", action="store_true",
                      help="compare with HF transformers' generate on torch CPU instead of the rows above")
    peer.add_argument("--peer-batch-sizes", type=csv_ints, default=[1, 8])
    peer.add_argument("--peer-rounds", type=int, default=5, help="alternated rounds (each gives one ratio)")
    peer.add_argument("--no-peer-scorer", dest="peer_scorer", action="store_false",
                      help="leave out the constrained scorer's rows")
    peer.add_argument("--no-paddlenlp", dest="peer_paddlenlp", action="store_false",
                      help="leave out PaddleNLP's own generate (timed beside the project's loop by default)")
    peer.add_argument("--peer-python", default=None, metavar="PYTHON",
                      help="a Python with torch + transformers (default: ./.venv-peer/bin/python, else this one); "
                           "see bench/peer-requirements.txt")
    peer.add_argument("--threads", type=int, default=0,
                      help="threads of each framework (0 = the usable cores, as the CLI uses)")
    args = parser.parse_args(argv)
    if args.peer_rounds < 1:
        parser.error(f"--peer-rounds must be at least 1, got {args.peer_rounds}")
    if args.threads < 0:
        parser.error(f"--threads must be at least 0, got {args.threads}")
    if args.decoding_inputs < 0:
        parser.error(f"--decoding-inputs must be at least 0, got {args.decoding_inputs}")
    if args.decoding_rounds < 1:
        parser.error(f"--decoding-rounds must be at least 1, got {args.decoding_rounds}")
    for flag, sizes in (("--batch-sizes", args.batch_sizes), ("--decoding-batch-sizes", args.decoding_batch_sizes),
                        ("--server-batch-sizes", args.server_batch_sizes), ("--peer-batch-sizes", args.peer_batch_sizes)):
        if any(size < 1 for size in sizes):
            parser.error(f"{flag} must be positive integers, got {','.join(map(str, sizes))}")
    return args


def peer_comparison(args: argparse.Namespace) -> int:
    """--peer: each chosen shape against transformers (bench/decode_peer.py); Paddle and torch run in workers."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import decode_peer

    known = shapes()
    chosen = [name.strip() for name in args.shapes.split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(known))
    if unknown:
        raise SystemExit(f"unknown shape(s) {', '.join(unknown)}; choose from {', '.join(known)}")
    inputs = bundled_test_inputs(max(args.peer_batch_sizes))
    for name in chosen:
        print(f"{name} ({describe(known[name])}), paddle vs transformers:", flush=True)
        decode_peer.run(args, known[name], inputs, SEVERAL_CANDIDATES)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.peer:
        return peer_comparison(args)
    prepare_environment(offline=True)
    import logging

    from paddlenlp.transformers import AutoTokenizer

    from address_completion.model import speedups, tokenizer as qwen_tokenizer
    from address_completion.model.default_model import create_model
    from address_completion.inference.generate import Completer

    speedups.apply()  # what load_model applies for predict and serve: the bench times the product's code
    for noisy in ("PaddleNLP", "address_completion", "uvicorn"):  # model loading chatter, the request log
        logging.getLogger(noisy).setLevel(logging.WARNING)
    known = shapes()
    chosen = [name.strip() for name in args.shapes.split(",") if name.strip()]
    server_shapes = {name.strip() for name in args.server_shapes.split(",") if name.strip()}
    unknown = sorted((set(chosen) | server_shapes) - set(known))
    if unknown:
        raise SystemExit(f"unknown shape(s) {', '.join(unknown)}; choose from {', '.join(known)}")
    with tempfile.TemporaryDirectory() as folder:
        tokenizer = AutoTokenizer.from_pretrained(str(qwen_tokenizer.write_qwen25_tokenizer(folder)))
    rows = []
    for name in chosen:
        shape = known[name]
        print(f"building a random {name} model ({describe(shape)}) ...", file=sys.stderr, flush=True)
        completer = Completer(model=create_model(shape, args.seed), tokenizer=tokenizer,
                              max_new_tokens=args.max_new_tokens, name=name)
        completer.stop_ids = [NEVER_GENERATED]
        completer.complete(sample_addresses(1))  # warm-up: first-call allocations
        label = f"{name} ({describe(shape)})"
        for batch_size in args.batch_sizes:
            count = -(-max(batch_size, args.min_addresses) // batch_size) * batch_size
            print(f"  offline batch {batch_size}: {count} addresses ...", file=sys.stderr, flush=True)
            result = bench_batches(completer, sample_addresses(count), batch_size)
            rows.append({"shape": label, "mode": "generate", "batch": batch_size,
                         "new_tokens": args.max_new_tokens, **result})
        if name in server_shapes:
            for max_batch_size in args.server_batch_sizes:
                print(f"  server max-batch {max_batch_size}: {args.server_clients} clients ...", file=sys.stderr,
                      flush=True)
                result = bench_server(completer, sample_addresses(args.server_requests), clients=args.server_clients,
                                      max_batch_size=max_batch_size, batch_wait_ms=args.batch_wait_ms)
                rows.append({"shape": label, "mode": f"server x{args.server_clients}", "batch": max_batch_size,
                             "new_tokens": args.max_new_tokens, **result})
            if args.burst_clients:
                batch = max(args.server_batch_sizes)
                print(f"  server max-batch {batch}: {args.burst_clients} clients at once ...", file=sys.stderr,
                      flush=True)
                result = bench_server(completer, sample_addresses(args.burst_clients), clients=args.burst_clients,
                                      max_batch_size=batch, batch_wait_ms=args.batch_wait_ms, burst=True)
                rows.append({"shape": label, "mode": f"server {args.burst_clients} at once", "batch": batch,
                             "new_tokens": args.max_new_tokens, **result})
        if args.decoding_inputs:
            rows += bench_decoding(completer.model, tokenizer, label, args)
        del completer
        gc.collect()
    print_table(rows)
    if args.decoding_inputs:
        expected = expected_answer_tokens(tokenizer, args.decoding_inputs)
        print(f"free rows generate exactly {args.max_new_tokens} new tokens per address (random weights never emit "
              f"EOS; stop ids disabled; the expected answers of these {args.decoding_inputs} test inputs are "
              f"{expected:.1f} tokens with EOS on average); constrained rows generate none unless an input has no candidate "
              f"(free fallback, same length); prompts grounding={args.grounding}; vs free = addr/s / free addr/s "
              f"on the same inputs and batch size, measured alternately", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
