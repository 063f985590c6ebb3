"""HTTP server for a model: OpenAI-compatible chat completions plus a plain batch endpoint.

Endpoints (JSON in, JSON out; errors use OpenAI's {"error": {"message", "type", "param", "code"}}):
  POST /v1/chat/completions  OpenAI request; the last user message is the address (prefix optional).
                             Decoding is always greedy up to --max_new_tokens: temperature, top_p,
                             max_tokens and the like are accepted and ignored; "stream": true and n > 1
                             are rejected with 400 (an answer is one short line).
  POST /v1/complete          {"addresses": ["...", ...]} -> {"results": ["...", ...]}
  GET  /v1/models            the served model in OpenAI's list format
  GET  /health               {"status": "ok"}; needs no API key, so load balancers can probe it
Concurrent requests are decoded together: a worker thread waits up to --batch-wait-ms after the first
queued request for more, up to --max-batch-size addresses per batch. Binds 127.0.0.1 unless --host
says otherwise; with --api-key every other endpoint needs "Authorization: Bearer KEY". SIGTERM or
Ctrl-C stops accepting connections, finishes the requests in flight, then exits with status 0.
Standard library only (http.server).
"""

from __future__ import annotations

import argparse
import hmac
import json
import queue
import signal
import threading
import time
import uuid
from concurrent.futures import Future
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Sequence
from urllib.parse import urlsplit

from .errors import ConfigError
from .runtime import logger

CompleteFunction = Callable[[list[str]], list[Any]]  # addresses -> generate.Completion per address
OWNER = "address_completion"
BODY_DRAIN_LIMIT = 8 << 20  # read (and drop) at most this much of a refused body so the client sees our reply


@dataclass(frozen=True)
class ServerSettings:
    """Network, security and batching limits of one server."""

    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str | None = None
    model_name: str = "address-completion"
    max_batch_size: int = 16
    batch_wait_ms: float = 10.0
    max_addresses: int = 64
    max_input_chars: int = 256
    max_body_bytes: int = 1 << 20

    def validate(self) -> None:
        for name in ("max_batch_size", "max_addresses", "max_input_chars", "max_body_bytes"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.batch_wait_ms < 0:
            raise ConfigError(f"--batch-wait-ms must be >= 0, got {self.batch_wait_ms}")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"--port must be 0-65535 (0 picks a free port), got {self.port}")


class RequestError(Exception):
    """A request the server refuses; rendered in OpenAI's error shape."""

    def __init__(self, status: int, message: str, *, error_type: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.error_type, self.param, self.code = status, message, error_type, param, code

    def payload(self) -> dict:
        return {"error": {"message": self.message, "type": self.error_type, "param": self.param, "code": self.code}}


# ---------------------------------------------------------------- dynamic batching


@dataclass
class _Job:
    addresses: list[str]
    future: Future


class BatchingWorker:
    """One thread owns the model; requests queue their addresses and wait for their slice of a batch."""

    def __init__(self, complete: CompleteFunction, *, max_batch_size: int = 16, batch_wait_ms: float = 10.0):
        self._complete = complete
        self._max_batch_size = max_batch_size
        self._wait_seconds = batch_wait_ms / 1000.0
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="batching-worker", daemon=True)
        self.batches_run = 0
        self.most_requests_in_a_batch = 0

    def start(self) -> "BatchingWorker":
        self._thread.start()
        return self

    def submit(self, addresses: Sequence[str]) -> list[Any]:
        """Completions for ``addresses`` (blocks until their batch ran; re-raises the batch's error)."""
        if not addresses:
            return []
        if not self._thread.is_alive():
            raise RuntimeError("the batching worker is not running")
        job = _Job(list(addresses), Future())
        self._queue.put(job)
        logger.debug("queued %d address(es) for the next batch", len(job.addresses))
        return job.future.result()

    def stop(self) -> None:
        """Finish every queued job, then end the thread."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            jobs, stopping = self._gather(first)
            self._run(jobs)
            if stopping:
                return

    def _gather(self, first: _Job) -> tuple[list[_Job], bool]:
        """The first job plus whatever arrives within the wait window, up to the batch size."""
        jobs, count = [first], len(first.addresses)
        deadline = time.monotonic() + self._wait_seconds
        while count < self._max_batch_size:
            remaining = deadline - time.monotonic()
            try:
                job = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if job is None:
                return jobs, True
            jobs.append(job)
            count += len(job.addresses)
        return jobs, False

    def _run(self, jobs: list[_Job]) -> None:
        addresses = [address for job in jobs for address in job.addresses]
        try:
            completions = self._complete(addresses)
        except BaseException as error:  # every waiting request must hear about it
            for job in jobs:
                job.future.set_exception(error)
            return
        self.batches_run += 1
        self.most_requests_in_a_batch = max(self.most_requests_in_a_batch, len(jobs))
        start = 0
        for job in jobs:
            job.future.set_result(completions[start:start + len(job.addresses)])
            start += len(job.addresses)


# ---------------------------------------------------------------- request validation


def check_address(text: Any, where: str, limit: int) -> str:
    if not isinstance(text, str):
        raise RequestError(422, f"{where} must be a string, got {type(text).__name__}", param=where)
    if not text.strip():
        raise RequestError(422, f"{where} is empty", param=where)
    if len(text) > limit:
        raise RequestError(413, f"{where} has {len(text)} characters; the limit is {limit} (--max-input-chars)",
                           param=where, code="input_too_long")
    return text


def addresses_from_complete_request(body: dict, settings: ServerSettings) -> list[str]:
    if "addresses" not in body:
        raise RequestError(422, "missing field 'addresses' (a list of address strings)", param="addresses")
    addresses = body["addresses"]
    if not isinstance(addresses, list):
        raise RequestError(422, f"'addresses' must be a list of strings, got {type(addresses).__name__}",
                           param="addresses")
    if len(addresses) > settings.max_addresses:
        raise RequestError(413, f"too many addresses: {len(addresses)}; the limit is {settings.max_addresses} per "
                                "request (--max-addresses)", param="addresses", code="too_many_addresses")
    return [check_address(item, f"addresses[{index}]", settings.max_input_chars) for index, item in
            enumerate(addresses)]


def message_text(content: Any, where: str) -> str:
    """A message's text: a string, or OpenAI's list of content parts (text parts joined)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for index, part in enumerate(content):
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise RequestError(422, f"{where}[{index}] must be a text part {{\"type\": \"text\", \"text\": ...}}",
                                   param=f"{where}[{index}]")
            texts.append(part["text"])
        return "".join(texts)
    raise RequestError(422, f"{where} must be a string or a list of text parts", param=where)


