"""serving.openai_api: request parsing, errors, SLO resolution and response shapes (pure, fast).

The response shapes are checked twice: against the OpenAI SDK's own pydantic types, and by
the real SDK client talking to a mock transport that answers with this module's output.
"""

from __future__ import annotations

import json
from typing import Any

import httpx2
import openai
import pytest
from openai.types import Completion
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from backends.errors import InvalidRequestError, PromptTooLongError
from backends.interface import Chunk, SamplingParams, Usage
from serving import openai_api as api
from serving.config import SloSpec

MODEL = "costroute-llama-tiny"
USAGE = Usage(prompt_tokens=5, completion_tokens=3)


def slo(**targets: float) -> SloSpec:
    return SloSpec.model_validate(targets)


def template(messages: list[dict[str, Any]]) -> str:
    return "".join(f"<{m['role']}>{m['content']}" for m in messages) + "<assistant>"


def completion(**fields: Any) -> api.ParsedRequest:
    return api.parse_completion({"model": MODEL, "prompt": "hi", **fields}, MODEL)


def chat(**fields: Any) -> api.ParsedRequest:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], **fields}
    return api.parse_chat(body, MODEL, template)


def error_of(fn: Any, *args: Any, **kwargs: Any) -> api.ApiError:
    with pytest.raises(api.ApiError) as info:
        fn(*args, **kwargs)
    return info.value


# --------------------------------------------------------------------------- ApiError


def test_error_body_has_openai_shape() -> None:
    err = api.ApiError(400, "bad", param="prompt")
    assert err.body() == {"error": {"message": "bad", "type": "invalid_request_error",
                                    "param": "prompt", "code": None}}
    assert err.status == 400 and err.headers == {}


def test_from_invalid_request_uses_field_and_context_code() -> None:
    err = api.ApiError.from_invalid_request(InvalidRequestError("bad token 99", "prompt"))
    assert (err.status, err.param, err.code) == (400, "prompt", None)
    err = api.ApiError.from_invalid_request(PromptTooLongError("too long", "max_tokens"))
    assert (err.param, err.code) == ("max_tokens", "context_length_exceeded")


def test_model_not_found_is_404() -> None:
    err = api.ApiError.model_not_found("gpt-4", [MODEL])
    assert (err.status, err.code, err.param) == (404, "model_not_found", "model")
    assert "gpt-4" in err.message and MODEL in err.message


def test_slo_unmeetable_is_429_with_retry_after() -> None:
    err = api.ApiError.slo_unmeetable(2.3, "fastest backend predicts ttft 900 ms > 200 ms")
    assert (err.status, err.type, err.code) == (429, "rate_limit_exceeded", "slo_unmeetable")
    assert err.headers == {"Retry-After": "3", "retry-after-ms": "2300"}
    assert "No backend can meet" in err.message and "900 ms" in err.message
    assert api.ApiError.slo_unmeetable(0.0, "x").headers["Retry-After"] == "1"


def test_service_unavailable_is_503() -> None:
    err = api.ApiError.service_unavailable("engine died", retry_after_s=5)
    assert (err.status, err.type, err.headers) == (503, "service_unavailable", {"Retry-After": "5"})


# --------------------------------------------------------------------------- parsing: body


@pytest.mark.parametrize("body", [b"{not json", b'{"prompt": NaN}', b"\xff\xfe", "", b'{"a":1'])
def test_malformed_json_is_400(body: bytes) -> None:
    err = error_of(api.parse_completion, body, MODEL)
    assert (err.status, err.type, err.param) == (400, "invalid_request_error", None)
    assert "not valid JSON" in err.message


@pytest.mark.parametrize("body", [b"[1, 2]", b'"hi"', b"3"])
def test_body_must_be_an_object(body: bytes) -> None:
    err = error_of(api.parse_completion, body, MODEL)
    assert (err.status, err.param) == (400, None) and "JSON object" in err.message


def test_wrong_model_is_404_and_missing_model_means_served() -> None:
    err = error_of(completion, model="gpt-3.5-turbo-instruct")
    assert (err.status, err.code) == (404, "model_not_found")
    assert api.parse_completion({"prompt": "hi"}, MODEL).prompt == "hi"


