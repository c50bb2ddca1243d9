"""Opaque account labels for quota windows: which calls share one provider account.

Quota windows belong to an account, and the ledger must say which calls filled which account's
windows without ever keeping the credential, a hash of it, or the user's e-mail. So:

- when the provider names the account's organisation in its response (Anthropic's
  `anthropic-organization-id`, OpenAI's `openai-organization`), the label is built from it
  (an identifier, not a secret);
- otherwise each credential gets a random id, generated here and kept in this process's
  memory only (a dict from the credential to the id: the daemon holds the credential anyway
  while it forwards the request). A restarted daemon hands out new ids.

O(1) per call, in mitmproxy's `responseheaders` hook.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping

from halton_meter.providers.ratelimits import ORGANISATION_HEADERS

# Request headers that carry the credential, in the order they are looked at.
_CREDENTIAL_HEADERS = ("authorization", "x-api-key", "api-key", "x-goog-api-key")
_ACCOUNT_HEADERS = ("chatgpt-account-id",)  # the ChatGPT login names its account itself
MAX_CREDENTIALS = 1024  # past this the in-memory map starts again (labels change; nothing lost)


class AccountLabels:
    def __init__(self) -> None:
        self._local: dict[str, str] = {}

    def label(
        self,
        provider: str,
        billing: str,
        request_headers: Mapping[str, str],
        response_headers: Mapping[str, str],
    ) -> str:
        """``provider:billing:org-…`` / ``acct-…`` / ``local-<random>``; never the token."""
        for name in ORGANISATION_HEADERS:
            org = response_headers.get(name)
            if org:
                return f"{provider}:{billing}:org-{_short(org)}"
        for name in _ACCOUNT_HEADERS:
            account = request_headers.get(name)
            if account:
                return f"{provider}:{billing}:acct-{_short(account)}"
        credential = next(
            (value for name in _CREDENTIAL_HEADERS if (value := request_headers.get(name))), None
        )
        if credential is None:
            return f"{provider}:{billing}:anonymous"
        local = self._local.get(credential)
        if local is None:
            if len(self._local) >= MAX_CREDENTIALS:
                self._local.clear()
            local = self._local[credential] = secrets.token_hex(4)
        return f"{provider}:{billing}:local-{local}"


def _short(identifier: str) -> str:
    """An organisation or account id, trimmed to what tells accounts apart on one machine."""
    cleaned = "".join(c for c in identifier.strip() if c.isalnum() or c in "-_")
    return cleaned[:36] or "unnamed"
