"""The HTTP application behind ``serve``: FastAPI routes, pydantic models of the OpenAI request and response.

Imported only when a server starts (FastAPI is not needed for ``--help`` or the other commands). The raw
request is handled by :class:`RequestGuard`, an ASGI middleware in front of the routes: it reads the body
under a deadline (408) and a size limit (413), checks the API key (401) and parses the JSON (400), so the
typed route handlers only ever see a parsed body and every refusal has OpenAI's error shape.
Model calls go through the batching worker, which calls ``Completer.complete_detailed``; every chat
choice, streamed or not, is built by :func:`chat_choice`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import time
import uuid
from typing import Any, AsyncIterator

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import DEFAULT_PROMPT_PREFIX
from ..data import dataio
from ..runtime import logger
from .batching import BatchingWorker, with_detail
from .openai_fields import chat_options, limit_completion
from .protocol import (ERROR_RESPONSES, OWNER, AssistantMessage, ChatChoice, ChatCompletion, ChatCompletionRequest,
                       CompleteRequest, CompleteResponse, Health, ModelCard, ModelList, RequestError, ServerSettings,
                       Usage, address_from_chat_request, addresses_from_complete_request, check_report_dir,
                       validation_error)
from .webpage import OPEN_PAGE_PATHS, add_routes

BODY_DRAIN_LIMIT = 8 << 20  # read (and drop) at most this much of a refused body so the client sees our reply
DOC_PATHS = {"/docs", "/docs/oauth2-redirect", "/openapi.json", "/redoc"}
OPEN_PATHS = {"/health", *DOC_PATHS, *OPEN_PAGE_PATHS}  # no API key needed (the page asks for it itself)
JSON_CONTENT_TYPE = (b"content-type", b"application/json")

# ---------------------------------------------------------------- responses


def chat_choice(completion: Any, index: int = 0) -> ChatChoice:
    """The one place a generate.Completion becomes a chat choice (plain and streamed responses both use it)."""
    return ChatChoice(index=index, message=AssistantMessage(content=completion.text),
                      finish_reason=completion.finish_reason, address_completion=completion.details())


def usage_of(completion: Any) -> Usage:
    return Usage(prompt_tokens=completion.prompt_tokens, completion_tokens=completion.completion_tokens,
                 total_tokens=completion.prompt_tokens + completion.completion_tokens)


def chat_completion(completion: Any, model_name: str) -> ChatCompletion:
    """OpenAI's chat.completion object for one answer."""
    return ChatCompletion(id=f"chatcmpl-{uuid.uuid4().hex}", created=int(time.time()), model=model_name,
                          choices=[chat_choice(completion)], usage=usage_of(completion))


def stream_events(completion: Any, model_name: str, include_usage: bool) -> list[str]:
    """OpenAI's chat.completion.chunk events for one finished answer: the role, the text, then the finish reason
    (with any extra choice fields), optionally the usage, then ``[DONE]``. The answer is one short line, so its
    text is sent as one chunk."""
    choice = chat_choice(completion).model_dump()
    message = choice.pop("message")
    header = {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion.chunk", "created": int(time.time()),
              "model": model_name}

    def chunk(choices: list[dict], **extra: Any) -> str:
        return "data: " + json.dumps({**header, "choices": choices, **extra}, ensure_ascii=False) + "\n\n"

    index = choice["index"]
    events = [chunk([{"index": index, "delta": {"role": message["role"], "content": ""}, "logprobs": None,
                      "finish_reason": None}]),
              chunk([{"index": index, "delta": {"content": message["content"]}, "logprobs": None,
                      "finish_reason": None}]),
              chunk([{**choice, "delta": {}}])]
    if include_usage:
        events.append(chunk([], usage=usage_of(completion).model_dump()))
    events.append("data: [DONE]\n\n")
    return events


def error_response(error: RequestError) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if error.status == 401 else None
    return JSONResponse(error.payload(), status_code=error.status, headers=headers)


# ---------------------------------------------------------------- raw request handling