def test_sdk_style_body_parses() -> None:
    body = json.dumps({"model": MODEL, "prompt": "Hello", "max_tokens": 7, "stream": True,
                       "stream_options": {"include_usage": True}, "temperature": 0,
                       "seed": 3, "stop": ["\n"], "user": "u1", "frequency_penalty": 0,
                       "logprobs": None, "n": 1}).encode()
    p = api.parse_completion(body, MODEL)
    assert p.kind == "completion" and p.prompt == "Hello" and p.prompt_token_ids is None
    assert p.stream and p.include_usage and p.max_tokens == 7
    assert p.sampling == SamplingParams(max_tokens=7, temperature=0.0, seed=3, stop=("\n",))


def test_vllm_bench_style_body_parses() -> None:
    p = completion(prompt=[1, 2, 3], max_tokens=4, ignore_eos=True, top_k=-1,
                   repetition_penalty=1.0, stop_token_ids=[7], stream=True,
                   stream_options={"include_usage": True, "continuous_usage_stats": False})
    assert p.prompt is None and p.prompt_token_ids == (1, 2, 3)
    assert p.sampling is not None
    assert (p.sampling.ignore_eos, p.sampling.top_k, p.sampling.stop_token_ids) == (True, 0, (7,))


def test_defaults_follow_openai() -> None:
    p = completion()
    assert p.max_tokens == 16 and p.sampling is not None
    assert (p.sampling.temperature, p.sampling.top_p, p.sampling.top_k) == (1.0, 1.0, 0)
    assert not p.stream and not p.include_usage and p.slo_body == {} and p.slo_class is None


def test_unknown_fields_are_ignored() -> None:
    assert completion(metadata={"x": 1}, service_tier="auto").prompt == "hi"


def test_include_usage_only_when_streaming() -> None:
    assert not completion(stream_options={"include_usage": True}).include_usage


# --------------------------------------------------------------------------- parsing: prompt


@pytest.mark.parametrize(("prompt", "text", "ids"), [
    ("hi", "hi", None),
    (["hi"], "hi", None),
    ([5, 6], None, (5, 6)),
    ([[5, 6]], None, (5, 6)),
])
def test_one_prompt_forms(prompt: Any, text: str | None, ids: tuple[int, ...] | None) -> None:
    p = completion(prompt=prompt)
    assert (p.prompt, p.prompt_token_ids) == (text, ids)


@pytest.mark.parametrize("prompt", [["a", "b"], [[1], [2]], ["a", [1]]])
def test_prompt_batches_are_refused(prompt: Any) -> None:
    err = error_of(completion, prompt=prompt)
    assert (err.status, err.type, err.param) == (400, "invalid_request_error", "prompt")
    assert "only one prompt per request is supported" in err.message


@pytest.mark.parametrize("prompt", ["", [], [[]], [1, "a"], [True], 5, None, {"a": 1}, [["a"]]])
def test_bad_prompts_are_400(prompt: Any) -> None:
    err = error_of(completion, prompt=prompt)
    assert (err.status, err.param) == (400, "prompt")


def test_missing_prompt_is_400() -> None:
    err = error_of(api.parse_completion, {"model": MODEL}, MODEL)
    assert (err.status, err.param) == (400, "prompt") and "required" in err.message


# --------------------------------------------------------------------------- parsing: fields


@pytest.mark.parametrize(("fields", "param"), [
    ({"max_tokens": "5"}, "max_tokens"),
    ({"max_tokens": 5.0}, "max_tokens"),
    ({"temperature": "hot"}, "temperature"),
    ({"temperature": True}, "temperature"),
    ({"stream": "yes"}, "stream"),
    ({"stream_options": {"include_usage": "yes"}}, "stream_options.include_usage"),
    ({"stop": 3}, "stop"),
    ({"stop": ["a", 1]}, "stop"),
    ({"stop_token_ids": [1, "a"]}, "stop_token_ids.1"),
    ({"seed": 1.5}, "seed"),
    ({"model": 3}, "model"),
    ({"slo_class": 1}, "slo_class"),
])
def test_wrong_types_name_the_field(fields: dict[str, Any], param: str) -> None:
    err = error_of(completion, **fields)
    assert (err.status, err.type, err.param) == (400, "invalid_request_error", param)
    assert repr(next(iter(fields.values())))[:10] in err.message or param in err.message


