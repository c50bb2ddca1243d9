"""Calls the Anthropic SDK in a loop until the meter refuses one (budgets race test); prints
how many went through."""

from __future__ import annotations

import json

import anthropic

if __name__ == "__main__":
    client = anthropic.Anthropic(api_key="sk-ant-test-secret-0001", max_retries=0)
    passed = 0
    while passed < 100:
        try:
            client.messages.create(
                model="claude-sonnet-4-5",
                max_tokens=64,
                messages=[{"role": "user", "content": "Say hello"}],
            )
        except anthropic.RateLimitError:
            break
        passed += 1
    print(json.dumps({"passed": passed}))
