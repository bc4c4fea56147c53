"""The one place that decides what is a secret and how it is shown: every output and log uses it.

Contract:

- A variable is masked when its name looks secret (`is_secret_name`: contains KEY, TOKEN,
  SECRET, PASSWORD, PASS, AUTH, CRED (CREDENTIAL, CREDS) or PRIVATE, or has PW or PWD as a
  word (`SERVICE_PW`, `DB_PWD`; not the shell's PWD and OLDPWD), in any case) or its value
  looks like a key (`looks_like_secret`: a known provider prefix, a JWT, a `Bearer`/`Basic`
  credential, or a long random-looking string), whatever the name. The rule leans towards
  masking: a false positive costs a `--reveal`, a false negative leaks a key. The one
  exception is a count of tokens (`MAX_OUTPUT_TOKENS=32000`): a name whose only secret word
  is `TOKENS` and whose value is a small plain integer is shown, because hiding every token
  limit would make `preset env` useless and no API key is a short run of digits.
- `mask_value` shows no part of a secret's body and not its length: only a provider prefix
  that every key of that provider shares (`sk-ant-****`, `AIza****`), else `****`. The empty
  string stays empty, so "the key is empty" remains visible.
- `redact_text` removes known secret values, and anything that looks like a key, from free
  text such as log lines and error messages. The values it knows are the ones it is given
  and the ones this process has remembered (`remember_secrets`, `remember_env_secrets`):
  building a child's environment remembers the parent's, the agent's and the preset's
  secret values, resolving a preset remembers what its references gave in secret
  positions, and an adapter remembers its own environment's. So a secret is masked by
  value wherever it shows up later in this process, whatever text carries it.

Only the standard library's `re` and `math` are imported: this runs on every log line.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from typing import Final

MASK: Final = "****"

SECRET_NAME_PARTS: Final = (
    "KEY",
    "TOKEN",
    "SECRET",
    "PASSWORD",
    "PASS",
    "AUTH",
    "CRED",
    "PRIVATE",
)
# Too short to look for inside a name ("PW" is in "UPWARD"): secret only as a whole word.
SECRET_NAME_WORDS: Final = frozenset({"PW", "PWD"})
# The shell's working directories, not passwords.
_NOT_SECRET_NAMES: Final = frozenset({"PWD", "OLDPWD"})
_NAME_WORD_RE: Final = re.compile(r"[^A-Z0-9]+")

# Prefixes that identify a provider's keys, longest first so that mask_value keeps the most
# specific one. Each is shared by every key of its kind: showing it reveals which provider,
# not which key.
KEY_PREFIXES: Final = tuple(
    sorted(
        (
            "sk-ant-",  # Anthropic
            "sk-proj-",  # OpenAI project keys
            "sk-svcacct-",  # OpenAI service accounts
            "sk-admin-",  # OpenAI admin keys
            "sk-or-v1-",  # OpenRouter
            "sk-",  # OpenAI (legacy), DeepSeek, Moonshot, DashScope, …
            "AIza",  # Google API keys (Gemini)
            "AKIA",  # AWS access key ids (Bedrock)
            "hf_",  # Hugging Face
            "github_pat_",  # GitHub fine-grained tokens
            "ghp_",  # GitHub classic tokens and their OAuth, user, server, refresh kinds
            "gho_",
            "ghu_",
            "ghs_",
            "ghr_",
            "glpat-",  # GitLab
            "xoxb-",  # Slack bot, user, app-level, refresh and legacy tokens
            "xoxp-",
            "xoxa-",
            "xoxr-",
            "xoxs-",
            "xapp-",
        ),
        key=len,
        reverse=True,
    )
)

# Shorter than this, a prefixed value is a word ("sk-learn"), not a key: real keys carry at
# least 16 random characters after their prefix.
_MIN_PREFIXED_KEY: Final = 20
# A string this long with no spaces that reads as random is treated as a key.
_MIN_RANDOM_KEY: Final = 32
# The longest unbroken run of letters and digits a random key of that length shows; words,
# paths and model names ("deepseek-ai/deepseek-r1-distill-qwen-32b") break up much sooner.
_MIN_RANDOM_RUN: Final = 20
# Shannon entropy (bits per character) above which a run reads as random: English-like
# identifiers sit near 3, base62 keys of 32+ characters above 4.
_MIN_ENTROPY: Final = 3.5
# A token count is at most this many digits; longer digit strings are masked like anything
# else under a secret name.
_MAX_COUNT_DIGITS: Final = 9
# Secrets shorter than this are not searched for in free text: replacing every "abc" in a
# log line would mangle it while protecting nothing a guess could not find.
MIN_REDACT_LENGTH: Final = 4

# Key characters: letters, digits, `_` and `-` (URL-safe base64, which providers use).
_KEY_CHARS: Final = r"[A-Za-z0-9_\-]"
# Not preceded by a letter or digit, so "task-…" does not match as "sk-…" inside free text.
_WORD_START: Final = r"(?<![A-Za-z0-9])"
_PREFIX_ALTERNATIVES: Final = "|".join(re.escape(prefix) for prefix in KEY_PREFIXES)
_PREFIXED_KEY_RE: Final = re.compile(f"{_WORD_START}(?:{_PREFIX_ALTERNATIVES}){_KEY_CHARS}{{12,}}")
_JWT_RE: Final = re.compile(
    f"{_WORD_START}eyJ{_KEY_CHARS}{{8,}}\\.{_KEY_CHARS}{{8,}}\\.{_KEY_CHARS}*"
)
_AUTH_HEADER_RE: Final = re.compile(r"(?i)\b(?:Bearer|Basic)\s+[A-Za-z0-9._~+/=\-]{8,}")
_RANDOM_CHARS_RE: Final = re.compile(r"[A-Za-z0-9+/=_.\-]+")
_ALNUM_RUN_RE: Final = re.compile(r"[A-Za-z0-9]+")
_HEX_KEY_RE: Final = re.compile(f"[0-9a-fA-F]{{{_MIN_RANDOM_KEY},}}")
_COUNT_RE: Final = re.compile(f"[0-9]{{1,{_MAX_COUNT_DIGITS}}}")
# Any whitespace-free word of 32+ plausible key characters, for redact_text's random check.
_LONG_WORD_RE: Final = re.compile(f"[A-Za-z0-9+/=_\\-]{{{_MIN_RANDOM_KEY},}}")


def is_secret_name(name: str) -> bool:
    """Whether a variable called `name` holds a secret, judged by its name alone."""
    upper = name.upper()
    if any(part in upper for part in SECRET_NAME_PARTS):
        return True
    if upper in _NOT_SECRET_NAMES:
        return False
    return any(word in SECRET_NAME_WORDS for word in _NAME_WORD_RE.split(upper))


def _is_token_count(name: str, value: str) -> bool:
    """`MAX_OUTPUT_TOKENS=32000`: a count of tokens, not a token (see the module docstring)."""
    upper = name.upper()
    if "TOKENS" not in upper or not _COUNT_RE.fullmatch(value.strip()):
        return False
    return not is_secret_name(upper.replace("TOKENS", "_"))


def _entropy(text: str) -> float:
    counts: dict[str, int] = {}
    for char in text:
        counts[char] = counts.get(char, 0) + 1
    total = len(text)
    return -sum(n / total * math.log2(n / total) for n in counts.values())


def _looks_random(word: str) -> bool:
    """A long, space-free word whose longest letter-and-digit run reads as random."""
    if len(word) < _MIN_RANDOM_KEY or word[0] in "/.~":
        return False
    longest = max(_ALNUM_RUN_RE.findall(word), key=len, default="")
    if len(longest) < _MIN_RANDOM_RUN:
        return False
    has_digit = any(char.isdigit() for char in longest)
    has_letter = any(char.isalpha() for char in longest)
    return has_digit and has_letter and _entropy(longest) >= _MIN_ENTROPY


def looks_like_secret(value: str) -> bool:
    """Whether `value` looks like a key, token or credential, whatever it is called."""
    text = value.strip()
    if not text:
        return False
    if _AUTH_HEADER_RE.match(text) or _JWT_RE.match(text):
        return True
    if any(char.isspace() for char in text):
        return False
    if len(text) >= _MIN_PREFIXED_KEY and _PREFIXED_KEY_RE.match(text):
        return True
    if _HEX_KEY_RE.fullmatch(text):
        return True
    return bool(_RANDOM_CHARS_RE.fullmatch(text)) and _looks_random(text)


def should_mask(name: str, value: str) -> bool:
    """Whether the variable `name=value` is shown masked: the one rule every output uses."""
    if value == "":
        return False
    if is_secret_name(name):
        return not _is_token_count(name, value)
    return looks_like_secret(value)


def mask_value(value: str) -> str:
    """`value` as it may be shown: a shared provider prefix at most, then `****`.

    Empty stays empty. The prefix is kept only when the value is long enough to be a key of
    that provider, so a short password that happens to start with `sk-` shows nothing.
    """
    if value == "":
        return ""
    if len(value) >= _MIN_PREFIXED_KEY:
        for prefix in KEY_PREFIXES:
            if value.startswith(prefix):
                return prefix + MASK
    return MASK


def mask_env(env: Mapping[str, str]) -> dict[str, str]:
    """A copy of `env` with every value `should_mask` picks replaced by `mask_value`."""
    return {
        name: mask_value(value) if should_mask(name, value) else value
        for name, value in env.items()
    }


def secret_values(env: Mapping[str, str]) -> list[str]:
    """The values of `env` that `should_mask` picks: what must never appear in clear."""
    return [value for name, value in env.items() if should_mask(name, value)]


# Secret values this process has seen (module docstring). A set of strings, never shown.
_remembered: set[str] = set()
# `redact_text`'s pattern for them, rebuilt when the set grows.
_remembered_re: list[re.Pattern[str] | None] = [None]


def remember_secrets(values: Iterable[str]) -> None:
    """Mask these values in every later `redact_text` of this process."""
    fresh = {value for value in values if len(value) >= MIN_REDACT_LENGTH} - _remembered
    if fresh:
        _remembered.update(fresh)
        _remembered_re[0] = None


def remember_env_secrets(env: Mapping[str, str]) -> None:
    """`remember_secrets` of every value `env` holds under a secret name (or key-shaped)."""
    remember_secrets(secret_values(env))


def known_secrets() -> frozenset[str]:
    """The values `remember_secrets` was given (for code that masks by exact value)."""
    return frozenset(_remembered)


def _secrets_re(secrets: Iterable[str]) -> re.Pattern[str] | None:
    """One alternation of `secrets`, longest first: a secret holding another is masked whole."""
    known = sorted({s for s in secrets if len(s) >= MIN_REDACT_LENGTH}, key=len, reverse=True)
    return re.compile("|".join(re.escape(secret) for secret in known)) if known else None


def _remembered_pattern() -> re.Pattern[str] | None:
    if _remembered_re[0] is None and _remembered:
        _remembered_re[0] = _secrets_re(_remembered)
    return _remembered_re[0]


def _mask_match(match: re.Match[str]) -> str:
    return mask_value(match.group(0))


def _mask_auth_header(match: re.Match[str]) -> str:
    scheme = match.group(0).split(None, 1)[0]
    return f"{scheme} {MASK}"


def _mask_if_random(match: re.Match[str]) -> str:
    word = match.group(0)
    return mask_value(word) if _looks_random(word) else word


def redact_text(text: str, secrets: Iterable[str] = (), *, patterns: bool = True) -> str:
    """`text` with every known secret, and (with `patterns`) anything key-like, masked.

    Known secrets are `secrets` and the ones this process remembered (module docstring).
    They are replaced longest first in one pass, so a secret that contains another is
    masked whole and a mask is never masked again. Secrets shorter than
    `MIN_REDACT_LENGTH` are not searched for (see there).
    """
    given = list(secrets)
    pattern = _secrets_re([*given, *_remembered]) if given else _remembered_pattern()
    if pattern is not None:
        text = pattern.sub(_mask_match, text)
    if patterns:
        text = _AUTH_HEADER_RE.sub(_mask_auth_header, text)
        text = _JWT_RE.sub(_mask_match, text)
        text = _PREFIXED_KEY_RE.sub(_mask_match, text)
        text = _LONG_WORD_RE.sub(_mask_if_random, text)
    return text
