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

Quick run (about a minute on 2 cores):
    python bench/generate_throughput.py --shapes default --max-new-tokens 8
Full run (several minutes on 2 cores):
    python bench/generate_throughput.py
"""

from __future__ import annotations

import argparse
import gc
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
DISTRICTS = ["碑林区", "海淀区", "天河区", "南山区", "西湖区", "武侯区", "江汉区", "鼓楼区", "历下区", "浦东新区"]
STREETS = ["扬子江南路", "中关村大街", "体育西路", "科技园南区高新南七道", "文三路", "人民南路四段", "解放大道"]


def sample_addresses(count: int) -> list[str]:
    """Deterministic short addresses of varied length (district + street + number)."""
    return [f"{DISTRICTS[i % len(DISTRICTS)]}{STREETS[(i // 3) % len(STREETS)]}{17 + 37 * i % 900}号"
            for i in range(count)]


def shapes() -> dict:
    from address_completion.default_model import ModelShape

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


def bench_batches(completer, addresses: list[str], batch_size: int) -> dict:
    """Decode ``addresses`` in batches of ``batch_size``; time every batch."""
    batch_times = []
    started = time.perf_counter()
    for start in range(0, len(addresses), batch_size):
        batch_started = time.perf_counter()
        completer.complete(addresses[start:start + batch_size], batch_size=batch_size)
        batch_times.append(time.perf_counter() - batch_started)
    wall = time.perf_counter() - started
    return {"addresses": len(addresses), "wall_s": wall, "addr_per_s": len(addresses) / wall,
            "ms_per_addr": 1000 * wall / len(addresses), "p50_ms": 1000 * percentile(batch_times, 0.5),
            "p99_ms": 1000 * percentile(batch_times, 0.99)}


def bench_server(completer, addresses: list[str], *, clients: int, max_batch_size: int, batch_wait_ms: float,
                 burst: bool = False) -> dict:
    """``clients`` threads send one-address requests back to back until every address was served (``burst``: each
    client sends one request, all released at the same moment). Failed requests are counted, not raised."""
    from address_completion.serve import ServerSettings, start_in_thread

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
              "errors"]
    lines = [[row["shape"], row["mode"], str(row["batch"]), str(row["addresses"]), str(row["new_tokens"]),
              f"{row['wall_s']:.1f}", f"{row['addr_per_s']:.2f}", f"{row['ms_per_addr']:.0f}", f"{row['p50_ms']:.0f}",
              f"{row['p99_ms']:.0f}", str(row["errors"]) if "errors" in row else "-"] for row in rows]
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
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    prepare_environment(offline=True)
    import logging

    from paddlenlp.transformers import AutoTokenizer

    from address_completion import tokenizer as qwen_tokenizer
    from address_completion.default_model import create_model
    from address_completion.generate import Completer

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
        del completer
        gc.collect()
    print_table(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