def address_from_chat_request(body: dict, settings: ServerSettings) -> str:
    """The last user message's content, after checking the options this server cannot honour."""
    if body.get("stream"):
        raise RequestError(400, "stream=true is not supported: an answer is one short address; send stream=false",
                           param="stream")
    if body.get("n") not in (None, 1):
        raise RequestError(400, "only n=1 is supported (decoding is greedy, so every choice would be the same)",
                           param="n")
    if "messages" not in body:
        raise RequestError(422, "missing field 'messages' (a list of {role, content} objects)", param="messages")
    messages = body["messages"]
    if not isinstance(messages, list) or not messages:
        raise RequestError(422, "'messages' must be a non-empty list of {role, content} objects", param="messages")
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str) or "content" not in message:
            raise RequestError(422, f"messages[{index}] must be an object with 'role' and 'content'",
                               param=f"messages[{index}]")
    users = [index for index, message in enumerate(messages) if message["role"] == "user"]
    if not users:
        raise RequestError(422, "'messages' holds no user message; the last user message is the address",
                           param="messages")
    where = f"messages[{users[-1]}].content"
    return check_address(message_text(messages[users[-1]]["content"], where), where, settings.max_input_chars)


def chat_completion_payload(completion: Any, model_name: str) -> dict:
    """OpenAI's chat.completion object for one answer."""
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model_name,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": completion.text},
                     "logprobs": None, "finish_reason": completion.finish_reason}],
        "usage": {"prompt_tokens": completion.prompt_tokens, "completion_tokens": completion.completion_tokens,
                  "total_tokens": completion.prompt_tokens + completion.completion_tokens},
    }


# ---------------------------------------------------------------- HTTP


