"""The clouds' real SDK clients, run as `halton-meter run -- python -m tests.clients.cloud_client
KIND`: boto3's bedrock-runtime, the anthropic SDK's AnthropicBedrock and AnthropicVertex,
google-genai on Vertex and openai's AzureOpenAI.

Each prints one JSON object describing what the client received. Credentials are fake and no
client reaches the network: AWS keys from the environment (the fake does not check SigV4),
Google credentials built from a token (never refreshed), Azure API keys.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

REGION = "us-east-1"
BEDROCK_MODEL = "global.anthropic.claude-sonnet-4-5-20250929-v1:0"
BEDROCK_REGIONAL_MODEL = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
MESSAGES = [{"role": "user", "content": "Say hello"}]


def _fake_aws() -> None:
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "AKIDEXAMPLEFAKE00001")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "fake-secret-key-never-sent-anywhere-0001")
    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")


def _bedrock() -> Any:
    import boto3

    _fake_aws()
    return boto3.client("bedrock-runtime", region_name=REGION)


def boto3_invoke() -> dict[str, Any]:
    body = {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 256, "messages": MESSAGES}
    answer = _bedrock().invoke_model(modelId=BEDROCK_MODEL, body=json.dumps(body))
    message = json.loads(answer["body"].read())
    return {"usage": message["usage"], "text": message["content"][0]["text"]}


def boto3_invoke_stream() -> dict[str, Any]:
    body = {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 256, "messages": MESSAGES}
    answer = _bedrock().invoke_model_with_response_stream(
        modelId=BEDROCK_REGIONAL_MODEL, body=json.dumps(body)
    )
    events = [json.loads(part["chunk"]["bytes"]) for part in answer["body"]]
    text = "".join(e["delta"].get("text", "") for e in events if e["type"] == "content_block_delta")
    return {"types": [e["type"] for e in events], "text": text}


def boto3_converse() -> dict[str, Any]:
    answer = _bedrock().converse(
        modelId=BEDROCK_MODEL, messages=[{"role": "user", "content": [{"text": "Say hello"}]}]
    )
    return {"usage": answer["usage"], "text": answer["output"]["message"]["content"][0]["text"]}


def boto3_converse_stream() -> dict[str, Any]:
    answer = _bedrock().converse_stream(
        modelId=BEDROCK_MODEL, messages=[{"role": "user", "content": [{"text": "Say hello"}]}]
    )
    events = list(answer["stream"])
    text = "".join(
        e["contentBlockDelta"]["delta"]["text"] for e in events if "contentBlockDelta" in e
    )
    usage = next(e["metadata"]["usage"] for e in events if "metadata" in e)
    return {"text": text, "usage": usage}


def _anthropic_bedrock() -> Any:
    from anthropic import AnthropicBedrock

    _fake_aws()
    return AnthropicBedrock(aws_region=REGION, max_retries=0)


def anthropic_bedrock() -> dict[str, Any]:
    message = _anthropic_bedrock().messages.create(
        model=BEDROCK_MODEL, max_tokens=256, messages=MESSAGES
    )
    return {"usage": message.usage.model_dump(), "model": message.model}


def anthropic_bedrock_stream() -> dict[str, Any]:
    with _anthropic_bedrock().messages.stream(
        model=BEDROCK_MODEL, max_tokens=256, messages=MESSAGES
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    return {"text": text, "usage": final.usage.model_dump()}


VERTEX_PROJECT = "proj-halton-test"
VERTEX_CLAUDE = "claude-sonnet-4-5@20250929"


def _anthropic_vertex() -> Any:
    from anthropic import AnthropicVertex

    # A fixed access token: the SDK never refreshes it, so no Google endpoint is called.
    return AnthropicVertex(
        region="global", project_id=VERTEX_PROJECT, access_token="ya29.fake-token", max_retries=0
    )


def anthropic_vertex() -> dict[str, Any]:
    message = _anthropic_vertex().messages.create(
        model=VERTEX_CLAUDE, max_tokens=256, messages=MESSAGES
    )
    return {"usage": message.usage.model_dump(), "model": message.model}


def anthropic_vertex_stream() -> dict[str, Any]:
    with _anthropic_vertex().messages.stream(
        model=VERTEX_CLAUDE, max_tokens=256, messages=MESSAGES
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    return {"text": text, "usage": final.usage.model_dump()}


def _genai_vertex() -> Any:
    from google import genai
    from google.oauth2.credentials import Credentials

    # A token without expiry is never refreshed; project and location given, so google-auth
    # never looks for default credentials.
    return genai.Client(
        vertexai=True,
        project=VERTEX_PROJECT,
        location="us-central1",
        credentials=Credentials(token="ya29.fake-token"),
    )


def genai_vertex_stream() -> dict[str, Any]:
    client = _genai_vertex()  # kept: a collected client closes its connection pool
    pieces = list(
        client.models.generate_content_stream(model="gemini-2.5-flash", contents="Say hello")
    )
    last = pieces[-1].usage_metadata
    return {
        "text": "".join(p.text or "" for p in pieces),
        "prompt_token_count": last.prompt_token_count if last else None,
    }


def genai_vertex_generate() -> dict[str, Any]:
    client = _genai_vertex()
    response = client.models.generate_content(model="gemini-2.5-flash", contents="Say hello")
    usage = response.usage_metadata
    return {
        "text": response.text,
        "prompt_token_count": usage.prompt_token_count if usage else None,
    }


AZURE_ENDPOINT = "https://halton-test.openai.azure.com"


def _azure(version: str = "2024-10-21") -> Any:
    from openai import AzureOpenAI

    return AzureOpenAI(
        azure_endpoint=AZURE_ENDPOINT,
        api_key="azure-test-secret-0005",
        api_version=version,
        max_retries=0,
    )


def _azure_chat(version: str, include_usage: bool) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    if include_usage:
        extra["stream_options"] = {"include_usage": True}
    stream = _azure(version).chat.completions.create(
        model="my-gpt41-deployment",
        stream=True,
        messages=[{"role": "user", "content": "Say hello"}],
        **extra,
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    usage = [c.usage.model_dump() for c in chunks if c.usage is not None]
    return {"text": text, "usage": usage, "chunks": len(chunks)}


def azure_chat_stream() -> dict[str, Any]:
    return _azure_chat("2024-10-21", include_usage=False)


def azure_chat_stream_include_usage() -> dict[str, Any]:
    return _azure_chat("2024-10-21", include_usage=True)


def azure_chat_stream_old_version() -> dict[str, Any]:
    return _azure_chat("2024-06-01", include_usage=False)


def azure_responses() -> dict[str, Any]:
    response = _azure("2025-03-01-preview").responses.create(
        model="my-gpt41-deployment", input="Say hello"
    )
    return {"usage": response.usage.model_dump() if response.usage else None}


def azure_embeddings() -> dict[str, Any]:
    result = _azure().embeddings.create(model="my-embedding-deployment", input="Say hello")
    return {"dimensions": len(result.data[0].embedding), "tokens": result.usage.prompt_tokens}


KINDS = {
    name: function
    for name, function in globals().items()
    if callable(function) and not name.startswith("_") and name not in ("json", "os", "sys")
}

if __name__ == "__main__":
    print(json.dumps(KINDS[sys.argv[1]](), default=str))
