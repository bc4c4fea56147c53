"""The one masking rule: which names and values are secret, how they are shown, log redaction."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from aiswitch.masking import (
    MASK,
    is_secret_name,
    looks_like_secret,
    mask_env,
    mask_value,
    redact_text,
    should_mask,
)

# Fabricated, correctly shaped keys; none of them is real.
ANTHROPIC_KEY = "sk-ant-api03-" + "Zx8Qp2Lm9Vt4Rk7Wn3Yb6Hc1Jd5Fg0Se" * 3 + "-AbC12dAA"
OPENAI_KEY = "sk-proj-" + "T3BlbkFJq9ZmX2vL7pR4sK8wN1cY6hD0eG5uA3tB"
GOOGLE_KEY = "AIzaSyD" + "8fK2mQ9xL4vR7pT1wN6zB3cH5jY0gE"
GITHUB_TOKEN = "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"
SLACK_TOKEN = "xoxb-" + "1234567890-0987654321-AbCdEfGhIjKlMnOpQrStUvWx"
JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"
    ".eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4ifQ"
    ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)
GLM_KEY = "d8f3e91c0b7a45f2a6c3e8d1b9f04a7c.Xq7LmP2vR9tK4wNz"
HEX_SECRET = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"


@pytest.mark.parametrize(
    "name",
    [
        "ANTHROPIC_API_KEY",
        "ANTHROPIC_AUTH_TOKEN",
        "OPENAI_CLIENT_SECRET",
        "DB_PASSWORD",
        "SMTP_PASS",
        "PROXY_AUTH",
        "GOOGLE_APPLICATION_CREDENTIALS",
        "SSH_PRIVATE",
        "anthropic_auth_token",
        "Moonshot_Api_Key",
        "APIKEY",
        "githubtoken",
    ],
)
def test_a_name_with_a_secret_word_in_any_case_is_secret(name: str) -> None:
    assert is_secret_name(name)


@pytest.mark.parametrize(
    "name", ["PATH", "ANTHROPIC_BASE_URL", "OPENAI_MODEL", "HOME", "LANG", "HTTPS_PROXY", "EDITOR"]
)
def test_an_ordinary_name_is_not_secret(name: str) -> None:
    assert not is_secret_name(name)


def test_an_auth_token_is_masked_in_full_the_old_tools_leak() -> None:
    masked = mask_env({"ANTHROPIC_AUTH_TOKEN": "abc123-not-prefixed-at-all"})
    assert masked == {"ANTHROPIC_AUTH_TOKEN": MASK}


def test_secret_names_are_masked_whatever_the_value_looks_like() -> None:
    env = {
        "MY_SECRET": "hunter2",
        "db_password": "correct horse battery staple",
        "GITHUB_TOKEN": "x",
        "ZHIPU_API_KEY": "short",
    }
    assert mask_env(env) == dict.fromkeys(env, MASK)


@pytest.mark.parametrize(
    "value", [ANTHROPIC_KEY, OPENAI_KEY, GOOGLE_KEY, GITHUB_TOKEN, SLACK_TOKEN, JWT, GLM_KEY]
)
def test_a_key_shaped_value_is_masked_under_an_innocent_name(value: str) -> None:
    assert looks_like_secret(value)
    masked = mask_env({"SOME_SETTING": value})["SOME_SETTING"]
    prefix = masked.removesuffix(MASK)
    assert masked.endswith(MASK)
    assert len(prefix) <= len("github_pat_")
    assert value.startswith(prefix)


@pytest.mark.parametrize(
    "value",
    [
        f"Bearer {OPENAI_KEY}",
        "bearer abcdefgh12345678",
        "Basic dXNlcjpwYXNzd29yZA==",
        HEX_SECRET,
        "Kx9mQ2vL7pR4sK8wN1cY6hD0eG5uA3tBz",
    ],
)
def test_credentials_and_long_random_strings_look_like_secrets(value: str) -> None:
    assert looks_like_secret(value)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "https://api.moonshot.cn/anthropic",
        "https://generativelanguage.googleapis.com/v1beta/openai/",
        "claude-sonnet-4-5-20250929",
        "deepseek-ai/deepseek-r1-distill-qwen-32b",
        "accounts/fireworks/models/llama-v3p1-405b-instruct",
        "/home/someone/projects/aiswitch/presets/config.yaml",
        "123e4567-e89b-12d3-a456-426614174000",
        "sk-learn",
        "task-manager-for-the-whole-company-project",
        "a perfectly ordinary sentence that is long enough to count",
        "32000",
    ],
)
def test_ordinary_values_do_not_look_like_secrets(value: str) -> None:
    assert not looks_like_secret(value)
    assert mask_env({"SETTING": value}) == {"SETTING": value}


def test_a_token_count_is_shown_but_a_token_under_the_same_name_is_not() -> None:
    assert not should_mask("CLAUDE_CODE_MAX_OUTPUT_TOKENS", "32000")
    assert not should_mask("max_tokens", " 4096 ")
    assert should_mask("CLAUDE_CODE_MAX_OUTPUT_TOKENS", "abc-not-a-count")
    assert should_mask("TOKENS_API_KEY", "123")
    assert should_mask("MY_TOKEN", "123")
    assert should_mask("PASSWORD_TOKENS", "1234")
    assert should_mask("SERVICE_TOKENS", "1234567890")


def test_a_mask_keeps_only_a_shared_provider_prefix() -> None:
    assert mask_value(ANTHROPIC_KEY) == "sk-ant-" + MASK
    assert mask_value(OPENAI_KEY) == "sk-proj-" + MASK
    assert mask_value(GOOGLE_KEY) == "AIza" + MASK
    assert mask_value("sk-or-v1-" + "f" * 64) == "sk-or-v1-" + MASK
    assert mask_value(GLM_KEY) == MASK
    assert mask_value("hunter2") == MASK


def test_a_mask_does_not_reveal_the_length_of_the_secret() -> None:
    assert mask_value("a" * 8) == mask_value("b" * 80)


def test_a_short_value_that_starts_like_a_key_shows_no_prefix() -> None:
    assert mask_value("sk-pass") == MASK


def test_an_empty_secret_stays_visibly_empty() -> None:
    assert mask_value("") == ""
    assert mask_env({"ANTHROPIC_API_KEY": ""}) == {"ANTHROPIC_API_KEY": ""}


def test_mask_env_leaves_the_input_alone_and_keeps_every_name() -> None:
    env = {"ANTHROPIC_API_KEY": ANTHROPIC_KEY, "ANTHROPIC_BASE_URL": "https://api.example"}
    masked = mask_env(env)
    assert env["ANTHROPIC_API_KEY"] == ANTHROPIC_KEY
    assert masked == {
        "ANTHROPIC_API_KEY": "sk-ant-" + MASK,
        "ANTHROPIC_BASE_URL": env["ANTHROPIC_BASE_URL"],
    }


def test_redact_text_masks_every_occurrence_of_a_known_secret() -> None:
    line = "auth failed for hunter2-long; retried with hunter2-long (key=hunter2-long)"
    redacted = redact_text(line, ["hunter2-long"])
    assert "hunter2" not in redacted
    assert redacted.count(MASK) == 3


def test_redact_text_masks_the_longer_of_two_overlapping_secrets_whole() -> None:
    redacted = redact_text("value=abcdefgh-ijkl end", ["abcd", "abcdefgh-ijkl"])
    assert redacted == f"value={MASK} end"


def test_redact_text_finds_key_shaped_strings_it_was_not_told_about() -> None:
    text = (
        f"POST /v1/messages Authorization: Bearer {OPENAI_KEY}\n"
        f"x-api-key={ANTHROPIC_KEY} google={GOOGLE_KEY} session={JWT} sha={HEX_SECRET}"
    )
    redacted = redact_text(text)
    for secret in (OPENAI_KEY, ANTHROPIC_KEY, GOOGLE_KEY, JWT, HEX_SECRET):
        assert secret not in redacted
        assert secret[-12:] not in redacted
    assert "Authorization: Bearer ****" in redacted
    assert "POST /v1/messages" in redacted


def test_redact_text_leaves_ordinary_log_lines_unchanged() -> None:
    line = (
        "task 3 of run 2024-11-02T10:00:00Z finished: claude-sonnet-4-5-20250929 via "
        "https://api.moonshot.cn/anthropic, 1234 input tokens, file /tmp/aiswitch/runs/a.json"
    )
    assert redact_text(line, ["unrelated-secret"]) == line


def test_redact_text_skips_secrets_too_short_to_search_for() -> None:
    assert redact_text("a cab and a crab", ["ab"]) == "a cab and a crab"


def test_redact_text_handles_secrets_with_regex_characters() -> None:
    secret = "p@ss.w*rd+(1)?"
    assert redact_text(f"pw={secret}!", [secret]) == f"pw={MASK}!"


def test_importing_masking_pulls_in_nothing_heavy() -> None:
    code = (
        "import sys; import aiswitch.masking; "
        "heavy = {'pydantic', 'yaml', 'rich', 'typer', 'psutil'} & set(sys.modules); "
        "print(sorted(heavy))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert result.stdout.strip() == "[]"
