"""Secrets out of everything a run records or publishes (run.json, report, card, comment, summary).

The detection is detect-secrets' plugins (AWS, Azure, GitHub, GitLab, Slack, Stripe, OpenAI, npm,
PyPI, JWT, private keys, basic auth in URLs, `password = "..."` keywords...), with its
high-entropy plugins left out (they flag ordinary words), plus a few patterns it lacks: Hugging
Face tokens, whole GitHub tokens, and `password=value` style assignments without quotes. A token
that holds a secret is replaced by <redacted> as a whole; a text with a private key is replaced whole.
"""

from __future__ import annotations

import re
from functools import lru_cache

REDACTED = "<redacted>"
_PATTERNS = re.compile(
    r"(hf_[A-Za-z0-9]{20,}|gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,})"  # glued to a word too
    r"|(?<=://)[^/\s:@]+:[^/\s@]+(?=@)"
    r"|(?i:(?<=pass=)|(?<=password=)|(?<=passwd=)|(?<=pwd=)|(?<=secret=)|(?<=token=)|(?<=api_key=)|(?<=apikey=)"
    r"|(?<=password: )|(?<=secret_key=)|(?<=access_key=)|(?<=secret_access_key=))[^\s&'\"]+"
)
_SPACE = re.compile(r"\S+")


@lru_cache(maxsize=1)
def _plugins() -> list:
    """detect-secrets' plugins, each used by its regular expressions only (analyze_string): no filter
    that needs a file, and never the verification that would send a found secret over the network."""
    try:
        from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class
    except ImportError:  # a dependency; without it, the patterns above still apply
        return []
    return [cls() for cls in get_mapping_from_secret_type_to_class().values()
            if "Entropy" not in cls.__name__ and "IPPublic" not in cls.__name__]


@lru_cache(maxsize=65536)
def redact_text(text: str) -> str:
    """`text` with every secret found replaced (one line at a time, as detect-secrets reads files)."""
    text = _PATTERNS.sub(REDACTED, text)
    if not text.strip():
        return text
    return "\n".join(_redact_line(line) for line in text.split("\n"))


def _redact_line(line: str) -> str:
    for plugin in _plugins():
        for value in plugin.analyze_string(line):
            if not value:
                continue
            if plugin.secret_type == "Private Key":
                return REDACTED
            # the whole whitespace-separated token holding the secret (a plugin may report only part of it)
            line = _SPACE.sub(lambda m, value=value: REDACTED if value in m.group() else m.group(), line)
    return line


def redact(value):
    """The value (str, or dicts and lists of them, keys included) with its secrets replaced."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {redact(key) if isinstance(key, str) else key: redact(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(item) for item in value]
    return value