def test_validation_message_quotes_the_value() -> None:
    err = error_of(completion, max_tokens="five")
    assert "'five'" in err.message and "max_tokens" in err.message


@pytest.mark.parametrize(("fields", "param"), [
    ({"max_tokens": 0}, "max_tokens"),
    ({"max_tokens": -3}, "max_tokens"),
    ({"temperature": -0.5}, "temperature"),
    ({"top_p": 0}, "top_p"),
    ({"top_p": 1.5}, "top_p"),
    ({"top_k": -2}, "top_k"),
    ({"stop": ""}, "stop"),
    ({"stop_token_ids": [-1]}, "stop_token_ids"),
])
def test_out_of_range_sampling_is_400(fields: dict[str, Any], param: str) -> None:
    err = error_of(completion, **fields)
    assert (err.status, err.param) == (400, param)


@pytest.mark.parametrize(("fields", "param"), [
    ({"n": 2}, "n"),
    ({"best_of": 3}, "best_of"),
    ({"logprobs": 1}, "logprobs"),
    ({"logprobs": 0}, "logprobs"),
    ({"echo": True}, "echo"),
    ({"suffix": "x"}, "suffix"),
    ({"logit_bias": {"5": 10}}, "logit_bias"),
    ({"presence_penalty": 0.5}, "presence_penalty"),
    ({"frequency_penalty": 0.5}, "frequency_penalty"),
    ({"repetition_penalty": 1.2}, "repetition_penalty"),
])
def test_unsupported_features_are_400(fields: dict[str, Any], param: str) -> None:
    err = error_of(completion, **fields)
    assert (err.status, err.param) == (400, param) and "not supported" in err.message


def test_neutral_values_of_unsupported_features_pass() -> None:
    completion(n=1, best_of=1, echo=False, logit_bias={}, presence_penalty=0.0,
               frequency_penalty=0, repetition_penalty=1)


def test_explicit_null_max_tokens_means_up_to_the_context() -> None:
    p = completion(max_tokens=None)
    assert p.max_tokens is None and p.sampling is None
    filled = p.with_max_tokens(100)
    assert filled.max_tokens == 100 and filled.sampling is not None
    assert filled.sampling.max_tokens == 100 and filled.sampling.temperature == 1.0
    assert error_of(p.with_max_tokens, 0).param == "max_tokens"


# --------------------------------------------------------------------------- parsing: chat


def test_chat_renders_template_and_defaults_max_tokens_to_none() -> None:
    p = api.parse_chat({"model": MODEL, "messages": [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
        {"role": "assistant", "content": None, "name": "bot"},
    ]}, MODEL, template)
    assert p.kind == "chat" and p.prompt == "<system>be brief<user>a\nb<assistant><assistant>"
    assert p.max_tokens is None and p.sampling is None


def test_chat_max_completion_tokens_wins() -> None:
    p = chat(max_tokens=5, max_completion_tokens=9)
    assert p.max_tokens == 9 and p.sampling is not None and p.sampling.max_tokens == 9
    assert chat(max_tokens=5).max_tokens == 5
    assert error_of(chat, max_completion_tokens=0).param == "max_completion_tokens"
    assert error_of(chat, max_tokens=0).param == "max_tokens"


@pytest.mark.parametrize(("messages", "param"), [
    ([], "messages"),
    ("hi", "messages"),
    ([{"role": "robot", "content": "x"}], "messages.0.role"),
    ([{"content": "x"}], "messages.0.role"),
    ([{"role": "user", "content": 3}], "messages.0.content"),
    ([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "u"}}]}],
     "messages.0.content"),
])
def test_bad_messages_name_the_field(messages: Any, param: str) -> None:
    err = error_of(api.parse_chat, {"model": MODEL, "messages": messages}, MODEL, template)
    assert (err.status, err.param) == (400, param)


def test_missing_messages_is_400() -> None:
    err = error_of(api.parse_chat, {"model": MODEL}, MODEL, template)
    assert (err.status, err.param) == (400, "messages")