class AddressServer(ThreadingHTTPServer):
    """Threaded HTTP server whose close() waits for the requests in flight (non-daemon handler threads)."""

    daemon_threads = False
    block_on_close = True
    allow_reuse_address = True

    def __init__(self, settings: ServerSettings, worker: BatchingWorker):
        self.settings = settings
        self.worker = worker
        self.started = int(time.time())
        self._serving = threading.Event()
        super().__init__((settings.host, settings.port), RequestHandler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{port}"

    def serve_forever(self, poll_interval: float = 0.2) -> None:
        self._serving.set()
        super().serve_forever(poll_interval)

    def stop(self) -> None:
        """Stop accepting, finish requests in flight, then stop the batching worker. Call from another thread
        than the one running serve_forever."""
        if self._serving.is_set():
            self.shutdown()
        self.server_close()  # joins handler threads
        self.worker.stop()


class RequestHandler(BaseHTTPRequestHandler):
    server: AddressServer
    server_version = "address-completion"
    timeout = 60  # a client that stalls mid-request cannot hold a thread (or shutdown) forever

    ROUTES: dict[str, dict[str, str]] = {
        "/health": {"GET": "health"},
        "/v1/models": {"GET": "models"},
        "/v1/complete": {"POST": "complete"},
        "/v1/chat/completions": {"POST": "chat"},
    }

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    # -- plumbing

    def _dispatch(self, method: str) -> None:
        started = time.perf_counter()
        path = urlsplit(self.path).path.rstrip("/") or "/"
        self._body_read = False
        detail = ""
        try:
            status, payload, detail = self._handle(method, path)
        except RequestError as error:
            status, payload, detail = error.status, error.payload(), error.message
        except Exception as error:  # a bug or a failed batch: report it, keep serving
            logger.exception("request %s %s failed", method, path)
            status = 500
            payload = RequestError(500, f"internal error: {type(error).__name__}: {error}",
                                   error_type="server_error").payload()
        self._discard_unread_body()
        self._send_json(status, payload)
        logger.info("%s %s %s %d %.1f ms%s", self.client_address[0], method, path, status,
                    (time.perf_counter() - started) * 1000, f" {detail}" if detail else "")

    def _handle(self, method: str, path: str) -> tuple[int, dict, str]:
        methods = self.ROUTES.get(path)
        if methods is None:
            raise RequestError(404, f"unknown path {path}; endpoints: {', '.join(self.ROUTES)}",
                               error_type="not_found_error", code="unknown_url")
        if method not in methods:
            raise RequestError(405, f"{path} accepts {', '.join(methods)}, not {method}",
                               code="method_not_allowed")
        name = methods[method]
        if name != "health":
            self._check_api_key()
        return getattr(self, f"_{name}")()

    def _check_api_key(self) -> None:
        expected = self.server.settings.api_key
        if not expected:
            return
        header = self.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), expected.encode()):
            raise RequestError(401, "missing or wrong API key: send the header 'Authorization: Bearer KEY' with "
                                    "the key the server was started with (--api-key)",
                               error_type="authentication_error", code="invalid_api_key")

    def _read_json(self) -> dict:
        length_header = self.headers.get("Content-Length")
        if length_header is None:
            raise RequestError(411, "a Content-Length header is required (chunked uploads are not supported)")
        try:
            length = int(length_header)
        except ValueError:
            raise RequestError(400, f"Content-Length {length_header!r} is not a number") from None
        limit = self.server.settings.max_body_bytes
        if length > limit:
            raise RequestError(413, f"request body of {length} bytes exceeds the limit of {limit} bytes",
                               code="body_too_large")
        raw = self.rfile.read(length) if length > 0 else b""
        self._body_read = True
        try:
            body = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as error:
            raise RequestError(400, f"the body is not UTF-8 (byte {error.start})", code="invalid_json") from None
        except json.JSONDecodeError as error:
            raise RequestError(400, f"broken JSON: {error.msg} at line {error.lineno} column {error.colno}",
                               code="invalid_json") from None
        if not isinstance(body, dict):
            raise RequestError(422, f"the body must be a JSON object, got {type(body).__name__}")
        return body

    def _discard_unread_body(self) -> None:
        """Read what the client sent before replying; closing on unread data resets the connection."""
        if self._body_read or self.command not in ("POST", "PUT", "PATCH"):
            return
        try:
            remaining = min(int(self.headers.get("Content-Length") or 0), BODY_DRAIN_LIMIT)
            while remaining > 0:
                chunk = self.rfile.read(min(remaining, 65536))
                if not chunk:
                    break
                remaining -= len(chunk)
        except (ValueError, OSError):
            pass

    def _send_json(self, status: int, payload: dict) -> None:
        data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            if status == 401:
                self.send_header("WWW-Authenticate", "Bearer")
            self.end_headers()
            self.wfile.write(data)
        except OSError as error:  # the client went away; nothing left to tell it
            logger.debug("could not send the response: %s", error)

    def log_request(self, code: Any = "-", size: Any = "-") -> None:
        pass  # _dispatch logs one line per request itself

    def log_message(self, format: str, *args: Any) -> None:
        logger.info("%s %s", self.address_string(), format % args)  # malformed requests http.server rejects

    # -- endpoints

    def _health(self) -> tuple[int, dict, str]:
        return 200, {"status": "ok", "model": self.server.settings.model_name}, ""

    def _models(self) -> tuple[int, dict, str]:
        model = {"id": self.server.settings.model_name, "object": "model", "created": self.server.started,
                 "owned_by": OWNER}
        return 200, {"object": "list", "data": [model]}, ""

    def _complete(self) -> tuple[int, dict, str]:
        addresses = addresses_from_complete_request(self._read_json(), self.server.settings)
        completions = self.server.worker.submit(addresses)
        count = f"{len(addresses)} address" + ("" if len(addresses) == 1 else "es")
        return 200, {"results": [completion.text for completion in completions]}, count

    def _chat(self) -> tuple[int, dict, str]:
        address = address_from_chat_request(self._read_json(), self.server.settings)
        [completion] = self.server.worker.submit([address])
        return 200, chat_completion_payload(completion, self.server.settings.model_name), "1 address"


