"""Error classification: one small vocabulary for every provider's failures.

The ledger stores a class (``rate_limit``, ``server_error``, ``bad_request``, ``auth``,
``timeout``, ``unknown``; the capture layer adds ``network`` for failed connections), so
reports can tell "retry later" apart from "fix your billing".
"""

from __future__ import annotations

from ._common import as_dict

# Out of credit or over a spend cap: retrying never helps, the user must act on billing, so
# these are filed under `auth` whatever the HTTP status (an OpenAI quota error is a 429).
_BILLING = frozenset(
    {
        "insufficient_quota",
        "billing_error",
        "enforced_spend_limit_reached",
        "credit_balance_exhausted",
        "insufficient_balance",
        "payment_required",
    }
)
_BY_CODE = {
    "rate_limit": (
        "rate_limit_exceeded",
        "rate_limit_error",
        "resource_exhausted",
        "rate_limited",
        "too_many_requests",
        # Amazon Bedrock's exception names (a stream's `:exception-type`, capitalised)
        "throttlingexception",
        "modelnotreadyexception",
        "servicequotaexceededexception",
    ),
    "timeout": (
        "deadline_exceeded",
        "timeout",
        "request_timeout",
        "timeout_error",
        "modeltimeoutexception",
    ),
    "auth": (
        "authentication_error",
        "permission_error",
        "invalid_api_key",
        "unauthenticated",
        "permission_denied",
        "unauthorized",
        "accessdeniedexception",
        "unrecognizedclientexception",
        "expiredtokenexception",
    ),
    "server_error": (
        "overloaded_error",
        "overloaded",
        "api_error",
        "internal",
        "internal_error",
        "internal_server_error",
        "unavailable",
        "service_unavailable",
        "server_error",
        "internalserverexception",
        "serviceunavailableexception",
        "modelstreamerrorexception",
        "modelerrorexception",
    ),
    "bad_request": (
        "invalid_request_error",
        "invalid_argument",
        "failed_precondition",
        "not_found",
        "not_found_error",
        "request_too_large",
        "context_length_exceeded",
        "out_of_range",
        "validationexception",
        "resourcenotfoundexception",
    ),
}
_CODE_CLASS = {code: kind for kind, codes in _BY_CODE.items() for code in codes}
_STATUS_CLASS = {
    401: "auth",
    402: "auth",
    403: "auth",
    408: "timeout",
    429: "rate_limit",
    400: "bad_request",
    404: "bad_request",
    413: "bad_request",
    422: "bad_request",
    504: "timeout",
}


def _is_billing(code: str) -> bool:
    return code in _BILLING or code.endswith("_spend_limit_exceeded")


def _by_status(status: int) -> str | None:
    kind = _STATUS_CLASS.get(status)
    if kind is None and 500 <= status <= 599:  # includes Anthropic's 529 overloaded
        kind = "server_error"
    return kind


def classify_error(http_status: int | None, provider_error_code: str | None) -> str | None:
    """``None`` for a success; otherwise the error class of the call.

    Billing codes win over the status; then a failing status decides; an error inside a
    successful response (a mid-stream error) is classified by its code, defaulting to
    ``server_error`` since the provider broke off after accepting the request.
    """
    code = provider_error_code.strip().lower() if provider_error_code else None
    if code and _is_billing(code):
        return "auth"
    if code and _CODE_CLASS.get(code) == "timeout":
        return "timeout"
    if http_status is not None and not 100 <= http_status < 400:
        return _by_status(http_status) or (_CODE_CLASS.get(code) if code else None) or "unknown"
    if code is None:
        return None if http_status is not None else "unknown"
    if code.isdigit():  # OpenRouter puts an HTTP status in mid-stream `error.code`
        return _by_status(int(code)) or "server_error"
    return _CODE_CLASS.get(code) or ("server_error" if http_status is not None else "unknown")


def find_error(obj: object) -> tuple[bool, str | None]:
    """Whether a decoded body or event is an error, and the provider's code for it.

    Shapes: Anthropic ``{"type":"error","error":{"type",…,"details":{"error_code"}}}``,
    OpenAI ``{"error":{"type","code"}}`` (code preferred), Gemini ``{"error":{"code":429,
    "status"}}`` (status preferred), OpenAI Responses ``{"type":"error","code"}``.
    """
    body = as_dict(obj)
    if body is None:
        return False, None
    err = body.get("error")
    if isinstance(err, dict) and err:
        return True, _code_of(err)
    if err not in (None, False, "", {}):
        return True, None  # e.g. {"error": "some message"}
    if body.get("type") == "error":
        return True, _code_of(body)
    return False, None


def _code_of(err: dict[str, object]) -> str | None:
    details = err.get("details")
    if isinstance(details, dict) and isinstance(details.get("error_code"), str):
        return str(details["error_code"])  # Anthropic spend cap hides under a 429
    # A billing type wins over a code we may not know (OpenAI: type insufficient_quota with
    # code billing_hard_limit_reached): retrying never helps, the user must act.
    kinds = [err.get(key) for key in ("code", "type")]
    for value in kinds:
        if isinstance(value, str) and _is_billing(value.strip().lower()):
            return value
    for key in ("code", "type", "status"):
        value = err.get(key)
        if isinstance(value, str) and value and value != "error":
            return value
    code = err.get("code")
    if isinstance(code, int) and not isinstance(code, bool):
        return str(code)
    return None