@pytest.mark.parametrize(("fields", "param"), [
    ({"logprobs": True}, "logprobs"), ({"top_logprobs": 2}, "top_logprobs"),
    ({"tools": [{"type": "function"}]}, "tools"), ({"n": 3}, "n"),
])
def test_chat_unsupported_features(fields: dict[str, Any], param: str) -> None:
    assert error_of(chat, **fields).param == param
    assert chat(logprobs=False).kind == "chat"


def test_chat_template_failure_is_400() -> None:
    def failing(messages: list[dict[str, Any]]) -> str:
        raise ValueError("roles must alternate")

    err = error_of(api.parse_chat, {"messages": [{"role": "user", "content": "x"}]}, MODEL, failing)
    assert (err.status, err.param) == (400, "messages") and "alternate" in err.message


def test_chat_template_bug_propagates() -> None:
    def broken(messages: list[dict[str, Any]]) -> str:
        raise AttributeError("bug")

    with pytest.raises(AttributeError):
        api.parse_chat({"messages": [{"role": "user", "content": "x"}]}, MODEL, broken)


# --------------------------------------------------------------------------- SLO


@pytest.mark.parametrize(("slo", "param"), [
    ({"ttft_ms": -1}, "slo.ttft_ms"),
    ({"tpot_ms": 0}, "slo.tpot_ms"),
    ({"e2e_ms": "fast"}, "slo.e2e_ms"),
    ({"e2e_ms": True}, "slo.e2e_ms"),
    ({"ttft_ms": float("inf")}, "slo.ttft_ms"),
    ({"ttft": 100}, "slo.ttft"),
    ("fast", "slo"),
])
def test_bad_slo_body_is_400(slo: Any, param: str) -> None:
    err = error_of(completion, slo=slo)
    assert (err.status, err.type, err.param) == (400, "invalid_request_error", param)


def test_slo_body_keeps_only_given_targets() -> None:
    p = completion(slo={"ttft_ms": 200, "e2e_ms": None}, slo_class="batch")
    assert p.slo_body == {"ttft_ms": 200.0} and p.slo_class == "batch"


CLASSES = {
    "interactive": slo(ttft_ms=200, tpot_ms=50),
    "batch": slo(e2e_ms=60_000),
}


def resolve(p: api.ParsedRequest, headers: dict[str, str] | None = None,
            default: str | None = None) -> tuple[SloSpec, str | None]:
    return api.resolve_slo(p, headers or {}, CLASSES, default)


def test_no_slo_anywhere_is_empty() -> None:
    spec, name = resolve(completion())
    assert spec.is_empty() and name is None


def test_default_class_applies_last() -> None:
    assert resolve(completion(), default="batch") == (slo(e2e_ms=60_000), "batch")


def test_body_class_beats_header_class_beats_default() -> None:
    headers = {"X-SLO-Class": "batch"}
    assert resolve(completion(slo_class="interactive"), headers, "batch")[1] == "interactive"
    assert resolve(completion(), headers, "interactive")[1] == "batch"


def test_pinned_backend_header() -> None:
    assert api.pinned_backend({}, ["a", "b"]) is None
    assert api.pinned_backend({"X-Costroute-Pin-Backend": " b "}, ["a", "b"]) == "b"
    err = error_of(api.pinned_backend, {"x-costroute-pin-backend": "c"}, ["a", "b"])
    assert (err.status, err.param) == (400, "x-costroute-pin-backend")
    assert "'a'" in err.message


def test_header_field_adds_to_class() -> None:
    spec, name = resolve(completion(slo_class="interactive"), {"x-slo-e2e-ms": "3000"})
    assert spec == slo(ttft_ms=200, tpot_ms=50, e2e_ms=3000) and name == "interactive"


def test_body_field_beats_header_beats_class() -> None:
    p = completion(slo={"ttft_ms": 100}, slo_class="interactive")
    spec, _ = resolve(p, {"X-Slo-Ttft-Ms": "150", "x-slo-tpot-ms": "40"})
    assert spec == slo(ttft_ms=100, tpot_ms=40)


def test_fields_without_class() -> None:
    spec, name = resolve(completion(), {"x-slo-ttft-ms": " 250.5 "})
    assert spec == slo(ttft_ms=250.5) and name is None


