"""Secrets out of everything a run records or publishes (run.json, spec.yaml, report, card, comment, summary).

The detection is every one of detect-secrets' plugins (AWS, Azure, GitHub, GitLab, Slack, Stripe, OpenAI,
npm, PyPI, JWT, private keys, basic auth in URLs, `password = "..."` keywords...), with its high-entropy
and public-IP plugins left out (they flag ordinary words and addresses), plus the patterns it lacks or
matches too narrowly: Hugging Face, Anthropic (`sk-ant-`), OpenAI project (`sk-proj-`), Google (`AIza`),
Slack, Stripe, GitLab, npm and PyPI tokens on their own, whole GitHub tokens, bearer tokens, the AWS
credentials file (`aws_secret_access_key = ...`) and `password=value` style assignments without quotes.

A private key is redacted as a whole block, from its BEGIN line to its END line (to the end of the text
when it has none). A token that holds a secret is replaced by <redacted>, as a whole: a path component
(`data/hf_.../train.csv` keeps its folders and file name) or a word.
"""

from __future__ import annotations

import re
from functools import lru_cache

REDACTED = "<redacted>"
# BEGIN ... PRIVATE KEY up to its END line, or to the end of the text (a key cut short still has its body)
_PRIVATE_KEY = re.compile(
    r"(?:-{2,}\s*)?BEGIN[ A-Z0-9]*PRIVATE KEY(?: BLOCK)?"
    r".*?(?:END[ A-Z0-9]*PRIVATE KEY(?: BLOCK)?(?:\s*-{2,})?|\Z)",
    re.DOTALL,
)
_GLUED = r"hf_[A-Za-z0-9]{20,}|gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}"  # found glued to a word too
_BOUNDED = (  # found where no letter or digit comes before (or inside another token: two run together)
    r"sk-ant-[A-Za-z0-9_-]{20,}"  # Anthropic
    r"|sk-(?:proj|svcacct|admin)-[A-Za-z0-9_-]{20,}"  # OpenAI project and service keys
    r"|AIza[0-9A-Za-z_-]{35,}"  # Google API keys
    r"|xox[abeoprs]-[A-Za-z0-9-]{10,}"  # Slack
    r"|[rs]k_(?:live|test)_[0-9A-Za-z]{16,}"  # Stripe
    r"|gl(?:pat|dt|ft|soat|rt|cbt|imt|ptt|oas|agent)-[A-Za-z0-9_-]{20,}"  # GitLab
    r"|npm_[A-Za-z0-9]{36}"  # npm
    r"|pypi-AgE[A-Za-z0-9_-]{50,}"  # PyPI
    r"|(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}"  # AWS access key ids
)
# every place a token starts (lookahead: overlapping starts are all seen), the token as group 1
_GLUED_AT = re.compile(rf"(?=({_GLUED}))")
_BOUNDED_AT = re.compile(rf"(?=({_BOUNDED}))")


def _redact_tokens(text: str) -> str:
    """Each token replaced, and two run together (`hf_...xoxb-...`) as one: the union of every token's span, so
    one token's match never leaves the rest of another in clear."""
    spans = [m.span(1) for m in _GLUED_AT.finditer(text)]
    for match in _BOUNDED_AT.finditer(text):
        start = match.start(1)
        before = text[start - 1] if start else " "
        if not (before.isascii() and before.isalnum()) or any(a <= start < b for a, b in spans):
            spans.append(match.span(1))
    out, end = [], 0
    for a, b in sorted(spans):
        if a >= end:
            out.append(text[end:a] + REDACTED)
        end = max(end, b)
    return "".join(out) + text[end:] if spans else text


_NAMES = (r"aws_secret_access_key|aws_access_key_id|aws_session_token|secret_access_key|access_key_id|secret_key"
          r"|access_key|client_secret|private_key|password|passwd|pass|pwd|secret|token|api_key|apikey")
# name=value, name = value (the AWS credentials file), name: value for the AWS names, password: value, Bearer value;
# a quoted value to its closing quote, a bare one to a space, a quote or `&` (a URL's next query parameter)
_ASSIGNED = re.compile(
    rf"(?i)(?P<name>(?:{_NAMES})\s*=\s*|(?:aws_secret_access_key|aws_access_key_id|aws_session_token)\s*:\s*"
    r"|password:\s|\bbearer\s+(?=[A-Za-z0-9._~+/-]{20}))"
    r"(?:(?P<quote>[\"'])[^\"'\n]+(?P=quote)|[^\s&'\"]+)"
)
_BASIC_AUTH = re.compile(r"(?<=://)[^/\s:@]+:[^/\s@]+(?=@)")
_PIECE = re.compile(r"[^\s/\\]+")  # a word, or one component of a path
_WORD = re.compile(r"\S+")
_EDGES = " \t\"'=:,;"


