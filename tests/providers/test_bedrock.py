"""Amazon Bedrock: routes from the path, InvokeModel and Converse bodies, both event streams at
every split point, broken and truncated frames, exceptions mid-stream.

Expected numbers come from the fake's catalog, read by each format's documented convention.
"""

from __future__ import annotations

import json

import pytest

from halton_meter.providers import Route, Usage, parse_request, parse_response, route_for
from halton_meter.providers.bedrock import model_family
from tests.fakeupstream import bedrock_wire, catalog
from tests.fakeupstream.reply import Call
from tests.providers.helpers import feed

EVENT_STREAM = "application/vnd.amazon.eventstream"
HOST = "bedrock-runtime.us-east-1.amazonaws.com"
SONNET_GLOBAL = "global.anthropic.claude-sonnet-4-5-20250929-v1:0"


def route(operation: str, model: str = SONNET_GLOBAL) -> Route:
    found = route_for(HOST, 443, f"/model/{model.replace(':', '%3A')}/{operation}")
    assert found is not None
    return found


def reply(operation: str, model: str = SONNET_GLOBAL, *scenarios: str) -> bedrock_wire.Reply:
    call = Call(
        method="POST",
        host=HOST,
        path=f"/model/{model}/{operation}",
        query={},
        headers={},
        body=b"{}",
        json={},
        provider="bedrock",
        scenarios=frozenset(scenarios or ("ok",)),
    )
    return bedrock_wire.handle(call)


# Claude on Bedrock: Anthropic's usage rules (input excludes the cache counts).
RAW = catalog.BEDROCK_ANTHROPIC_USAGE
CLAUDE_USAGE = Usage(
    input_tokens=RAW["input_tokens"],
    cache_read_tokens=RAW["cache_read_input_tokens"],
    cache_write_tokens=RAW["cache_creation_input_tokens"],
    cache_write_1h_tokens=RAW["cache_creation"]["ephemeral_1h_input_tokens"],
    output_tokens=RAW["output_tokens"],
)
CONVERSE = catalog.BEDROCK_CONVERSE_USAGE
CONVERSE_USAGE = Usage(
    input_tokens=CONVERSE["inputTokens"],
    cache_read_tokens=CONVERSE["cacheReadInputTokens"],
    cache_write_tokens=CONVERSE["cacheWriteInputTokens"],
    cache_write_1h_tokens=128,  # cacheDetails' 1h entry
    output_tokens=CONVERSE["outputTokens"],
)


@pytest.mark.parametrize(
    ("path", "api", "model", "family"),
    [
        # boto3 percent-encodes ':' and '/'; the anthropic SDK leaves ':' literal.
        (
            "/model/us.anthropic.claude-sonnet-4-5-20250929-v1%3A0/invoke",
            "invoke",
            "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
            "anthropic",
        ),
        (
            "/model/global.anthropic.claude-sonnet-4-5-20250929-v1:0/invoke-with-response-stream",
            "invoke_stream",
            "global.anthropic.claude-sonnet-4-5-20250929-v1:0",
            "anthropic",
        ),
        (
            "/model/arn%3Aaws%3Abedrock%3Aus-west-2%3A123456789012%3Ainference-profile%2F"
            "eu.anthropic.claude-opus-4-6-v1/converse",
            "converse",
            "arn:aws:bedrock:us-west-2:123456789012:inference-profile/eu.anthropic.claude-opus-4-6-v1",
            "anthropic",
        ),
        (
            "/model/amazon.nova-pro-v1%3A0/converse-stream",
            "converse_stream",
            "amazon.nova-pro-v1:0",
            "amazon",
        ),
        (
            "/model/meta.llama3-3-70b-instruct-v1%3A0/count-tokens",
            "count_tokens",
            "meta.llama3-3-70b-instruct-v1:0",
            "meta",
        ),
        (
            "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Aapplication-inference-profile%2Fabcd1234/invoke",
            "invoke",
            "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abcd1234",
            None,  # names no model
        ),
    ],
)
def test_routes_read_the_model_id_from_the_path(
    path: str, api: str, model: str, family: str | None
) -> None:
    found = route_for(HOST, 443, path)
    assert found is not None
    assert (found.provider, found.wire, found.api) == ("bedrock", "bedrock", api)
    assert (found.model_from_path, found.model_family, found.region) == (model, family, "us-east-1")
    assert found.zero_cost == (api == "count_tokens")


