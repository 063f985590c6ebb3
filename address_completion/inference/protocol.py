"""The server's protocol: settings, request checks and the pydantic request / response models (no app).

What a request to ``serve`` may hold and what comes back, independent of FastAPI and uvicorn: the app
(api.py) and the web page (webpage.py) validate with these functions and answer with these models; a
refused request is a :class:`RequestError` rendered in OpenAI's error shape. The "usable address" rule is
address_check.py's, shared with ``predict``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, WithJsonSchema

from ..data.prompt import MAX_INPUT_CHARS
from ..errors import ConfigError
from ..flags import flag_name
from .address_check import TOO_LONG, address_problem

OWNER = "address_completion"
REPORT_FILE = "report.json"


def check_report_dir(folder: Optional[str]) -> Optional[Path]:
    """The evaluation report folder ``serve --report-dir`` names, or ConfigError when it holds no report.json."""
    if folder is None:
        return None
    path = Path(folder).expanduser()
    if not (path / REPORT_FILE).is_file():
        raise ConfigError(f"--report-dir {folder}: no {REPORT_FILE} there; give the output_dir of an evaluate run")
    return path


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
                raise ConfigError(f"{flag_name(name)} must be at least 1, got {getattr(self, name)}")
        if not 0 <= self.batch_wait_ms < float("inf"):  # inf: the worker's queue wait overflows; nan: no wait
            raise ConfigError(f"--batch-wait-ms must be a finite number >= 0, got {self.batch_wait_ms}")
        for name in ("body_timeout", "shutdown_timeout"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{flag_name(name)} must be > 0 seconds, got {getattr(self, name)}")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"--port must be 0-65535 (0 picks a free port), got {self.port}")
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
    problem = address_problem(text, limit)  # the rule predict applies too
    if problem is not None and problem.kind == TOO_LONG:
        raise RequestError(413, f"{where} {problem.phrase} (--max-input-chars)", param=where, code="input_too_long")
    if problem is not None:  # [], 【】: nothing to complete
        raise RequestError(422, f"{where} {problem.phrase}", param=where)
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



# ---------------------------------------------------------------- OpenAI request and response models


ContentField = Annotated[Any, WithJsonSchema({
    "anyOf": [{"type": "string"},
              {"type": "array", "items": {"type": "object", "properties": {"type": {"const": "text"},
                                                                           "text": {"type": "string"}},
                                          "required": ["type", "text"]}}],
    "description": "the text, or a list of text parts (joined)"})]


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: StrictStr
    content: ContentField


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")
    include_usage: StrictBool = False


OptionField = Annotated[Any, WithJsonSchema({"type": "integer", "minimum": 1, "description":
    "cut the answer after this many tokens (finish_reason \"length\"); with both limits, the smaller"})]
StopField = Annotated[Any, WithJsonSchema({
    "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 4}],
    "description": "end the answer before the first of these strings"})]
LogprobsField = Annotated[Any, WithJsonSchema({"type": "boolean", "description": "true is refused (400): no token "
                                                                                 "log-probabilities are computed"})]


class ChatCompletionRequest(BaseModel):
    """OpenAI's chat request. The last user message is the address; max_tokens / max_completion_tokens and stop
    cut the answer (openai_fields); sampling options are accepted and ignored (decoding is greedy)."""

    model_config = ConfigDict(extra="allow")
    model: Optional[StrictStr] = None
    messages: list[ChatMessage] = Field(min_length=1)
    stream: Optional[StrictBool] = False
    stream_options: Optional[StreamOptions] = None
    n: Optional[StrictInt] = None
    detail: Optional[Literal["verbatim", "clean"]] = Field(
        None, description="this project's option: how the answer keeps the text after the division names (default: "
                          "the server's --detail)")
    # checked by openai_fields.chat_options (400 naming the field, as OpenAI answers a bad parameter)
    max_tokens: OptionField = None
    max_completion_tokens: OptionField = None
    stop: StopField = None
    logprobs: LogprobsField = None


class CompleteRequest(BaseModel):
    addresses: list[StrictStr] = Field(min_length=1, description="addresses to complete, at most --max-addresses")
    detail: Optional[Literal["verbatim", "clean"]] = Field(
        None, description="verbatim: every character after the division names as written; clean: the earlier "
                          "folding (default: the server's --detail)")


class CandidateInfo(BaseModel):
    text: str
    probability: float


class CompletionDetails(BaseModel):
    """How one answer was made (generate.Completion.details): the project's extra field, beside OpenAI's."""

    decoding: Literal["free", "constrained", "free_fallback"]
    probability: Optional[float] = Field(description="the answer's probability among the candidates (constrained)")
    abstained: bool = Field(description="true when the input came back unchanged: best probability < "
                                        "--min-confidence, or the answer was no current address (empty, 无, the "
                                        "prompt's text, a chain that does not exist today)")
    reason: Optional[str] = Field(None, description="why the input came back unchanged (abstained only)")
    candidates: list[CandidateInfo] = Field(description="the gazetteer's candidate answers, best first")
    more_candidates: bool = Field(description="true when the gazetteer had more readings than it lists (capped)")


class CompleteResponse(BaseModel):
    results: list[str] = Field(description="completed addresses, in request order")
    details: list[CompletionDetails] = Field(description="how each result was made, in the same order")


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class ChatChoice(BaseModel):
    model_config = ConfigDict(extra="allow")  # per-answer fields beyond OpenAI's pass through to the client
    index: int
    message: AssistantMessage
    logprobs: None = None
    finish_reason: Literal["stop", "length"]


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class Health(BaseModel):
    status: Literal["ok"]
    model: str


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: Optional[str]
    code: Optional[str]


class ErrorResponse(BaseModel):
    error: ErrorDetail


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse} for status in (400, 401, 408, 413, 422, 500, 503)}



def field_path(location: tuple) -> str:
    """('addresses', 1) -> 'addresses[1]'; ('messages', 0, 'content') -> 'messages[0].content'."""
    path = ""
    for part in location:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def validation_error(errors: list[dict]) -> RequestError:
    """The first pydantic error as a 422 naming its field."""
    error = errors[0]
    location = tuple(error.get("loc", ()))[1:]  # drop "body"
    if not location:
        if error.get("type") == "missing":
            return RequestError(422, "the request needs a JSON object body")
        return RequestError(422, f"the body must be a JSON object, got {type(error.get('input')).__name__}")
    path = field_path(location)
    if error.get("type") == "missing":
        return RequestError(422, f"missing field '{path}'", param=path)
    return RequestError(422, f"'{path}': {error.get('msg', 'invalid value')}", param=path)