def test_explicit_targets_are_the_whole_slo_without_a_class() -> None:
    # the default class is for requests that carry no SLO; targets alone must not inherit it
    spec, name = resolve(completion(), {"x-slo-ttft-ms": "300"}, default="interactive")
    assert spec == slo(ttft_ms=300) and name is None
    spec, name = resolve(completion(slo={"e2e_ms": 5000}), default="interactive")
    assert spec == slo(e2e_ms=5000) and name is None


def test_unknown_class_names_the_known_ones() -> None:
    err = error_of(resolve, completion(slo_class="gold"))
    assert (err.status, err.param) == (400, "slo_class")
    assert "'batch'" in err.message and "'interactive'" in err.message
    err = error_of(resolve, completion(), {"x-slo-class": "gold"})
    assert (err.status, err.param) == (400, "x-slo-class")


@pytest.mark.parametrize("value", ["abc", "-5", "0", "nan", "inf", ""])
def test_bad_header_value_names_the_header(value: str) -> None:
    err = error_of(resolve, completion(), {"X-SLO-TPOT-MS": value})
    assert (err.status, err.type, err.param) == (400, "invalid_request_error", "x-slo-tpot-ms")


# --------------------------------------------------------------------------- responses


def test_completion_response_validates_against_sdk() -> None:
    body = api.completion_response("abc", 1700000000, MODEL, "hello", "length", USAGE)
    assert body["id"] == "cmpl-abc"
    c = Completion.model_validate(body)
    assert c.choices[0].text == "hello" and c.choices[0].finish_reason == "length"
    assert c.usage is not None and c.usage.total_tokens == 8


def test_chat_response_validates_against_sdk() -> None:
    body = api.chat_response("chatcmpl-x", 1, MODEL, "hey", "stop", USAGE)
    assert body["id"] == "chatcmpl-x"
    c = ChatCompletion.model_validate(body)
    assert c.object == "chat.completion" and c.choices[0].message.content == "hey"
    assert c.choices[0].message.role == "assistant" and c.choices[0].logprobs is None


def test_chat_chunks_validate_against_sdk() -> None:
    first = api.chat_chunk("x", 1, MODEL, first=True)
    middle = api.chat_chunk("x", 1, MODEL, "tok", include_usage=True)
    last = api.chat_chunk("x", 1, MODEL, finish_reason="stop")
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert middle["choices"][0]["delta"] == {"content": "tok"} and middle["usage"] is None
    assert last["choices"][0]["delta"] == {} and "usage" not in last
    for chunk in (first, middle, last, api.usage_chunk("chat", "x", 1, MODEL, USAGE)):
        ChatCompletionChunk.model_validate(chunk)


def test_completion_chunks_and_usage_chunk() -> None:
    chunk = api.completion_chunk("x", 1, MODEL, "tok", "stop")
    assert Completion.model_validate(chunk).choices[0].text == "tok"
    usage = api.usage_chunk("completion", "x", 1, MODEL, USAGE)
    assert usage["choices"] == [] and usage["object"] == "text_completion"
    assert Completion.model_validate(usage).usage is not None


def test_sse_framing() -> None:
    assert api.sse({"a": "é\n", "b": None}) == 'data: {"a":"é\\n","b":null}\n\n'
    assert api.SSE_DONE == "data: [DONE]\n\n"


def events(enc: api.StreamEncoder, chunks: list[Chunk]) -> list[Any]:
    out = [e for c in chunks for e in enc.feed(c)]
    assert out[-1] == api.SSE_DONE
    return [json.loads(e.removeprefix("data: ")) for e in out[:-1]]


ENGINE_CHUNKS = [Chunk("r", "Hel"), Chunk("r", "", (9,)), Chunk("r", "lo"),
                 Chunk("r", "!", finish_reason="stop", usage=USAGE)]


def test_stream_encoder_chat_order() -> None:
    p = chat(stream=True, stream_options={"include_usage": True})
    got = events(api.StreamEncoder(p, "r", 1, MODEL), ENGINE_CHUNKS)
    deltas = [(g["choices"][0]["delta"], g["choices"][0]["finish_reason"]) for g in got[:-1]]
    assert deltas == [({"role": "assistant", "content": ""}, None), ({"content": "Hel"}, None),
                      ({"content": "lo"}, None), ({"content": "!"}, "stop")]
    assert got[-1]["choices"] == [] and got[-1]["usage"]["total_tokens"] == 8


