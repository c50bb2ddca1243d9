"""Real SDK clients, run as `halton-meter run -- python -m tests.clients.sdk_client KIND`.

Each prints one JSON object describing what the SDK received, so a test can check both the
ledger row and that the client got an intact answer. The SDKs find the proxy and the CA bundle
through the environment, exactly as in a user's shell.
"""

from __future__ import annotations

import json
import sys
from typing import Any

SCENARIO = {"x-fake-scenario": "ok"}


def anthropic_stream() -> dict[str, Any]:
    import anthropic

    client = anthropic.Anthropic(api_key="sk-ant-test-secret-0001", max_retries=0)
    with client.messages.stream(
        model="claude-sonnet-4-5",
        max_tokens=1024,
        messages=[{"role": "user", "content": "Say hello"}],
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    return {"text": text, "usage": final.usage.model_dump(), "model": final.model}


def anthropic_message() -> dict[str, Any]:
    import anthropic

    client = anthropic.Anthropic(api_key="sk-ant-test-secret-0001", max_retries=0)
    message = client.messages.create(
        model="claude-sonnet-4-5",
        max_tokens=1024,
        thinking={"type": "enabled", "budget_tokens": 1024},
        messages=[{"role": "user", "content": "Say hello"}],
    )
    return {"usage": message.usage.model_dump(), "model": message.model}


def anthropic_count_tokens() -> dict[str, Any]:
    import anthropic

    client = anthropic.Anthropic(api_key="sk-ant-test-secret-0001", max_retries=0)
    counted = client.messages.count_tokens(
        model="claude-sonnet-4-5", messages=[{"role": "user", "content": "Say hello"}]
    )
    return {"input_tokens": counted.input_tokens}


def openai_chat_stream() -> dict[str, Any]:
    import openai

    client = openai.OpenAI(api_key="sk-proj-test-secret-0002", max_retries=0)
    stream = client.chat.completions.create(
        model="gpt-4.1",
        stream=True,
        messages=[{"role": "user", "content": "Say hello"}],
    )
    chunks = list(stream)
    return {
        "text": "".join(c.choices[0].delta.content or "" for c in chunks if c.choices),
        "chunks": len(chunks),
        "usage_seen": [c.usage is not None for c in chunks],
    }


def openai_responses_stream() -> dict[str, Any]:
    import openai

    client = openai.OpenAI(api_key="sk-proj-test-secret-0002", max_retries=0)
    events = list(
        client.responses.create(
            model="gpt-4.1",
            input="Say hello",
            stream=True,
            tools=[{"type": "web_search_preview"}],
        )
    )
    completed = [e for e in events if e.type == "response.completed"]
    return {"types": [e.type for e in events], "usage": completed[0].response.usage.model_dump()}


def openai_embeddings() -> dict[str, Any]:
    import openai

    client = openai.OpenAI(api_key="sk-proj-test-secret-0002", max_retries=0)
    result = client.embeddings.create(model="text-embedding-3-small", input="hello")
    return {"dimensions": len(result.data[0].embedding), "usage": result.usage.model_dump()}


def gemini_stream() -> dict[str, Any]:
    from google import genai

    client = genai.Client(api_key="AIza-test-secret-0003")
    pieces = list(
        client.models.generate_content_stream(model="gemini-2.5-flash", contents="Say hello")
    )
    last = pieces[-1].usage_metadata
    return {
        "text": "".join(p.text or "" for p in pieces),
        "prompt_token_count": last.prompt_token_count if last else None,
    }


def gemini_generate() -> dict[str, Any]:
    from google import genai

    client = genai.Client(api_key="AIza-test-secret-0003")
    response = client.models.generate_content(model="gemini-2.5-flash", contents="Say hello")
    usage = response.usage_metadata
    return {
        "text": response.text,
        "prompt_token_count": usage.prompt_token_count if usage else None,
    }


KINDS = {
    name: function
    for name, function in globals().items()
    if callable(function) and name.split("_")[0] in ("anthropic", "openai", "gemini")
}

if __name__ == "__main__":
    print(json.dumps(KINDS[sys.argv[1]]()))
