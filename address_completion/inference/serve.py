"""HTTP server for a model: OpenAI-compatible chat completions plus a plain batch endpoint (FastAPI + uvicorn).

Endpoints (JSON in, JSON out; errors use OpenAI's {"error": {"message", "type", "param", "code"}}):
  POST /v1/chat/completions  OpenAI request; the last user message is the address (prefix optional).
                             Decoding follows --decoding (constrained by default: the model chooses
                             among the gazetteer's candidates; free: greedy up to --max_new_tokens):
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
import asyncio
import contextlib
import queue
import signal
import socket
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, replace
from typing import Any, Callable, Iterator, Sequence

from ..data.prompt import MAX_INPUT_CHARS, has_address_text
from ..errors import ConfigError
from ..runtime import logger

CompleteFunction = Callable[[list[str]], list[Any]]  # addresses -> generate.Completion per address
OWNER = "address_completion"


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
    max_input_chars: int = MAX_INPUT_CHARS
    max_body_bytes: int = 1 << 20
    body_timeout: float = 30.0  # seconds for the whole request body to arrive (408 after)
    shutdown_timeout: float = 30.0  # seconds requests in flight get after SIGTERM
    report_dir: str | None = None  # an evaluate output folder the web page's report tab shows

    def validate(self) -> None:
        for name in ("max_batch_size", "max_addresses", "max_input_chars", "max_body_bytes"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if not 0 <= self.batch_wait_ms < float("inf"):  # inf: the worker's queue wait overflows; nan: no wait
            raise ConfigError(f"--batch-wait-ms must be a finite number >= 0, got {self.batch_wait_ms}")
        for name in ("body_timeout", "shutdown_timeout"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be > 0 seconds, got {getattr(self, name)}")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"--port must be 0-65535 (0 picks a free port), got {self.port}")
        from .webpage import check_report_dir

        check_report_dir(self.report_dir)
        if self.api_key is not None and not self.api_key.strip():
            # `--api-key "$KEY"` with KEY unset would otherwise start a server that asks no key at all
            raise ConfigError("--api-key is empty (an unset variable?); give the key, or leave the option out to "
                              "serve without one")


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
        return self._enqueue(addresses).result() if addresses else []

    async def submit_async(self, addresses: Sequence[str]) -> list[Any]:
        """:meth:`submit` for an event loop: awaits the batch without blocking the loop."""
        return await asyncio.wrap_future(self._enqueue(addresses)) if addresses else []

    def _enqueue(self, addresses: Sequence[str]) -> Future:
        if not self._thread.is_alive():
            raise RuntimeError("the batching worker is not running")
        job = _Job(list(addresses), Future())
        self._queue.put(job)
        logger.debug("queued %d address(es) for the next batch", len(job.addresses))
        return job.future

    def stop(self, *, discard: bool = False) -> None:
        """Finish every queued job (``discard``: cancel those not started; nobody waits for them any more), then
        end the thread."""
        if discard:
            while True:
                try:
                    job = self._queue.get_nowait()
                except queue.Empty:
                    break
                if job is not None:
                    job.future.cancel()
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
        # A job whose request was cut (shutdown, client gone) is cancelled: skip it. The others are marked
        # running, so no cancel can come between here and their result (set_result on a cancelled future raises).
        jobs = [job for job in jobs if job.future.set_running_or_notify_cancel()]
        if not jobs:
            return
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
    surrogate = next((char for char in text if 0xD800 <= ord(char) <= 0xDFFF), None)
    if surrogate is not None:  # a JSON "\ud800" escape: no UTF-8 text can hold it (the CLI refuses it too)
        raise RequestError(422, f"{where} contains an unpaired surrogate escape \\u{ord(surrogate):04x}; send "
                                "the character itself or a valid surrogate pair", param=where)
    if not has_address_text(text):  # [], 【】: nothing to complete (as predict)
        raise RequestError(422, f"{where} has no letter or digit: nothing to complete", param=where)
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
    if not addresses:  # one rule for an empty request, as for 'messages'
        raise RequestError(422, "'addresses' must be a non-empty list of address strings", param="addresses")
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


# ---------------------------------------------------------------- running uvicorn


class RunningServer:
    """A bound socket, the batching worker and the uvicorn server that serves them."""

    def __init__(self, complete: CompleteFunction, settings: ServerSettings, tokenizer: Any = None):
        import uvicorn

        from .api import create_app

        settings.validate()
        self.settings = settings
        self.socket = bind(settings.host, settings.port)
        self.worker = BatchingWorker(complete, max_batch_size=settings.max_batch_size,
                                     batch_wait_ms=settings.batch_wait_ms).start()
        self.stopping = Stopping()
        # uvicorn cancels the tasks still running when its graceful timeout ends: a cancelled request gets a
        # plain-text 500 and a traceback. Our own cut comes first (--shutdown-timeout): every request still
        # waiting is answered 503 then, and uvicorn's timeout, CUT_GRACE later, finds nothing left to cancel.
        config = uvicorn.Config(create_app(self.worker, settings, self.stopping, tokenizer), loop="asyncio",
                                http=header_deadline_protocol(settings.body_timeout),
                                lifespan="off", log_config=None, access_log=False, server_header=False,
                                timeout_graceful_shutdown=settings.shutdown_timeout + CUT_GRACE)
        self.uvicorn = uvicorn_server(config, self.stopping, settings.shutdown_timeout)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.socket.getsockname()[:2]
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{port}"

    def serve(self) -> None:
        """Serve in this thread until SIGTERM / SIGINT (main thread) or :meth:`stop`; then finish the requests in
        flight and stop the worker."""
        try:
            self.uvicorn.run(sockets=[self.socket])
        finally:
            self.socket.close()
            self.worker.stop(discard=self.stopping.is_cut())

    def start_in_thread(self) -> "RunningServer":
        self._thread = threading.Thread(target=self.serve, name="http-server", daemon=True)
        self._thread.start()
        while not self.uvicorn.started:  # startup takes milliseconds; the thread may also have died
            if not self._thread.is_alive():
                raise RuntimeError("the server thread ended during startup")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """Stop accepting, finish requests in flight, stop the worker (from another thread than serve's)."""
        self.uvicorn.should_exit = True
        if self._thread is not None:
            self._thread.join()


def header_deadline_protocol(timeout: float) -> Any:
    """uvicorn's h11 protocol with a deadline on the header phase: a connection whose request line and headers
    have not all arrived ``timeout`` seconds after it opened (or after its first byte of a next request) is
    closed. uvicorn bounds only the idle time between requests (timeout_keep_alive), and h11 only the headers'
    size, so a client sending one header and then nothing held its connection forever."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class HeaderDeadlineProtocol(H11Protocol):
        header_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self.conn.their_state is h11.IDLE:  # part of a request line or header so far
                if self.header_timer is None and not self.transport.is_closing():
                    self._arm()
            else:
                self._disarm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            self.header_timer = self.loop.call_later(timeout, self._headers_too_slow)

        def _disarm(self) -> None:
            if self.header_timer is not None:
                self.header_timer.cancel()
                self.header_timer = None

        def _headers_too_slow(self) -> None:
            self.header_timer = None
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                logger.info("%s closed: its request headers did not arrive within %g s (--body-timeout)",
                            (self.client or ("-",))[0], timeout)
                self.transport.close()

    return HeaderDeadlineProtocol


CUT_GRACE = 5.0  # seconds between our cut (503 to every waiting request) and uvicorn cancelling what is left


class Stopping:
    """The server's shutdown as the request handlers see it: :meth:`cut` (on the event loop) wakes every request
    still waiting for the model, which then answers 503."""

    def __init__(self) -> None:
        self._event: asyncio.Event | None = None
        self._cut = False

    def event(self) -> asyncio.Event:
        if self._event is None:  # created on the event loop's thread, where it is awaited
            self._event = asyncio.Event()
        return self._event

    def cut(self) -> None:
        self._cut = True
        self.event().set()

    def is_cut(self) -> bool:
        return self._cut


def uvicorn_server(config: Any, stopping: Stopping | None = None, cut_after: float = 0.0) -> Any:
    """A uvicorn.Server whose signal handling logs the signal and, after the graceful shutdown, lets the process
    exit 0 (uvicorn itself re-raises the signal afterwards, which would end the process with status -15);
    ``cut_after`` seconds into the shutdown, ``stopping`` is cut (requests still waiting get 503)."""
    import uvicorn

    class Server(uvicorn.Server):
        async def shutdown(self, sockets: Any = None) -> None:
            timer = None
            if stopping is not None:
                timer = asyncio.get_running_loop().call_later(cut_after, stopping.cut)
            try:
                await super().shutdown(sockets)
            finally:
                if timer is not None:
                    timer.cancel()

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            if threading.current_thread() is not threading.main_thread():
                yield
                return

            def request_stop(signum: int, frame: Any) -> None:
                if self.should_exit:  # a second signal: stop waiting for requests in flight
                    self.force_exit = True
                    return
                logger.info("received %s: finishing requests in flight, then exiting",
                            signal.Signals(signum).name)
                self.should_exit = True

            previous = {number: signal.signal(number, request_stop) for number in (signal.SIGTERM, signal.SIGINT)}
            try:
                yield
            finally:
                for number, handler in previous.items():
                    signal.signal(number, handler)

    return Server(config)


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket (port 0 picks a free one), or ConfigError naming the address."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        sock = socket.create_server((host, port), family=family, backlog=2048)
    except OSError as error:
        raise ConfigError(f"cannot listen on {host}:{port}: {error.strerror or error}") from None
    sock.set_inheritable(True)
    return sock


def create_server(complete: CompleteFunction, settings: ServerSettings, tokenizer: Any = None) -> RunningServer:
    """Bind the socket and start the batching worker (serving starts with ``serve()``); ``tokenizer`` (the
    model's) lets chat requests cut answers with max_tokens / stop."""
    return RunningServer(complete, settings, tokenizer)


@dataclass(frozen=True)
class AddressRequest:
    """One address queued with the request's own ``detail`` setting (None: the server's --detail)."""

    address: str
    detail: str | None = None


def with_detail(addresses: Sequence[str], detail: str | None) -> list[Any]:
    """The worker's items for a request: plain addresses, or :class:`AddressRequest` when it names a detail."""
    return list(addresses) if detail is None else [AddressRequest(address, detail) for address in addresses]


def completer_function(completer: Any, batch_size: int) -> CompleteFunction:
    """Adapt a generate.Completer to the worker: detailed completions, decoded ``batch_size`` at a time; an
    :class:`AddressRequest` item carries its request's detail setting into the shared batch."""
    def complete(items: list[Any]) -> list[Any]:
        addresses = [item.address if isinstance(item, AddressRequest) else item for item in items]
        details = [item.detail if isinstance(item, AddressRequest) else None for item in items]
        return completer.complete_detailed(addresses, batch_size=batch_size,
                                           details=details if any(details) else None)

    return complete


def start_in_thread(completer: Any, settings: ServerSettings) -> RunningServer:
    """A running server in a background thread (tests, benchmarks); end it with ``server.stop()``."""
    return create_server(completer_function(completer, settings.max_batch_size), settings,
                         completer.tokenizer).start_in_thread()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = ServerSettings()
    parser.add_argument("--model", required=True, help="model folder (merged, or the base with --lora_path), .gguf file or hub name")
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
    parser.add_argument("--body-timeout", type=float, default=defaults.body_timeout,
                        help="seconds a request's headers may take to arrive (the connection is closed after), "
                             "then its body (408 after)")
    parser.add_argument("--shutdown-timeout", type=float, default=defaults.shutdown_timeout,
                        help="seconds requests in flight get to finish after SIGTERM / Ctrl-C")
    parser.add_argument("--report-dir", default=None, metavar="FOLDER",
                        help="an evaluate output folder (report.json, comparison.png) the web page at / shows in its "
                             "report tab")
    parser.add_argument("--max_new_tokens", type=int, default=64, help="upper bound on generated tokens")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "gpu"))
    parser.add_argument("--dtype", default="float32", help="float32, bfloat16 or float16 (CPU uses float32)")
    from .generate import add_decoding_arguments

    add_decoding_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from .generate import Completer, decoding_options
    from ..runtime import setup_runtime

    settings = ServerSettings(host=args.host, port=args.port, api_key=args.api_key,
                              model_name=args.model_name or "", max_batch_size=args.max_batch_size,
                              batch_wait_ms=args.batch_wait_ms, max_addresses=args.max_addresses,
                              max_input_chars=args.max_input_chars, body_timeout=args.body_timeout,
                              shutdown_timeout=args.shutdown_timeout, report_dir=args.report_dir)
    settings.validate()
    options = decoding_options(args)
    import logging

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
