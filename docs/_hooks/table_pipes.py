"""MkDocs hook: a `\\|` in a table cell is a `|`, also inside a code span, as on GitHub.

The pages (and spec/reference.md, generated for GitHub) write a pipe inside a table cell as `\\|`.
GitHub's tables take the backslash away everywhere in the cell; Python-Markdown keeps it inside code
spans, so the site would show `logs\\|status`. This puts the cells right after rendering.
"""

from __future__ import annotations

import re

_CELL = re.compile(r"(<t[dh][^>]*>)(.*?)(</t[dh]>)", re.DOTALL)


def on_page_content(html: str, **_: object) -> str:
    return _CELL.sub(lambda m: m.group(1) + m.group(2).replace("\\|", "|") + m.group(3), html)
