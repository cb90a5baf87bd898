"""The one renderer for everything published: the pull-request comment, the job summary, the model
card and report.md. Text that comes from data (texts, labels, file and column names, error
messages, names from a spec) goes through `inline` (or `inert`, for a whole structure) before it is
put into markdown; a finished document goes through `publish`.

`inline` makes a text inert: secrets redacted (runner.redact), HTML and markdown that could change
the layout or load anything escaped (`<`, `>`, `&`, backslash, backtick, brackets, `|`, emphasis and
strikethrough: `*`, `~` and a `_` at a word's edge), `:emoji:` shortcodes and `@mentions`,
`#123` and `GH-123` references broken with a zero-width joiner so nobody is pinged or cross-linked, bare URLs
(`https://...`, `www....`) broken the same way (before `://`, after `www`) so GitHub makes no link, line
breaks and control characters shown as visible escapes. `publish` is the last guard on a whole
body: `<details>` balanced, and never the comment marker `<!-- runner:comment` (which would let the
comment be mistaken for another spec's).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from runner.redact import map_strings, redact_text

if TYPE_CHECKING:
    from runner.spec.sections import ReportSection

ZWJ = "\u200d"
MARKER = "<!-- runner:comment"
_ESCAPES = {"\\": "\\\\", "`": "\\`", "[": "\\[", "]": "\\]", "|": "\\|", "<": "&lt;", ">": "&gt;", "&": "&amp;",
            "*": "\\*", "~": "\\~", "_": "\\_"}
# `*` and `~` always (emphasis, strikethrough, list bullets, fences); `_` only where it could open or close
# emphasis, so snake_case names (f1_macro, train_data.csv) stay as written, also inside code spans
_SPECIAL = re.compile(r"[\\`\[\]|<>&*~]|(?<![^\W_])_|_(?![^\W_])")
# GitHub turns `:name:` into an emoji after rendering (a backslash would not stop it): a joiner after the colon does
_EMOJI = re.compile(r":(?=[\w+-]+:)")
_MENTION = re.compile(r"([@#])(?=[\w-])")  # @user, @org/team, #123
_GH_REFERENCE = re.compile(r"(?i)(?<=gh)(?=-\d)")  # GH-123 and gh-123: GitHub links them to issue 123 too
# Where GitHub's autolinker (cmark-gfm) starts a link: a scheme before `://` (it reads the letters back from
# the colon, so a joiner right before it leaves no scheme) and `www.` (after any character)
_AUTOLINK = re.compile(r"(?i)(?=://)|www(?=\.)")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_DETAILS = re.compile(r"</?details\b[^>]*>", re.IGNORECASE)


def _visible(text: str) -> str:
    """Line breaks and control characters as visible escapes (\\n, \\x1b, \\u2028): one line, nothing hidden."""
    return _CONTROL.sub(lambda m: "\\n" if m.group() == "\n" else f"\\x{ord(m.group()):02x}" if ord(m.group()) < 256
                        else f"\\u{ord(m.group()):04x}", text)


def inline(text, limit: int | None = None) -> str:
    """A data-derived text as inert inline markdown (one line, nothing that renders as markup)."""
    text = _visible(redact_text(str(text)))
    if limit is not None and len(text) > limit:
        text = text[: limit - 1] + "…"
    text = _EMOJI.sub(":" + ZWJ, text)
    text = _SPECIAL.sub(lambda m: _ESCAPES[m.group()], text)
    text = _AUTOLINK.sub(lambda m: m.group() + ZWJ, text)
    text = _GH_REFERENCE.sub(ZWJ, text)
    return _MENTION.sub(lambda m: m.group(1) + ZWJ, text)


def code(text, limit: int | None = None) -> str:
    """A name (a spec file, a path, a key) as an inert inline code span: shown as written, nothing inside renders
    (no HTML, no link, no mention: GitHub renders none in code), and no backtick in it can close the span (the
    fence is longer than any run of backticks inside). Secrets are redacted and line breaks shown as escapes."""
    text = _visible(redact_text(str(text)))
    if limit is not None and len(text) > limit:
        text = text[: limit - 1] + "…"
    text = text.replace(MARKER, "&lt;!-- runner:comment")  # never read as a comment's marker, even in code
    fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") or not text.strip() else ""
    return f"{fence}{pad}{text}{pad}{fence}"


_SAFE_URL = re.compile(r"https://[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?(?:/[A-Za-z0-9._~/%+=-]*)?")


def link(url) -> str:
    """A URL the runner itself wrote (where `runner push` put a model) as a link GitHub shows: `<url>`, when it
    is a plain https address (a host and a path: no port, no query, nothing that markdown or HTML could read
    otherwise); any other value is shown inert like data."""
    url = str(url)
    return f"<{url}>" if _SAFE_URL.fullmatch(url) and redact_text(url) == url else inline(url)


def inert(value):
    """A structure read from a run's record (dicts, lists, strings) with every string made inert,
    dict keys included; numbers, booleans and None as they are."""
    return map_strings(inline, value)


def code_block(text: str, language: str = "") -> list[str]:
    """A fenced block whose fence is longer than any run of backticks inside, so data cannot close it."""
    text = redact_text(str(text))
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return [fence + language, text, fence]


def publish(body: str) -> str:
    """The last guard on a whole published body: no comment marker, `<details>` balanced."""
    body = body.replace(MARKER, "&lt;!-- runner:comment")
    depth, out, last = 0, [], 0
    for match in _DETAILS.finditer(body):
        out.append(body[last:match.start()])
        closing = match.group().startswith("</")
        if closing and depth == 0:
            out.append(match.group().replace("<", "&lt;"))  # a close with nothing open: shown, not obeyed
        else:
            depth += -1 if closing else 1
            out.append(match.group())
        last = match.end()
    out.append(body[last:])
    body = "".join(out)
    if depth > 0:
        body = body.rstrip("\n") + "\n" + "\n</details>" * depth + "\n"
    return body


# What GitHub takes: a comment of at most 65,536 characters, a step's job summary of at most 1 MiB.
GITHUB_COMMENT_LIMIT = 65_536
COMMENT_LIMIT = 60_000  # what a summary aims at: room left for the action's notes, footer and marker
SUMMARY_LIMIT = 1_000_000  # bytes of one step's job summary
FULL_REPORT = "the run folder's report.md (uploaded with the workflow run's artifact)"
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")


def length(text: str) -> int:
    """A text's length as GitHub counts it, at most: UTF-16 code units (a character beyond U+FFFF is two)."""
    return len(text.encode("utf-16-le")) // 2