# ---------------------------------------------------------------- assembly


def create_server(complete: CompleteFunction, settings: ServerSettings) -> AddressServer:
    """Bind the socket and start the batching worker (serving starts with serve_forever)."""
    settings.validate()
    worker = BatchingWorker(complete, max_batch_size=settings.max_batch_size,
                            batch_wait_ms=settings.batch_wait_ms).start()
    try:
        return AddressServer(settings, worker)
    except OSError as error:
        worker.stop()
        raise ConfigError(f"cannot listen on {settings.host}:{settings.port}: {error.strerror or error}") from None


def completer_function(completer: Any, batch_size: int) -> CompleteFunction:
    """Adapt a generate.Completer to the worker: detailed completions, decoded ``batch_size`` at a time."""
    return lambda addresses: completer.complete_detailed(addresses, batch_size=batch_size)


def start_in_thread(completer: Any, settings: ServerSettings) -> AddressServer:
    """A running server in a background thread (tests, benchmarks); end it with ``server.stop()``."""
    server = create_server(completer_function(completer, settings.max_batch_size), settings)
    threading.Thread(target=server.serve_forever, name="http-server", daemon=True).start()
    server._serving.wait()
    return server


def serve_until_signalled(server: AddressServer) -> None:
    """Serve in this (main) thread; SIGTERM / SIGINT finish the requests in flight, then return."""

    def request_stop(signum: int, frame: Any) -> None:
        logger.info("received %s: finishing requests in flight, then exiting", signal.Signals(signum).name)
        for number in (signal.SIGTERM, signal.SIGINT):
            signal.signal(number, signal.SIG_DFL)  # a second signal ends the process at once
        threading.Thread(target=server.shutdown, name="shutdown").start()

    previous = {number: signal.signal(number, request_stop) for number in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.serve_forever()
    finally:
        server.server_close()
        server.worker.stop()
        for number, handler in previous.items():
            signal.signal(number, handler)
    logger.info("server stopped")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = ServerSettings()
    parser.add_argument("--model", required=True, help="model folder (merged, or the base with --lora_path) or hub name")
    parser.add_argument("--lora_path", default=None, help="unmerged LoRA adapter folder to apply to --model")
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
    parser.add_argument("--max_new_tokens", type=int, default=64, help="upper bound on generated tokens")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "gpu"))
    parser.add_argument("--dtype", default="float32", help="float32, bfloat16 or float16 (CPU uses float32)")


def run(args: argparse.Namespace) -> int:
    from .generate import Completer
    from .runtime import setup_runtime

    settings = ServerSettings(host=args.host, port=args.port, api_key=args.api_key or None,
                              model_name=args.model_name or "", max_batch_size=args.max_batch_size,
                              batch_wait_ms=args.batch_wait_ms, max_addresses=args.max_addresses,
                              max_input_chars=args.max_input_chars)
    settings.validate()
    runtime = setup_runtime(device=args.device, dtype=args.dtype, model=args.model)
    completer = Completer.load(args.model, lora_path=args.lora_path, dtype=runtime.dtype,
                               max_new_tokens=args.max_new_tokens)
    if not settings.model_name:
        settings = ServerSettings(**{**settings.__dict__, "model_name": completer.name})
    server = create_server(completer_function(completer, settings.max_batch_size), settings)
    if settings.host not in ("127.0.0.1", "localhost", "::1") and not settings.api_key:
        logger.warning("listening on %s without --api-key: anyone who can reach this port can use the model",
                       settings.host)
    print(f"serving {settings.model_name} on {server.url} (POST /v1/chat/completions, POST /v1/complete, "
          f"GET /v1/models, GET /health; Ctrl-C or SIGTERM stops)", flush=True)
    serve_until_signalled(server)
    return 0