@pytest.mark.parametrize(
    "host",
    [
        "bedrock-runtime-fips.us-east-1.amazonaws.com",
        "bedrock-runtime.eu-central-1.amazonaws.com",
        "bedrock-runtime.cn-north-1.amazonaws.com.cn",
        "bedrock-runtime.us-gov-west-1.amazonaws.com",
    ],
)
def test_every_runtime_host_is_bedrock(host: str) -> None:
    found = route_for(host, 443, "/model/anthropic.claude-3-haiku-20240307-v1:0/invoke")
    assert found is not None and found.provider == "bedrock"
    assert found.region == host.split(".")[1]


@pytest.mark.parametrize(
    ("host", "path"),
    [
        ("s3.amazonaws.com", "/model/x/invoke"),  # never an LLM host
        ("bedrock.us-east-1.amazonaws.com", "/model/x/invoke"),  # the control plane
        ("bedrock-runtime.us-east-1.amazonaws.com.evil.net", "/model/x/invoke"),
        (HOST, "/model/x/invoke/extra"),
        (HOST, "/async-invoke"),
        (HOST, "/guardrail/g1/version/1/apply"),
    ],
)
def test_not_bedrock_calls(host: str, path: str) -> None:
    assert route_for(host, 443, path) is None


def test_model_family() -> None:
    assert model_family("us-gov.anthropic.claude-3-haiku-20240307-v1:0") == "anthropic"
    assert model_family("apac.amazon.nova-lite-v1:0") == "amazon"
    assert model_family("deepseek.r1-v1:0") == "deepseek"
    assert model_family("arn:aws:bedrock:us-east-1::foundation-model/mistral.large") == "mistral"
    assert model_family("arn:aws:bedrock:us-east-1:1:provisioned-model/abc") is None


def test_the_request_body_is_never_needed() -> None:
    info = parse_request(route("invoke-with-response-stream"), b"not json at all")
    assert (info.model, info.stream) == (SONNET_GLOBAL, True)


def test_invoke_claude_body() -> None:
    body = reply("invoke").body
    result = parse_response(route("invoke"), body, 200)
    assert result.usage == CLAUDE_USAGE
    assert result.tokens_complete and not result.stream_error
    # The path's id is what is billed (a global profile), not the body's bare Anthropic name.
    assert result.model == SONNET_GLOBAL
    assert result.response_id == catalog.BEDROCK_MESSAGE_ID


def test_invoke_llama_body() -> None:
    model = "meta.llama3-3-70b-instruct-v1:0"
    result = parse_response(route("invoke", model), reply("invoke", model).body, 200)
    assert result.usage == Usage(input_tokens=311, output_tokens=97)
    assert result.tokens_complete and result.model == model


def test_converse_body() -> None:
    result = parse_response(route("converse"), reply("converse").body, 200)
    assert result.usage == CONVERSE_USAGE
    assert result.tokens_complete and result.model == SONNET_GLOBAL


def test_count_tokens_body() -> None:
    result = parse_response(route("count-tokens"), reply("count-tokens").body, 200)
    assert result.usage == Usage(input_tokens=catalog.BEDROCK_COUNT_TOKENS["inputTokens"])
    assert result.tokens_complete


def test_an_error_body() -> None:
    result = parse_response(route("invoke"), b'{"message":"Too many requests"}', 429)
    assert not result.tokens_complete and result.usage == Usage()
    typed = parse_response(route("invoke"), b'{"__type":"ThrottlingException","message":"x"}', 429)
    assert typed.provider_error_code == "ThrottlingException"