_PLACEHOLDER = re.compile(r"[\"']?<(?:[A-Za-z][A-Za-z_-]*|[^<>\n]*\s[^<>\n]*)>")  # <words that say what>
_REFERENCE = re.compile(r"[\"']?\$(?:[A-Za-z_][A-Za-z0-9_]*|\{[A-Za-z_][A-Za-z0-9_]*\})[\"']?")


def _assigned(match: re.Match) -> str:
    """`name=value` with the value redacted, unless the value only names a variable (`HF_TOKEN="$MY_TOKEN"` in a
    hint says where the secret is, not what it is) or is a placeholder in angle brackets (`HF_TOKEN=<a write
    token from ...>`: a hint that says what to put there; no token starts with "<")."""
    value = match.group()[len(match["name"]):]
    if _REFERENCE.fullmatch(value) or _PLACEHOLDER.match(match.string, match.start() + len(match["name"])):
        return match.group()
    quote = match["quote"] or ""
    return match["name"] + quote + REDACTED + quote


@lru_cache(maxsize=1)
def _plugins() -> list:
    """detect-secrets' plugins, each used by its regular expressions only (analyze_string and, for the regex
    plugins, the whole match): no filter that needs a file, and never the verification that would send a
    found secret over the network."""
    try:
        from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class
    except ImportError:  # a dependency; without it, the patterns above still apply
        return []
    return [cls() for cls in plugin_classes(get_mapping_from_secret_type_to_class())]


def plugin_classes(mapping: dict) -> list:
    """The plugin classes applied: all but the high-entropy and public-IP ones."""
    return [cls for cls in mapping.values() if "Entropy" not in cls.__name__ and "IPPublic" not in cls.__name__]


@lru_cache(maxsize=65536)
def redact_text(text: str) -> str:
    """`text` with every secret found replaced (the plugins read one line at a time, as detect-secrets reads files)."""
    text = _PRIVATE_KEY.sub(REDACTED, text)
    # assignments before tokens: a token run into a name (`hf_...password=x`) would swallow the name and leave
    # `<redacted>=x` with the value in clear
    text = _ASSIGNED.sub(_assigned, text)
    text = _redact_tokens(text)
    text = _BASIC_AUTH.sub(REDACTED, text)
    if not text.strip():
        return text
    out = []
    for line in text.split("\n"):
        line, key = _redact_line(line)
        out.append(line)
        if key:  # a private key no pattern above knows (PuTTY): the rest of the text may be its body
            break
    return "\n".join(out)


def _found(plugin, line: str) -> set[str]:
    """The secrets a plugin finds in a line: a regex plugin's whole matches (its analyze_string may give only a
    group, such as a token's prefix), each value trimmed of the quotes and separators around it."""
    values = set()
    for regex in getattr(plugin, "denylist", ()) or ():
        for match in regex.finditer(line):
            whole = match.group().strip(_EDGES)
            # a keyword pattern's match spans the name and the value: its last group is the secret
            groups = [g for g in match.groups() if g] if re.search(r"\s", whole) else []
            values.add((groups[-1] if groups else whole).strip(_EDGES))
    if not getattr(plugin, "denylist", None):
        values |= {value.strip(_EDGES) for value in plugin.analyze_string(line) if value}
    return {value for value in values if value}


def _redact_line(line: str) -> tuple[str, bool]:
    """(the line with its secrets replaced, whether it holds a private key)."""
    for plugin in _plugins():
        for value in _found(plugin, line):
            if plugin.secret_type == "Private Key":
                return REDACTED, True
            line = _replace(line, value)
    return line, False


def _replace(line: str, value: str) -> str:
    """The path component or word holding `value` replaced whole (a plugin may report only part of a token)."""
    for pattern in (_PIECE, _WORD):
        if any(value in m.group() for m in pattern.finditer(line)):
            return pattern.sub(lambda m: REDACTED if value in m.group() else m.group(), line)
    return line.replace(value, REDACTED)


def map_strings(change, value):
    """`value` (dicts, lists and tuples of strings and other values, as read from JSON or YAML) with `change`
    applied to every string in it, dict keys included; a tuple comes back as a list; the rest as it is."""
    if isinstance(value, str):
        return change(value)
    if isinstance(value, dict):
        return {change(key) if isinstance(key, str) else key: map_strings(change, item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [map_strings(change, item) for item in value]
    return value


def redact(value):
    """The value (str, or dicts and lists of them, keys included) with its secrets replaced."""
    return map_strings(redact_text, value)
