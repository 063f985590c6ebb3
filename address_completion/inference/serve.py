"""HTTP server for a model: OpenAI-compatible chat completions plus a plain batch endpoint (FastAPI + uvicorn).

Endpoints (JSON in, JSON out; errors use OpenAI's {"error": {"message", "type", "param", "code"}}):
  POST /v1/chat/completions  OpenAI request; the last user message is the address (prefix optional).
                             Decoding follows --decoding (constrained by default: the model chooses
                             among the gazetteer's candidates; free: greedy up to --max-new-tokens):
                             temperature, top_p, max_tokens and the like are accepted and ignored;
                             n > 1 is refused (400). Each choice carries the extra field
                             "address_completion": {"decoding", "probability", "abstained", "reason",
                             "candidates", "more_candidates"}; OpenAI's own fields stay standard.
                             The request may name "detail": "verbatim" | "clean" (default --detail);
                             an answer that is no current address comes back as the input, abstained.
                             "stream": true answers with OpenAI's server-sent events (chunks, then
                             "data: [DONE]").
  POST /v1/complete          {"addresses": ["...", ...], "detail"?} -> {"results": ["...", ...], "details": [...]}
  GET  /v1/models            the served model in OpenAI's list format
  GET  /health               {"status": "ok"}; needs no API key, so load balancers can probe it
  GET  /docs                 the OpenAPI page (and /openapi.json)
  GET  /                     a web page to try the model, complete a file and read an evaluation report
                             (--report-dir); see webpage.py
Concurrent requests are decoded together: one worker thread owns the model and waits up to --batch-wait-ms
after the first queued request for more, up to --max-batch-size addresses per batch. Binds 127.0.0.1 unless
--host says otherwise; with --api-key every endpoint but /health and the OpenAPI pages needs
"Authorization: Bearer KEY". A body that has not fully arrived within --body-timeout gets 408; a connection
whose request headers have not within that time is closed. SIGTERM or
Ctrl-C stops accepting connections, finishes the requests in flight (at most --shutdown-timeout seconds),
then exits with status 0.
"""


from __future__ import annotations

import argparse
import logging
from dataclasses import replace

from ..flags import user_path
from ..runtime import logger, setup_runtime
from .generate import Completer, add_decoding_arguments, decoding_options
from .protocol import ServerSettings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = ServerSettings()
    parser.add_argument("--model", required=True, type=user_path, help="model folder (merged, or the base with --lora-path), .gguf file or hub name")
    parser.add_argument("--lora-path", "--lora_path", default=None, type=user_path, help="unmerged LoRA adapter folder to apply to --model")
    parser.add_argument("--host", default=defaults.host, help="interface to bind; 0.0.0.0 exposes the server to "
                                                              "the network (use --api-key then)")
    parser.add_argument("--port", type=int, default=defaults.port, help="TCP port; 0 picks a free one")
    parser.add_argument("--api-key", default=None, help="require 'Authorization: Bearer KEY' on every endpoint but "
                                                        "/health")
    parser.add_argument("--model-name", default=None,
                        help="model id reported by /v1/models and responses (default: the model folder's name)")
    parser.add_argument("--max-batch-size", type=int, default=defaults.max_batch_size,
                        help="most addresses decoded together")
    parser.add_argument("--batch-wait-ms", type=float, default=defaults.batch_wait_ms,
                        help="how long the first queued request waits for others to share its batch")
    parser.add_argument("--max-addresses", type=int, default=defaults.max_addresses,
                        help="most addresses in one /v1/complete request (413 above)")
    parser.add_argument("--max-input-chars", type=int, default=defaults.max_input_chars,
                        help="longest accepted address or message, in characters (413 above)")
    parser.add_argument("--body-timeout", type=float, default=defaults.body_timeout,
                        help="seconds a request's headers may take to arrive (the connection is closed after), "
                             "then its body (408 after)")
    parser.add_argument("--shutdown-timeout", type=float, default=defaults.shutdown_timeout,
                        help="seconds requests in flight get to finish after SIGTERM / Ctrl-C")
    parser.add_argument("--report-dir", default=None, type=user_path, metavar="FOLDER",
                        help="an evaluate output folder (report.json, comparison.png) the web page at / shows in its "
                             "report tab")
    parser.add_argument("--max-new-tokens", "--max_new_tokens", type=int, default=64, help="upper bound on generated tokens")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "gpu"),
                        help="where the model runs: gpu, cpu, or auto (a GPU when Paddle sees one, else the CPU)")
    parser.add_argument("--dtype", default="float32", help="float32, bfloat16 or float16 (CPU uses float32)")
    add_decoding_arguments(parser)


def run(args: argparse.Namespace) -> int:
    # FastAPI and uvicorn load only when a server starts (not for --help or the other commands)
    from .batching import completer_function
    from .server import create_server

    settings = ServerSettings(host=args.host, port=args.port, api_key=args.api_key,
                              model_name=args.model_name or "", max_batch_size=args.max_batch_size,
                              batch_wait_ms=args.batch_wait_ms, max_addresses=args.max_addresses,
                              max_input_chars=args.max_input_chars, body_timeout=args.body_timeout,
                              shutdown_timeout=args.shutdown_timeout, report_dir=args.report_dir)
    settings.validate()
    options = decoding_options(args)
    uvicorn_logger = logging.getLogger("uvicorn")  # its warnings (malformed requests) as one line on our stream
    uvicorn_logger.handlers[:] = logger.handlers
    uvicorn_logger.setLevel(logging.DEBUG if logger.isEnabledFor(logging.DEBUG) else logging.WARNING)
    uvicorn_logger.propagate = False
    runtime = setup_runtime(device=args.device, dtype=args.dtype, model=args.model)
    completer = Completer.load(args.model, lora_path=args.lora_path, dtype=runtime.dtype,
                               max_new_tokens=args.max_new_tokens, **options)
    if not settings.model_name:
        settings = replace(settings, model_name=completer.name)
    server = create_server(completer_function(completer, settings.max_batch_size), settings, completer.tokenizer)
    if settings.host not in ("127.0.0.1", "localhost", "::1") and not settings.api_key:
        logger.warning("listening on %s without --api-key: anyone who can reach this port can use the model",
                       settings.host)
    print(f"serving {settings.model_name} on {server.url} (web page: GET /; POST /v1/chat/completions, "
          f"POST /v1/complete, GET /v1/models, GET /health, GET /docs; Ctrl-C or SIGTERM stops)", flush=True)
    server.serve()
    logger.info("server stopped")
    return 0
