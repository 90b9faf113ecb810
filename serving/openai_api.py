"""The OpenAI-compatible HTTP surface as plain data: parse requests, build responses (pure).

No FastAPI, Ray or I/O here: the Ray Serve ingress reads the body and headers, calls these
functions, and writes what they return. Shapes follow OpenAI's API and vLLM's extensions.

Provides:
    ApiError                  an HTTP error in OpenAI's shape: `.status`, `.headers`, `.body()`
      .from_validation_error  pydantic error -> 400 naming the field (dotted `param`)
      .from_invalid_request   backends.errors.InvalidRequestError -> 400 (`param` = its field)
      .model_not_found        -> 404, code "model_not_found"
      .slo_unmeetable         -> 429 with Retry-After: no backend can meet the SLO now
      .service_unavailable    -> 503 (an engine died or no backend is up)
    CompletionRequest, ChatCompletionRequest
                              request models (unknown fields ignored, wrong types rejected)
    ParsedRequest             what the ingress needs from either endpoint (frozen)
    parse_completion, parse_chat
                              body (bytes or dict) -> ParsedRequest, or raise ApiError
    resolve_slo               body `slo` > x-slo-*-ms headers > slo_class > x-slo-class > default
    completion_response, chat_response           non-streamed answers
    completion_chunk, chat_chunk, usage_chunk    streamed pieces
    StreamEncoder             engine Chunks -> SSE events in OpenAI's order, then [DONE]
    sse, SSE_DONE             Server-Sent Events framing

Finish reasons are the engine's own: "stop", "length", and "abort" (as vLLM sends; OpenAI has
no such value, but the OpenAI SDK reads responses without validating it).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, ValidationError
from pydantic_core import PydanticCustomError

from backends.errors import InvalidRequestError, InvalidSamplingError, PromptTooLongError
from backends.interface import Chunk, FinishReason, SamplingParams, Usage
from serving.config import SloSpec

__all__ = [
    "SSE_DONE",
    "ApiError",
    "ChatCompletionRequest",
    "CompletionRequest",
    "ParsedRequest",
    "StreamEncoder",
    "chat_chunk",
    "chat_response",
    "completion_chunk",
    "completion_response",
    "parse_chat",
    "parse_completion",
    "pinned_backend",
    "resolve_slo",
    "sse",
    "usage_chunk",
]

DEFAULT_COMPLETION_MAX_TOKENS = 16  # OpenAI's default when `max_tokens` is left out
DEFAULT_TEMPERATURE = 1.0  # OpenAI's and vLLM's default when `temperature` is left out
SLO_HEADERS = {"ttft_ms": "x-slo-ttft-ms", "tpot_ms": "x-slo-tpot-ms", "e2e_ms": "x-slo-e2e-ms"}
SLO_CLASS_HEADER = "x-slo-class"
PIN_HEADER = "x-costroute-pin-backend"  # route to this backend, whatever the policy says


# --------------------------------------------------------------------------- errors


class ApiError(Exception):
    """An error answer: HTTP `status`, OpenAI's error `body()`, and extra `headers`."""

    def __init__(
        self,
        status: int,
        message: str,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers: dict[str, str] = dict(headers or {})

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type,
                          "param": self.param, "code": self.code}}

    def __repr__(self) -> str:
        return f"ApiError({self.status}, {self.message!r}, param={self.param!r})"

    @classmethod
    def from_validation_error(cls, exc: ValidationError) -> ApiError:
        """400 naming the first bad field (`param` is its dotted location) and its value."""
        err = exc.errors()[0]
        param = ".".join(str(p) for p in err["loc"]) or None
        where = param or "request body"
        if err["type"] == "missing":
            message = f"{where} is required"
        elif err["type"] == "extra_forbidden":
            message = f"{where} is not a known field (got {_shown(err.get('input'))})"
        else:
            message = f"{where}: {err['msg']} (got {_shown(err.get('input'))})"
        return cls(400, message, param=param)

    @classmethod
    def from_invalid_request(cls, exc: InvalidRequestError) -> ApiError:
        """400 for what the engine or SamplingParams rejected; `param` is the field it names."""
        code = "context_length_exceeded" if isinstance(exc, PromptTooLongError) else None
        return cls(400, str(exc), param=exc.field, code=code)

    @classmethod
    def model_not_found(cls, name: str, available: Sequence[str]) -> ApiError:
        """404 as OpenAI answers an unknown model (type invalid_request_error)."""
        return cls(404, f"The model {name!r} does not exist; this server serves "
                        f"{sorted(available)}. Set `model` to one of those.",
                   param="model", code="model_not_found")

    @classmethod
    def slo_unmeetable(cls, retry_after_s: float, detail: str) -> ApiError:
        """429 with Retry-After (whole seconds) and retry-after-ms (read by the OpenAI SDK)."""
        wait_s = retry_after_s if math.isfinite(retry_after_s) else 1.0
        wait_s = max(0.0, wait_s)
        seconds = max(1, math.ceil(wait_s))
        return cls(429, f"No backend can meet this request's SLO now ({detail}). Retry after "
                        f"{seconds} s, or relax the SLO (body `slo`, x-slo-* headers or "
                        f"slo_class).",
                   type="rate_limit_exceeded", code="slo_unmeetable",
                   headers={"Retry-After": str(seconds),
                            "retry-after-ms": str(math.ceil(wait_s * 1000))})

    @classmethod
    def service_unavailable(cls, message: str, retry_after_s: float | None = None) -> ApiError:
        """503: the request was fine but nothing can serve it now (e.g. EngineDeadError)."""
        headers = {}
        if retry_after_s is not None and math.isfinite(retry_after_s):
            headers["Retry-After"] = str(max(1, math.ceil(retry_after_s)))
        return cls(503, message, type="service_unavailable", headers=headers)