def splits(chunks: list[bytes]) -> list[list[bytes]]:
    """The stream whole, as sent (one HTTP chunk per frame), byte by byte, and cut at every
    point in two."""
    data = b"".join(chunks)
    out = [[data], chunks, [data[i : i + 1] for i in range(len(data))]]
    out += [[data[:cut], data[cut:]] for cut in range(1, len(data))]
    return out


def test_invoke_stream_at_every_split_point() -> None:
    chunks = reply("invoke-with-response-stream").chunks or []
    for pieces in splits(chunks):
        result = feed(route("invoke-with-response-stream"), pieces, EVENT_STREAM)
        assert result.usage == CLAUDE_USAGE
        assert result.tokens_complete and not result.stream_error
        assert result.model == SONNET_GLOBAL
        assert result.response_id == catalog.BEDROCK_MESSAGE_ID
        assert json.loads(result.raw_usage or "{}")["output_tokens"] == RAW["output_tokens"]


def test_converse_stream_at_every_split_point() -> None:
    chunks = reply("converse-stream").chunks or []
    for pieces in splits(chunks):
        result = feed(route("converse-stream"), pieces, EVENT_STREAM)
        assert result.usage == CONVERSE_USAGE
        assert result.tokens_complete and not result.stream_error


def test_a_corrupt_crc_leaves_the_row_incomplete() -> None:
    sent = reply("invoke-with-response-stream")
    chunks = sent.chunks or []
    broken = [*chunks[:3], sent.garbage, *chunks[3:]]
    result = feed(route("invoke-with-response-stream"), broken, EVENT_STREAM)
    assert not result.tokens_complete
    assert result.usage.output_tokens is None  # message_delta came after the broken frame
    converse = reply("converse-stream")
    cchunks = converse.chunks or []
    result = feed(
        route("converse-stream"), [*cchunks[:2], converse.garbage, *cchunks[2:]], EVENT_STREAM
    )
    assert not result.tokens_complete and result.usage == Usage()


def test_a_truncated_frame_leaves_the_row_incomplete() -> None:
    chunks = reply("invoke-with-response-stream", SONNET_GLOBAL, "cut-frame").chunks or []
    result = feed(route("invoke-with-response-stream"), chunks, EVENT_STREAM)
    assert not result.tokens_complete
    # Cut anywhere inside the last frame: the frames before it still count, incomplete.
    whole = reply("invoke-with-response-stream").chunks or []
    data = b"".join(whole)
    last = len(whole[-1])
    for cut in range(len(data) - last + 1, len(data)):
        result = feed(route("invoke-with-response-stream"), [data[:cut]], EVENT_STREAM)
        assert not result.tokens_complete, cut
        assert result.usage.output_tokens == RAW["output_tokens"]  # message_delta arrived


def test_an_exception_event_mid_stream() -> None:
    sent = reply("invoke-with-response-stream")
    chunks = sent.chunks or []
    result = feed(
        route("invoke-with-response-stream"), [*chunks[:3], sent.error_event], EVENT_STREAM
    )
    assert result.stream_error and not result.tokens_complete
    assert result.provider_error_code == "ThrottlingException"


def test_another_family_streams_with_bedrock_metrics_only() -> None:
    frames = [
        bedrock_wire.chunk({"outputText": "Hello", "index": 0}, 0),
        bedrock_wire.chunk(
            {
                "outputText": "",
                "completionReason": "FINISH",
                "amazon-bedrock-invocationMetrics": {"inputTokenCount": 17, "outputTokenCount": 5},
            },
            1,
        ),
    ]
    model = "amazon.titan-text-express-v1"
    result = feed(route("invoke-with-response-stream", model), frames, EVENT_STREAM)
    assert result.usage == Usage(input_tokens=17, output_tokens=5)
    assert result.tokens_complete and result.model == model
