"""Error classification: status first, billing codes always, codes inside a 200."""

from __future__ import annotations

import pytest

from halton_meter.providers import classify_error


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (200, None, None),
        (201, None, None),
        (429, "rate_limit_exceeded", "rate_limit"),
        (429, "rate_limit_error", "rate_limit"),
        (429, "RESOURCE_EXHAUSTED", "rate_limit"),
        (429, None, "rate_limit"),
        (429, "insufficient_quota", "auth"),
        (429, "enforced_spend_limit_reached", "auth"),
        (429, "monthly_spend_limit_exceeded", "auth"),
        (402, None, "auth"),
        (402, "billing_error", "auth"),
        (400, "billing_error", "auth"),
        (401, "authentication_error", "auth"),
        (403, "PERMISSION_DENIED", "auth"),
        (400, "invalid_request_error", "bad_request"),
        (404, "not_found_error", "bad_request"),
        (413, "request_too_large", "bad_request"),
        (422, None, "bad_request"),
        (408, None, "timeout"),
        (504, "DEADLINE_EXCEEDED", "timeout"),
        (500, "DEADLINE_EXCEEDED", "timeout"),
        (500, "api_error", "server_error"),
        (502, None, "server_error"),
        (503, "UNAVAILABLE", "server_error"),
        (529, "overloaded_error", "overloaded"),  # its own class: users filter on it
        (529, None, "overloaded"),
        (500, "overloaded_error", "overloaded"),
        (409, None, "unknown"),
        (418, "teapot", "unknown"),
        # Errors that arrive inside a 200 stream: by their code, else server_error.
        (200, "overloaded_error", "overloaded"),
        (200, "rate_limit_exceeded", "rate_limit"),
        (200, "invalid_request_error", "bad_request"),
        (200, "insufficient_quota", "auth"),
        (200, "DEADLINE_EXCEEDED", "timeout"),
        (200, "something_new", "server_error"),
        (200, "429", "rate_limit"),  # OpenRouter: an HTTP status as the code
        (200, "502", "server_error"),
        (None, None, "unknown"),
        (None, "rate_limit_error", "rate_limit"),
    ],
)
def test_classify_error(status: int | None, code: str | None, expected: str | None) -> None:
    assert classify_error(status, code) == expected