def test_stream_encoder_completion_without_usage() -> None:
    got = events(api.StreamEncoder(completion(stream=True), "r", 1, MODEL), ENGINE_CHUNKS)
    assert [g["choices"][0]["text"] for g in got] == ["Hel", "lo", "!"]
    assert all("usage" not in g for g in got)


def test_stream_encoder_error() -> None:
    enc = api.StreamEncoder(completion(stream=True), "r", 1, MODEL)
    err = api.ApiError.service_unavailable("engine died")
    assert enc.error(err) == [api.sse(err.body()), api.SSE_DONE]


# --------------------------------------------------------------------------- the real SDK


def fake_server(request: httpx2.Request) -> httpx2.Response:
    """Answers like the ingress will, with this module only (engine output is canned)."""
    try:
        if request.url.path.endswith("/chat/completions"):
            parsed = api.parse_chat(request.content, MODEL, template)
        else:
            parsed = api.parse_completion(request.content, MODEL)
    except api.ApiError as err:
        return httpx2.Response(err.status, json=err.body(), headers=err.headers)
    if parsed.stream:
        enc = api.StreamEncoder(parsed, "r1", 1, MODEL)
        text = "".join(e for c in ENGINE_CHUNKS for e in enc.feed(c))
        return httpx2.Response(200, text=text, headers={"content-type": "text/event-stream"})
    build = api.chat_response if parsed.kind == "chat" else api.completion_response
    return httpx2.Response(200, json=build("r1", 1, MODEL, "Hello!", "abort", USAGE))


@pytest.fixture
def client() -> openai.OpenAI:
    transport = httpx2.MockTransport(fake_server)
    return openai.OpenAI(api_key="x", base_url="http://test/v1", max_retries=0,
                         http_client=httpx2.Client(transport=transport))


def test_sdk_completion_stream(client: openai.OpenAI) -> None:
    stream = client.completions.create(model=MODEL, prompt="hi", max_tokens=4, stream=True,
                                       stream_options={"include_usage": True})
    chunks = list(stream)
    assert "".join(c.choices[0].text for c in chunks if c.choices) == "Hello!"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 3


def test_sdk_chat_stream(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "hi"}], stream=True,
        max_completion_tokens=4, stream_options={"include_usage": True})
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello!"
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 8


def test_sdk_reads_non_streamed_answers_with_abort(client: openai.OpenAI) -> None:
    c = client.completions.create(model=MODEL, prompt=[1, 2], max_tokens=4)
    assert c.choices[0].text == "Hello!" and c.choices[0].finish_reason == "abort"
    cc = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}])
    assert cc.choices[0].message.content == "Hello!"


def test_sdk_raises_our_errors(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as bad:
        client.completions.create(model=MODEL, prompt=["a", "b"], max_tokens=4)
    assert bad.value.param == "prompt" and bad.value.type == "invalid_request_error"
    assert "only one prompt" in bad.value.message
    with pytest.raises(openai.NotFoundError) as missing:
        client.completions.create(model="gpt-4", prompt="a")
    assert missing.value.code == "model_not_found"


def test_the_openapi_contract_describes_both_request_bodies() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    from serving.app import fastapi_app

    paths = fastapi_app.openapi()["paths"]
    bodies = {"/v1/completions": {"model": "m", "prompt": "hi", "max_tokens": 4,
                                  "slo": {"ttft_ms": 500}},
              "/v1/chat/completions": {"model": "m", "max_tokens": 4, "stream": True,
                                       "messages": [{"role": "user", "content": "hi"}]}}
    for path, good in bodies.items():
        body = paths[path]["post"]["requestBody"]
        schema = body["content"]["application/json"]["schema"]
        assert body["required"] and "$ref" not in json.dumps(schema)  # self-contained
        jsonschema.validate(good, schema)  # what the server accepts, the contract accepts
        with pytest.raises(jsonschema.ValidationError):  # and what it refuses, it refuses
            jsonschema.validate({**good, "max_tokens": "four"}, schema)
    assert "prompt" in paths["/v1/completions"]["post"]["requestBody"]["content"][
        "application/json"]["schema"]["required"]