def size_in_bytes(text: str) -> int:
    return len(text.encode("utf-8"))


def fit(body: str, limit: int, size=length, unit: str = "characters") -> str:
    """`body` when it is within `limit` (as `size` measures it); else cut at a line, with any code fence and
    `<details>` left open closed, and a note that says where the whole report is."""
    if size(body) <= limit:
        return body
    note = f"> Cut short here: the whole text is longer than GitHub takes ({limit:,} {unit}); see {FULL_REPORT}."
    budget = max(0, limit - size(note) - 1024)  # room for the closing lines
    kept, used = [], 0
    for line in body.split("\n"):
        cost = size(line) + 1
        if used + cost > budget:
            part = line[: max(0, budget - used)]
            while part and size(part) + 1 > budget - used:
                part = part[: len(part) * 9 // 10]
            kept.append(part)
            break
        kept.append(line)
        used += cost
    return "\n".join(kept + _closers(kept) + ["", note, ""])


def _closers(lines: list[str]) -> list[str]:
    """The lines that close what `lines` left open: a code fence, then every open <details>."""
    fence, depth = None, 0
    for line in lines:
        found = _FENCE.match(line)
        if fence is None and found:
            fence = found.group(1)
        elif fence is not None and line.strip() and set(line.strip()) == {fence[0]} and len(line.strip()) >= len(fence):
            fence = None
        elif fence is None:
            for tag in _DETAILS.finditer(line):
                depth = max(0, depth + (-1 if tag.group().startswith("</") else 1))
    return ([fence] if fence else []) + ["", *(["</details>"] * depth)]


def without_examples(results: dict) -> dict:
    """report.examples: false: a run's results (RunResult as a dict) with every quoted text replaced
    by "…"; counts, labels and row numbers stay."""
    results = dict(results)
    if results.get("data_checks"):
        results["data_checks"] = _hide_checks(results["data_checks"])
    if isinstance(results.get("data_summary"), dict) and results["data_summary"].get("checks"):
        results["data_summary"] = {**results["data_summary"], "checks": _hide_checks(results["data_summary"]["checks"])}
    analysis = {}
    for split, entry in (results.get("error_analysis") or {}).items():
        analysis[split] = {**entry, "mistakes": _hide(entry.get("mistakes"))} if isinstance(entry, dict) else entry
    results["error_analysis"] = analysis
    issues = dict(results.get("label_issues") or {})
    for key in ("top", "rows"):
        if isinstance(issues.get(key), list):
            issues[key] = _hide(issues[key])
    results["label_issues"] = issues
    return results


def _hide_checks(checks: dict) -> dict:
    checks = dict(checks)
    duplicates = dict(checks.get("duplicates_in_train") or {})
    if duplicates.get("examples"):
        duplicates["examples"] = _hide(duplicates["examples"])
        checks["duplicates_in_train"] = duplicates
    checks["overlap"] = {split: {**found, "examples": _hide(found.get("examples"))} if isinstance(found, dict)
                         else found for split, found in (checks.get("overlap") or {}).items()}
    checks["lengths"] = {kind: {**found, "examples": []} if isinstance(found, dict) else found
                         for kind, found in (checks.get("lengths") or {}).items()}
    return checks


def _hide(rows) -> list:
    return [{k: ("…" if k in ("text", "text_pair") else v) for k, v in row.items()} if isinstance(row, dict) else row
            for row in rows or []]


def examples_shown(report: ReportSection | None) -> bool:
    """The spec's report.examples (true unless it says false)."""
    return report is None or report.examples is not False


def shown_result(result, examples: bool = True):
    """The RunResult as the report and card show it: every string inert, texts left out when the
    spec's report.examples is false."""
    from runner.record.result import RunResult

    values = result.to_dict()
    return RunResult.from_dict(inert(values if examples else without_examples(values)))
