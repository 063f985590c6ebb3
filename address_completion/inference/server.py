"""Running the app under uvicorn: bind the socket, start the batching worker, serve, stop gracefully.

``serve`` (the CLI) and the tests / benchmarks (:func:`start_in_thread`) start servers here. Imported only
when a server starts (uvicorn and FastAPI are not needed for ``--help`` or the other commands).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import threading
import time
from typing import Any, Iterator

import uvicorn

from ..errors import ConfigError
from ..runtime import logger
from .api import Stopping, create_app
from .batching import BatchingWorker, CompleteFunction, completer_function
from .protocol import ServerSettings

CUT_GRACE = 5.0  # seconds between our cut (503 to every waiting request) and uvicorn cancelling what is left


class RunningServer:
    """A bound socket, the batching worker and the uvicorn server that serves them."""

    def __init__(self, complete: CompleteFunction, settings: ServerSettings, tokenizer: Any = None):
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


def uvicorn_server(config: Any, stopping: Stopping | None = None, cut_after: float = 0.0) -> Any:
    """A uvicorn.Server whose signal handling logs the signal and, after the graceful shutdown, lets the process
    exit 0 (uvicorn itself re-raises the signal afterwards, which would end the process with status -15);
    ``cut_after`` seconds into the shutdown, ``stopping`` is cut (requests still waiting get 503)."""
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


def start_in_thread(completer: Any, settings: ServerSettings) -> RunningServer:
    """A running server in a background thread (tests, benchmarks); end it with ``server.stop()``."""
    return create_server(completer_function(completer, settings.max_batch_size), settings,
                         completer.tokenizer).start_in_thread()