class RequestGuard:
    """ASGI middleware: body deadline and size, API key and JSON parsing before routing; one log line per request."""

    def __init__(self, app: Any, settings: ServerSettings, routes: dict[str, set[str]]):
        self.app, self.settings, self.routes = app, settings, routes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status: list[int] = []

        async def send_logged(message: dict) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
            await send(message)

        scope.setdefault("state", {})
        try:
            await self._guarded(scope, receive, send_logged)
        except asyncio.CancelledError:  # uvicorn's shutdown timeout or a forced exit cut this request
            scope["state"]["detail"] = SHUTTING_DOWN
            if not status:
                with contextlib.suppress(Exception):
                    await error_response(shutting_down())(scope, receive, send_logged)
        finally:
            detail = scope["state"].get("detail", "")
            client = (scope.get("client") or ("-",))[0]
            logger.info("%s %s %s %s %.1f ms%s", client, scope["method"], scope["path"],
                        status[0] if status else "closed", (time.perf_counter() - started) * 1000,
                        f" {detail}" if detail else "")

    async def _guarded(self, scope: dict, receive: Any, send: Any) -> None:
        try:
            body = await self._read_body(scope, receive)
            if body is None:
                return  # the client went away
            methods = self.routes.get(scope["path"])
            if methods is not None and scope["method"] in methods:
                if scope["path"] not in OPEN_PATHS:
                    self._check_api_key(scope)
                if scope["method"] == "POST":
                    parse_json_object(body)
                    scope["headers"] = [h for h in scope["headers"] if h[0] != b"content-type"] + [JSON_CONTENT_TYPE]
        except RequestError as error:
            scope["state"]["detail"] = error.message
            response = error_response(error)
            if error.status in (408, 413):
                response.headers["Connection"] = "close"  # the rest of the body is not read
            await response(scope, receive, send)
            return
        await self.app(scope, replay(body, receive), send)

    async def _read_body(self, scope: dict, receive: Any) -> bytes | None:
        """The whole body, or RequestError 408 (not complete within --body-timeout) / 413 (over the limit)."""
        limit, timeout = self.settings.max_body_bytes, self.settings.body_timeout
        declared = header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._drain(receive, min(int(declared), BODY_DRAIN_LIMIT), time.monotonic() + timeout)
            raise RequestError(413, f"request body of {declared} bytes exceeds the limit of {limit} bytes",
                               code="body_too_large")
        deadline = time.monotonic() + timeout
        chunks, size = [], 0
        while True:
            message = await self._receive_before(receive, deadline)
            if message["type"] == "http.disconnect":
                return None
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > limit:
                raise RequestError(413, f"request body exceeds the limit of {limit} bytes", code="body_too_large")
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _receive_before(self, receive: Any, deadline: float) -> dict:
        try:
            return await asyncio.wait_for(receive(), timeout=max(0.0, deadline - time.monotonic()))
        except asyncio.TimeoutError:
            raise RequestError(408, f"the request body did not arrive within {self.settings.body_timeout:g} s "
                                    "(--body-timeout)", code="request_timeout") from None

    async def _drain(self, receive: Any, amount: int, deadline: float) -> None:
        """Read what the client sends before replying; replying over unread data resets the connection."""
        try:
            while amount > 0:
                message = await self._receive_before(receive, deadline)
                if message["type"] == "http.disconnect" or not message.get("more_body", False):
                    return
                amount -= len(message.get("body", b""))
        except RequestError:
            return

    def _check_api_key(self, scope: dict) -> None:
        expected = self.settings.api_key
        if not expected:
            return
        scheme, _, token = (header(scope, b"authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), expected.encode()):
            raise RequestError(401, "missing or wrong API key: send the header 'Authorization: Bearer KEY' with "
                                    "the key the server was started with (--api-key)",
                               error_type="authentication_error", code="invalid_api_key")


def header(scope: dict, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


def replay(body: bytes, receive: Any) -> Any:
    """A receive callable that hands over the already read body, then waits for the client's disconnect."""
    delivered = False

    async def receive_again() -> dict:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return receive_again


def parse_json_object(raw: bytes) -> Any:
    """The parsed body, or RequestError 400 naming what is broken (the route's model checks the shape)."""
    try:
        return dataio.loads(raw.decode("utf-8")) if raw.strip() else None
    except UnicodeDecodeError as error:
        raise RequestError(400, f"the body is not UTF-8 (byte {error.start})", code="invalid_json") from None
    except json.JSONDecodeError as error:
        raise RequestError(400, f"broken JSON: {dataio.json_error(error, line=True)}",
                           code="invalid_json") from None


# ---------------------------------------------------------------- the application

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


SHUTTING_DOWN = "server shutting down: this request was not answered within --shutdown-timeout; send it again " \
                "to a running server"


def shutting_down() -> RequestError:
    return RequestError(503, SHUTTING_DOWN, error_type="server_error", code="server_shutting_down")


def create_app(worker: BatchingWorker, settings: ServerSettings, stopping: Stopping | None = None,
               tokenizer: Any = None) -> Any:
    """The FastAPI application serving ``worker``'s model under ``settings`` (the worker must be running);
    requests still waiting for the model when ``stopping`` is cut answer 503. ``tokenizer`` (the model's)
    decodes answers cut by max_tokens / stop; without it those options are a 400."""
    stopping = stopping or Stopping()
    app = FastAPI(title="address_completion", version="1", description=(
        "Completes Chinese postal addresses. OpenAI-compatible chat completions (greedy decoding; "
        "`stream: true` answers with server-sent events) and a plain batch endpoint."))
    started = int(time.time())

    async def run_model(addresses: list[Any]) -> list[Any]:
        if stopping.is_cut():
            raise shutting_down()
        cut = asyncio.ensure_future(stopping.event().wait())
        answer = asyncio.ensure_future(worker.submit_async(addresses))
        try:
            await asyncio.wait({cut, answer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            cut.cancel()
            if not answer.done():
                answer.cancel()  # the worker skips a job whose request is gone
        if not answer.done() or answer.cancelled():
            raise shutting_down()
        try:
            return answer.result()
        except Exception as error:  # a failed batch: every waiting request hears about it, the server keeps serving
            logger.exception("a batch of %d address(es) failed", len(addresses))
            raise RequestError(500, f"internal error: {type(error).__name__}: {error}",
                               error_type="server_error") from None

    @app.get("/health", response_model=Health)
    async def health() -> Health:
        """Liveness probe; needs no API key."""
        return Health(status="ok", model=settings.model_name)

    @app.get("/v1/models", response_model=ModelList, responses=ERROR_RESPONSES)
    async def models() -> ModelList:
        return ModelList(data=[ModelCard(id=settings.model_name, created=started, owned_by=OWNER)])

    @app.post("/v1/complete", response_model=CompleteResponse, responses=ERROR_RESPONSES)
    async def complete(body: CompleteRequest, request: Request) -> CompleteResponse:
        """Complete a list of addresses (decoded together with other requests' addresses)."""
        addresses = addresses_from_complete_request(body.model_dump(), settings)
        completions = await run_model(with_detail(addresses, body.detail))
        request.state.detail = f"{len(addresses)} address" + ("" if len(addresses) == 1 else "es")
        return CompleteResponse(results=[completion.text for completion in completions],
                                details=[completion.details() for completion in completions])

    @app.post("/v1/chat/completions", response_model=ChatCompletion, responses={
        **ERROR_RESPONSES, 200: {"content": {"text/event-stream": {}},
                                 "description": "chat.completion, or chat.completion.chunk events with stream=true"}})
    async def chat(body: ChatCompletionRequest, request: Request) -> Any:
        """The last user message is the address (the prompt prefix is optional)."""
        raw = body.model_dump()
        address = address_from_chat_request(raw, settings)
        options = chat_options(raw)
        if options.cuts and tokenizer is None:
            raise RequestError(400, "this server cannot cut answers (no tokenizer): leave out max_tokens and stop",
                               param="max_tokens" if options.max_tokens else "stop")
        [completion] = await run_model(with_detail([address], body.detail))
        completion = limit_completion(completion, tokenizer, options)
        request.state.detail = "1 address" + (", streamed" if body.stream else "")
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            events = stream_events(completion, settings.model_name, include_usage)
            return StreamingResponse(iterate(events), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache"})
        return chat_completion(completion, settings.model_name)

    @app.exception_handler(RequestError)
    async def refused(request: Request, error: RequestError) -> JSONResponse:
        request.state.detail = error.message
        return error_response(error)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        return await refused(request, validation_error(list(error.errors())))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        path, method = request.url.path, request.method
        if error.status_code == 404:
            known = ", ".join(path for path in routes if path not in DOC_PATHS)
            return await refused(request, RequestError(404, f"unknown path {path}; endpoints: {known}",
                                                       error_type="not_found_error", code="unknown_url"))
        if error.status_code == 405:
            allowed = ", ".join(sorted(routes.get(path, ())))
            return await refused(request, RequestError(405, f"{path} accepts {allowed}, not {method}",
                                                       code="method_not_allowed"))
        return await refused(request, RequestError(error.status_code, str(error.detail)))

    add_routes(app, run_model, settings, check_report_dir(settings.report_dir), DEFAULT_PROMPT_PREFIX)
    routes: dict[str, set[str]] = {}
    for route in app.routes:
        routes.setdefault(route.path, set()).update(getattr(route, "methods", None) or ())
    app.add_middleware(RequestGuard, settings=settings, routes=routes)
    return app


async def iterate(events: list[str]) -> AsyncIterator[str]:
    for event in events:
        yield event
