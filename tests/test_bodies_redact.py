# ruff: noqa: E501  (the corpus: real-shaped secrets are long)
"""Redaction: every real-shaped (fake) secret of the corpus is replaced by a marker naming its
kind; ordinary code and prose come through byte for byte."""

from __future__ import annotations

import json

import pytest

from halton_meter.bodies.redact import Redactor

# (kind, text containing exactly one secret, the secret). All fake, shaped like the real thing.
SECRETS = [
    (
        "anthropic-key",
        "key sk-ant-api03-Abc123Def456Ghi789Jkl012Mno345Pqr678Stu901-VwxYZ_AA end",
        "sk-ant-api03-Abc123Def456Ghi789Jkl012Mno345Pqr678Stu901-VwxYZ_AA",
    ),
    (
        "anthropic-key",
        "oauth sk-ant-oat01-ZZZ9yyy8XXX7www6VVV5uuu4TTT3sss2 x",
        "sk-ant-oat01-ZZZ9yyy8XXX7www6VVV5uuu4TTT3sss2",
    ),
    (
        "openai-key",
        "OPENAI_API_KEY=sk-proj-Q1w2E3r4T5y6U7i8O9p0Aa1Ss2Dd3Ff4Gg5Hh6Jj7 ",
        "sk-proj-Q1w2E3r4T5y6U7i8O9p0Aa1Ss2Dd3Ff4Gg5Hh6Jj7",
    ),
    (
        "openai-key",
        "legacy sk-Ab12Cd34Ef56Gh78Ij90Kl12Mn34Op56Qr78St90Uv12 key",
        "sk-Ab12Cd34Ef56Gh78Ij90Kl12Mn34Op56Qr78St90Uv12",
    ),
    (
        "openai-key",
        "svc sk-svcacct-AAAAbbbbCCCCdddd1111222233334444",
        "sk-svcacct-AAAAbbbbCCCCdddd1111222233334444",
    ),
    (
        "openrouter-key",
        "sk-or-v1-0123456789abcdef0123456789abcdef0123456789abcdef",
        "sk-or-v1-0123456789abcdef0123456789abcdef0123456789abcdef",
    ),
    (
        "google-api-key",
        'key="AIzaSyD-1234567890abcdefghijklmnopqrstu"',
        "AIzaSyD-1234567890abcdefghijklmnopqrstu",
    ),
    (
        "google-oauth-token",
        "ya29.a0AfH6SMBxyz1234567890abcdefGHIJ",
        "ya29.a0AfH6SMBxyz1234567890abcdefGHIJ",
    ),
    (
        "xai-key",
        "XAI xai-AbCdEf1234567890GhIjKl1234567890MnOp",
        "xai-AbCdEf1234567890GhIjKl1234567890MnOp",
    ),
    (
        "groq-key",
        "gsk_AbCdEf1234567890GhIjKl1234567890MnOpQrSt",
        "gsk_AbCdEf1234567890GhIjKl1234567890MnOpQrSt",
    ),
    (
        "huggingface-token",
        "hf_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789",
        "hf_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789",
    ),
    ("aws-access-key", "AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE\n", "AKIAIOSFODNN7EXAMPLE"),
    ("aws-access-key", "session ASIAY34FZKBOKMUTVV7A here", "ASIAY34FZKBOKMUTVV7A"),
    (
        "aws-secret-key",
        "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n",
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    ),
    (
        "github-token",
        "token ghp_1234567890abcdefghijABCDEFGHIJ123456 ok",
        "ghp_1234567890abcdefghijABCDEFGHIJ123456",
    ),
    (
        "github-token",
        "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyzABCDEFGHIJ",
        "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyzABCDEFGHIJ",
    ),
    (
        "slack-token",
        "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
        "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
    ),
    (
        "jwt",
        "jwt eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U .",
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    ),
    ("bearer-token", "Authorization: Bearer abcDEF123456ghiJKL789mno", "abcDEF123456ghiJKL789mno"),
    (
        "password",
        "DATABASE_URL=postgres://app:S3cr3t-Pa55word@db.internal:5432/prod",
        "S3cr3t-Pa55word",
    ),
    ("password", "mongodb+srv://admin:hunter2hunter2@cluster0.example.net/db", "hunter2hunter2"),
    ("secret", 'client_secret: "Zq8vN2mK4pL7rT1xW9yB3cD6"', "Zq8vN2mK4pL7rT1xW9yB3cD6"),
    ("stripe-key", "sk_live_51HxYzAbCdEfGh1234567890", "sk_live_51HxYzAbCdEfGh1234567890"),
]

PEM = (
    "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA7v3n0xb1mCqv3Q9\nq8J2Lk0PzY1\n"
    "-----END RSA PRIVATE KEY-----"
)

ORDINARY = [
    "def task_runner(skip_tokens: int) -> str:\n    return f'{skip_tokens} tokens'\n",
    "token = tokenizer.encode(text)\npassword = os.environ['DB_PASSWORD']\napi_key = settings.key\n",
    "See https://example.com:8080/path?q=1 and http://localhost:3000/api/v1 for details.",
    "The quick brown fox jumps over the lazy dog. Bearer bonds were common in 1920.",
    "import sklearn\nfrom sk_utils import AIza\nmodel = 'claude-sonnet-4-5-20250929'\n",
    "uuid 123e4567-e89b-12d3-a456-426614174000 and sha256 "
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "git commit 9fceb02d0ae598e95dc970b74767f19372d61af8; base64 aGVsbG8gd29ybGQ=",
    "<script>alert('x')</script> & SELECT * FROM users WHERE secret_santa = 1;",
    "task-12345678901234567890123 and risk-assessment-for-the-whole-team-2025",
    "const SECRET_NAME = 'db-credentials'; // rotated monthly",
]


@pytest.mark.parametrize(("kind", "text", "secret"), SECRETS)
def test_every_secret_is_replaced_by_its_kind(kind: str, text: str, secret: str) -> None:
    redacted, found = Redactor().redact(text)
    assert secret not in redacted
    assert f"[REDACTED:{kind}]" in redacted
    assert found[kind] >= 1
    # Nothing else changed: putting the secret back gives the original.
    assert redacted.replace(f"[REDACTED:{kind}]", secret, 1) == text


def test_private_key_plain_and_json_escaped() -> None:
    for text in (f"key:\n{PEM}\nthanks", json.dumps({"content": f"key:\n{PEM}\nthanks"})):
        redacted, found = Redactor().redact(text)
        assert "MIIEpAIBAAKCAQEA" not in redacted and "BEGIN RSA" not in redacted
        assert found["private-key"] == 1
        assert redacted.endswith("thanks") or redacted.endswith('thanks"}')


def test_secrets_inside_a_json_request_body() -> None:
    prompt = " ".join(text for _, text, _ in SECRETS)
    body = json.dumps({"messages": [{"role": "user", "content": prompt}]})
    redacted, _ = Redactor().redact(body)
    for _, _, secret in SECRETS:
        assert secret not in redacted
    assert json.loads(redacted)["messages"][0]["role"] == "user"  # still valid JSON


@pytest.mark.parametrize("text", ORDINARY)
def test_ordinary_code_and_prose_is_not_mangled(text: str) -> None:
    redacted, found = Redactor().redact(text)
    assert redacted == text
    assert not found


def test_extra_patterns_are_custom_markers() -> None:
    redacted, found = Redactor(["ACME-[0-9]{8}"]).redact("ticket ACME-12345678 closed")
    assert redacted == "ticket [REDACTED:custom] closed"
    assert found["custom"] == 1