def _shown(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --------------------------------------------------------------------------- request models


def _is_token_id(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _one_prompt(value: object) -> str | tuple[int, ...]:
    """A string, token ids, or a list holding one of those; batches are refused."""
    if isinstance(value, str):
        if value:
            return value
        raise PydanticCustomError("empty_prompt", "prompt must not be empty")
    if isinstance(value, list) and value and all(_is_token_id(t) for t in value):
        return tuple(value)
    if isinstance(value, list) and len(value) == 1:
        inner = value[0]
        if isinstance(inner, str) or (isinstance(inner, list) and all(map(_is_token_id, inner))):
            return _one_prompt(inner)
    if isinstance(value, list) and len(value) > 1 and all(isinstance(p, (str, list)) for p in value):
        raise PydanticCustomError(
            "prompt_batch",
            "only one prompt per request is supported; got {n} prompts: send one request each",
            {"n": len(value)})
    raise PydanticCustomError(
        "prompt_type", "prompt must be a non-empty string or list of token ids (integers)")


def _stop_strings(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(s, str) for s in value):
        return tuple(value)
    raise PydanticCustomError("stop_type", "stop must be a string or a list of strings")


def _text_content(value: object) -> str:
    """A message's content as text: a string, or the text parts joined by newlines (as vLLM)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        texts = []
        for i, part in enumerate(value):
            if not (isinstance(part, dict) and part.get("type") == "text"
                    and isinstance(part.get("text"), str)):
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise PydanticCustomError(
                    "content_part", "only text content parts (type 'text' with a string 'text') "
                    "are supported; part {i} is {kind}", {"i": i, "kind": repr(kind)})
            texts.append(part["text"])
        return "\n".join(texts)
    raise PydanticCustomError("content_type", "content must be a string or a list of text parts")


Prompt = Annotated[str | tuple[int, ...], PlainValidator(_one_prompt)]
StopStrings = Annotated[tuple[str, ...], PlainValidator(_stop_strings)]
TextContent = Annotated[str, PlainValidator(_text_content)]


class _Model(BaseModel):
    # strict: "5" is not an int and 1 is not a bool; extra fields are ignored, as OpenAI does.
    model_config = ConfigDict(strict=True, extra="ignore", allow_inf_nan=False, frozen=True)


class SloBody(_Model):
    """The `slo` extension. Unknown keys are refused: a typo must not drop a target silently."""

    model_config = ConfigDict(extra="forbid")

    ttft_ms: float | None = Field(None, gt=0, description="time to first token, ms")
    tpot_ms: float | None = Field(None, gt=0, description="time per output token, ms")
    e2e_ms: float | None = Field(None, gt=0, description="request to last token, ms")


class StreamOptions(_Model):
    include_usage: bool | None = False


class ChatMessage(_Model):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: TextContent = ""


class _Common(_Model):
    model: str | None = Field(None, description="served model name; left out: the served one")
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = Field(None, description="vLLM extension; -1 or 0 disables")
    seed: int | None = None
    stop: StopStrings = ()
    stop_token_ids: list[int] | None = Field(None, description="vLLM extension")
    ignore_eos: bool | None = Field(False, description="vLLM extension")
    n: int | None = None
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    user: str | None = None
    slo: SloBody | None = Field(None, description="costroute extension: latency targets")
    slo_class: str | None = Field(None, description="costroute extension: a named SLO class")
    # Declared only so that a request relying on them is refused, not silently changed.
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    repetition_penalty: float | None = None
    logit_bias: dict[str, float] | None = None


class CompletionRequest(_Common):
    """POST /v1/completions. Explicit `max_tokens: null` means up to the context (as vLLM)."""

    prompt: Prompt
    max_tokens: int | None = DEFAULT_COMPLETION_MAX_TOKENS
    logprobs: int | None = None
    echo: bool | None = None
    best_of: int | None = None
    suffix: str | None = None


class ChatCompletionRequest(_Common):
    """POST /v1/chat/completions. `max_completion_tokens` wins over the older `max_tokens`."""

    messages: list[ChatMessage] = Field(..., min_length=1)
    max_completion_tokens: int | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    tools: list[Any] | None = None


def request_body(model: type[BaseModel]) -> dict[str, Any]:
    """An OpenAPI `requestBody` for a route that reads its raw body (to answer bad input in
    OpenAI's error shape): the request model's JSON schema with its definitions inlined, so
    `/openapi.json` is a usable contract (clients, fuzzers) without FastAPI parsing bodies."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return inline({**defs[ref.rpartition("/")[2]],
                               **{k: v for k, v in node.items() if k != "$ref"}})
            return {k: inline(v) for k, v in node.items()}
        if isinstance(node, list):
            return [inline(v) for v in node]
        return node

    return {"requestBody": {"required": True,
                            "content": {"application/json": {"schema": inline(schema)}}}}


# (field, is the value unsupported?, what to do). Checked after validation, on either kind.
_UNSUPPORTED: tuple[tuple[str, Callable[[Any], bool], str], ...] = (
    ("n", lambda v: v not in (None, 1), "send n=1 and one request per choice"),
    ("best_of", lambda v: v not in (None, 1), "leave best_of out"),
    ("logprobs", lambda v: v is not None and v is not False, "leave logprobs out"),
    ("top_logprobs", bool, "leave top_logprobs out"),
    ("echo", bool, "leave echo out"),
    ("suffix", bool, "leave suffix out"),
    ("tools", bool, "leave tools out"),
    ("logit_bias", bool, "leave logit_bias out"),
    ("frequency_penalty", bool, "leave it out or send 0"),
    ("presence_penalty", bool, "leave it out or send 0"),
    ("repetition_penalty", lambda v: v not in (None, 1), "leave it out or send 1"),
)


_R = TypeVar("_R", bound=_Common)


def _refuse_unsupported(req: _Common) -> None:
    for name, unsupported, why in _UNSUPPORTED:
        value = getattr(req, name, None)
        if unsupported(value):
            raise ApiError(400, f"{name}={_shown(value)} is not supported; {why}", param=name)


# --------------------------------------------------------------------------- parsing


@dataclass(frozen=True)
class ParsedRequest:
    """One request, checked and mapped onto the engine's types.

    `max_tokens` None means "up to the context": `sampling` is then None too, and the caller
    fills both with `with_max_tokens(context_len - prompt_len)` once it knows the prompt length.
    """

    kind: Literal["completion", "chat"]
    prompt: str | None  # text (chat: the rendered template); None when token ids are given
    prompt_token_ids: tuple[int, ...] | None
    sampling: SamplingParams | None
    max_tokens: int | None
    stream: bool
    include_usage: bool  # streaming only: send a usage-only chunk before [DONE]
    slo_body: dict[str, float] = field(default_factory=dict)  # only the targets given
    slo_class: str | None = None
    sampling_base: SamplingParams = field(default_factory=SamplingParams, repr=False)

    def with_max_tokens(self, max_tokens: int) -> ParsedRequest:
        """This request with `max_tokens` set (and `sampling` built); 400 if below 1."""
        sampling = replace(self.sampling_base, max_tokens=max_tokens)
        _validate_sampling(sampling, "max_tokens")
        return replace(self, sampling=sampling, max_tokens=max_tokens)


def parse_completion(body: bytes | str | Mapping[str, Any], served_model: str) -> ParsedRequest:
    """Check a /v1/completions body; raise ApiError (400 or 404) if it cannot be served."""
    req = _validate(CompletionRequest, body, served_model)
    if isinstance(req.prompt, str):
        text, ids = req.prompt, None
    else:
        text, ids = None, req.prompt
    return _parsed("completion", req, text, ids, req.max_tokens, "max_tokens")


def parse_chat(
    body: bytes | str | Mapping[str, Any],
    served_model: str,
    apply_chat_template: Callable[[list[dict[str, Any]]], str],
) -> ParsedRequest:
    """Check a /v1/chat/completions body and render its messages with `apply_chat_template`.

    The template gets `[{"role", "content"}]` with content as plain text. A template that
    rejects the messages (ValueError, TypeError, KeyError, jinja2 TemplateError) gives 400.
    """
    req = _validate(ChatCompletionRequest, body, served_model)
    messages = [{"role": m.role, "content": m.content} for m in req.messages]
    try:
        prompt = apply_chat_template(messages)
    except Exception as exc:
        if not isinstance(exc, (ValueError, TypeError, KeyError)) and not _is_template_error(exc):
            raise
        raise ApiError(400, f"the chat template cannot render these messages: {exc}",
                       param="messages") from exc
    if req.max_completion_tokens is not None:
        return _parsed("chat", req, prompt, None, req.max_completion_tokens,
                       "max_completion_tokens")
    return _parsed("chat", req, prompt, None, req.max_tokens, "max_tokens")


def _is_template_error(exc: Exception) -> bool:
    return any(c.__name__ == "TemplateError" for c in type(exc).__mro__)


def _validate(model: type[_R], body: bytes | str | Mapping[str, Any], served_model: str) -> _R:
    data = _json_object(body)
    try:
        req = model.model_validate(data)
    except ValidationError as exc:
        raise ApiError.from_validation_error(exc) from None
    if req.model is not None and req.model != served_model:
        raise ApiError.model_not_found(req.model, [served_model])
    _refuse_unsupported(req)
    return req


def _json_object(body: bytes | str | Mapping[str, Any]) -> Mapping[str, Any]:
    if isinstance(body, (bytes, bytearray, str)):
        try:
            body = json.loads(body, parse_constant=_refuse_constant)
        except (ValueError, RecursionError) as exc:
            raise ApiError(400, f"The request body is not valid JSON ({exc}). Send a JSON "
                                "object with Content-Type: application/json.") from None
    if not isinstance(body, Mapping):
        raise ApiError(400, f"The request body must be a JSON object, got "
                            f"{type(body).__name__}: {_shown(body)}")
    return body


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON")


def _parsed(
    kind: Literal["completion", "chat"],
    req: _Common,
    prompt: str | None,
    token_ids: tuple[int, ...] | None,
    max_tokens: int | None,
    max_tokens_name: str,
) -> ParsedRequest:
    if max_tokens is not None and max_tokens < 1:
        raise ApiError(400, f"{max_tokens_name} must be at least 1, got {max_tokens}",
                       param=max_tokens_name)
    base = SamplingParams(
        max_tokens=max_tokens if max_tokens is not None else 1,
        temperature=DEFAULT_TEMPERATURE if req.temperature is None else req.temperature,
        top_p=1.0 if req.top_p is None else req.top_p,
        top_k=0 if req.top_k in (None, -1) else req.top_k,  # vLLM: -1 disables top-k
        seed=req.seed,
        stop=req.stop,
        stop_token_ids=tuple(req.stop_token_ids or ()),
        ignore_eos=bool(req.ignore_eos),
    )
    _validate_sampling(base, max_tokens_name)
    stream = bool(req.stream)
    include_usage = stream and req.stream_options is not None and bool(req.stream_options.include_usage)
    slo_body = req.slo.model_dump(exclude_none=True) if req.slo is not None else {}
    return ParsedRequest(
        kind=kind, prompt=prompt, prompt_token_ids=token_ids,
        sampling=base if max_tokens is not None else None, max_tokens=max_tokens,
        stream=stream, include_usage=include_usage, slo_body=slo_body,
        slo_class=req.slo_class, sampling_base=base,
    )


def _validate_sampling(sampling: SamplingParams, max_tokens_name: str) -> None:
    try:
        sampling.validate()
    except InvalidSamplingError as exc:
        error = ApiError.from_invalid_request(exc)
        if error.param == "max_tokens":
            error.param = max_tokens_name
        raise error from None


# --------------------------------------------------------------------------- SLO


def resolve_slo(
    parsed: ParsedRequest,
    headers: Mapping[str, str],
    classes: Mapping[str, SloSpec],
    default_class: str | None,
) -> tuple[SloSpec, str | None]:
    """The request's SLO and the class it came from (None when no class applies).

    Each target comes from the first of: body `slo`, its x-slo-*-ms header, the class. The
    class is body `slo_class`, else header x-slo-class, else `default_class` (only for a
    request that carries no SLO of its own: explicit targets alone are the whole SLO). Header
    names are case-insensitive. An empty SloSpec means the request has no SLO.
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    explicit = _header_targets(lowered) | parsed.slo_body
    class_name, param = parsed.slo_class, "slo_class"
    if class_name is None and SLO_CLASS_HEADER in lowered:
        class_name, param = lowered[SLO_CLASS_HEADER], SLO_CLASS_HEADER
    if class_name is None and not explicit:
        class_name, param = default_class, "default_slo_class"
    targets: dict[str, float] = {}
    if class_name is not None:
        if class_name not in classes:
            known = sorted(classes) or "none are configured"
            status = 500 if param == "default_slo_class" else 400
            raise ApiError(status, f"unknown SLO class {class_name!r} (from {param}); "
                                   f"known classes: {known}", param=param,
                           type="invalid_request_error" if status == 400 else "server_error")
        targets.update(classes[class_name].model_dump(exclude_none=True))
    targets.update(explicit)
    return SloSpec(**targets), class_name


def pinned_backend(headers: Mapping[str, str], backends: Iterable[str]) -> str | None:
    """The backend a request pins with x-costroute-pin-backend (None: the policy decides)."""
    lowered = {k.lower(): v for k, v in headers.items()}
    pin = lowered.get(PIN_HEADER)
    if pin is None:
        return None
    known = sorted(backends)
    if pin.strip() not in known:
        raise ApiError(400, f"header {PIN_HEADER} names unknown backend {_shown(pin)}; "
                            f"known: {known}", param=PIN_HEADER)
    return pin.strip()


def _header_targets(lowered: Mapping[str, str]) -> dict[str, float]:
    targets = {}
    for name, header in SLO_HEADERS.items():
        raw = lowered.get(header)
        if raw is None:
            continue
        try:
            value = float(raw.strip())
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or value <= 0:
            raise ApiError(400, f"header {header} must be a positive number of milliseconds, "
                                f"got {_shown(raw)}", param=header)
        targets[name] = value
    return targets


# --------------------------------------------------------------------------- responses


def _usage(usage: Usage) -> dict[str, int]:
    return {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens}


def _id(prefix: str, request_id: str) -> str:
    return request_id if request_id.startswith(prefix) else prefix + request_id


def completion_response(
    request_id: str, created: int, model: str, text: str,
    finish_reason: FinishReason, usage: Usage,
) -> dict[str, Any]:
    """A non-streamed /v1/completions answer (id "cmpl-<request_id>")."""
    return {
        "id": _id("cmpl-", request_id), "object": "text_completion", "created": created,
        "model": model,
        "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason}],
        "usage": _usage(usage),
    }


def chat_response(
    request_id: str, created: int, model: str, text: str,
    finish_reason: FinishReason, usage: Usage,
) -> dict[str, Any]:
    """A non-streamed /v1/chat/completions answer (id "chatcmpl-<request_id>")."""
    return {
        "id": _id("chatcmpl-", request_id), "object": "chat.completion", "created": created,
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                     "logprobs": None, "finish_reason": finish_reason}],
        "usage": _usage(usage),
    }


def completion_chunk(
    request_id: str, created: int, model: str, text: str,
    finish_reason: FinishReason | None = None, include_usage: bool = False,
) -> dict[str, Any]:
    """A streamed /v1/completions piece. With `include_usage` it carries "usage": null."""
    chunk: dict[str, Any] = {
        "id": _id("cmpl-", request_id), "object": "text_completion", "created": created,
        "model": model,
        "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason}],
    }
    if include_usage:
        chunk["usage"] = None
    return chunk


def chat_chunk(
    request_id: str, created: int, model: str, content: str | None = None,
    finish_reason: FinishReason | None = None, *, first: bool = False,
    include_usage: bool = False,
) -> dict[str, Any]:
    """A streamed chat piece. `first`: delta {role: assistant, content: ""}; then {content};
    a piece with no content has delta {} (the last one, with `finish_reason`)."""
    if first:
        delta: dict[str, str] = {"role": "assistant", "content": content or ""}
    else:
        delta = {"content": content} if content else {}
    chunk: dict[str, Any] = {
        "id": _id("chatcmpl-", request_id), "object": "chat.completion.chunk",
        "created": created, "model": model,
        "choices": [{"index": 0, "delta": delta, "logprobs": None,
                     "finish_reason": finish_reason}],
    }
    if include_usage:
        chunk["usage"] = None
    return chunk


def usage_chunk(
    kind: Literal["completion", "chat"], request_id: str, created: int, model: str, usage: Usage,
) -> dict[str, Any]:
    """The usage-only last chunk (choices []) sent when stream_options.include_usage is set."""
    if kind == "chat":
        ident, obj = _id("chatcmpl-", request_id), "chat.completion.chunk"
    else:
        ident, obj = _id("cmpl-", request_id), "text_completion"
    return {"id": ident, "object": obj, "created": created, "model": model, "choices": [],
            "usage": _usage(usage)}


SSE_DONE = "data: [DONE]\n\n"


def sse(obj: Mapping[str, Any]) -> str:
    """One Server-Sent Event carrying `obj` as compact JSON."""
    return "data: " + json.dumps(obj, separators=(",", ":"), ensure_ascii=False) + "\n\n"


class StreamEncoder:
    """Turns one request's engine Chunks into SSE events, in OpenAI's order (no I/O).

        enc = StreamEncoder(parsed, request_id, created, model)
        for chunk in engine_stream: yield from enc.feed(chunk)   # ends with [DONE]
        on a failure mid-stream:    yield from enc.error(api_error)
    """

    def __init__(self, parsed: ParsedRequest, request_id: str, created: int, model: str) -> None:
        self._kind = parsed.kind
        self._include_usage = parsed.include_usage
        self._args = (request_id, created, model)
        self._started = False

    def feed(self, chunk: Chunk) -> list[str]:
        """The events for `chunk` (maybe none); after the last chunk, usage and [DONE]."""
        events = []
        if self._kind == "chat" and not self._started:
            events.append(sse(chat_chunk(*self._args, first=True,
                                         include_usage=self._include_usage)))
        self._started = True
        if chunk.text or chunk.finished:
            events.append(sse(self._piece(chunk.text, chunk.finish_reason)))
        if chunk.finished:
            if self._include_usage and chunk.usage is not None:
                events.append(sse(usage_chunk(self._kind, *self._args, chunk.usage)))
            events.append(SSE_DONE)
        return events

    def error(self, err: ApiError) -> list[str]:
        """An error event in OpenAI's shape (the SDK raises it), then [DONE]."""
        return [sse(err.body()), SSE_DONE]

    def _piece(self, text: str, finish_reason: FinishReason | None) -> dict[str, Any]:
        if self._kind == "chat":
            return chat_chunk(*self._args, text, finish_reason, include_usage=self._include_usage)
        return completion_chunk(*self._args, text, finish_reason,
                                include_usage=self._include_usage)
