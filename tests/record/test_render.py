"""One renderer for what is published: hostile texts, labels and names (markup, mentions,
comment markers, secrets, control characters) written into a run's record come out of the real
chain (summary_markdown -> comment_on_pull_request / write_step_summary) inert, also as GitHub's own
renderer (cmark-gfm, through cmarkgfm) turns it into HTML; report.examples: false leaves the raw texts
out of everything published."""

from __future__ import annotations

import json
import re
from pathlib import Path

import cmarkgfm
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.github_fake import FakeGitHub, actions_env

from runner.publish import github
from runner.record.render import inline, publish
from runner.record.summary import summary_markdown

SECRETS = ["AKIAIOSFODNN7EXAMPLE", "hf_" + "Ab1" * 10, "ghp_" + "x9Z" * 12, "password=hunter2secret",
           "xoxb-123456789012-1234567890123-abcdefghijklmnopqrstuvwx", 'api_key = "sk_live_4eC39HqLyjWDarjtT1zdp7dc"']
FRAGMENTS = [
    "<img src=x onerror=alert(1)>", "</details>", "<details>", "<summary>x</summary>", "@octocat", "@org/team",
    "#123", "<!-- runner:comment key=other.yaml -->", "<!--", "-->", "```", "`", "|", "\\", "[link](http://x.test)",
    "![img](http://x.test/a.png)", "<script>", "&lt;", "\n", "\r", "\x00", "\x1b[31m", "\u202e", "\u2028", "# Title",
    "> quote", "*", "_", "~~", "<sub>", "</sub>", "https://evil.example/login", "www.evil.example", "HTTP://x.test",
    "1https://evil.example", "_www.evil.example", "ßftp://x.test", "<https://x.test>", "[r]: http://x.test", "9",
    "GH-4242", "gh-7", "see GH-", "-1", "**bold**", "__init__", "_it_", "~~strike~~", "~x~", ":smile:", ":+1:", "a:",
    *SECRETS,
]
hostile = st.lists(st.sampled_from(FRAGMENTS) | st.text(max_size=4), min_size=1, max_size=6).map("".join)
OURS = re.compile(r"</?(details|summary|sub)>")


def write_run(folder: Path, name: str, labels: list[str], texts: list[str], examples: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    a, b = labels[0], labels[1]
    metrics = {"validation": {"accuracy": 0.5, "f1_macro": 0.4}, "headline": {"split": "validation", "name": "f1_macro",
                                                                              "value": 0.4}}
    per_class = {label: {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 3} for label in labels}
    results = {
        "task": "single_label_classification",
        "labels": labels,
        "per_class": {"validation": per_class},
        "thresholds": {label: 0.5 for label in labels},
        "data_summary": {"rows": {"train": 10, "validation": 4}},
        "data_checks": {"warnings": [f"class '{a}' has 1 training row(s)"],
                        "duplicates_in_train": {"exact": 1, "normalized": 1,
                                                "examples": [{"text": texts[0], "copies": 2, "labels": [a, b],
                                                              "rows": [1, 2]}]}},
        "error_analysis": {"validation": {
            "errors": 1, "rows": 4,
            "mistakes": [{"row": i, "text": text, "truth": a, "prediction": b, "score": 0.9}
                         for i, text in enumerate(texts)],
            "costly_pairs": [{"truth": a, "prediction": b, "rows": 1, "share_of_truth": 0.5, "share_of_errors": 1.0}],
        }},
    }
    if not examples:
        from runner.record.render import without_examples

        results = without_examples(results)
    (folder / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
    (folder / "run.json").write_text(json.dumps({"name": name, "status": "finished", "results": results,
                                                 "spec": {"task": "single_label_classification"}}), encoding="utf-8")
    return folder


def assert_inert(body: str, planted: list[str]) -> None:
    assert "<!-- runner:comment" not in body
    for tag in re.findall(r"<[^\s<]{0,20}", body):  # every tag left is one of the renderer's own
        assert OURS.match(tag + ">") or OURS.match(tag), (tag, body)
    depth = 0
    for tag in re.findall(r"</?details>", body):
        depth += -1 if tag.startswith("</") else 1
        assert depth >= 0, body
    assert depth == 0, body
    assert not re.search(r"(?<![\w\u200d])@[A-Za-z0-9]", body), body  # a mention: @ then a name, no joiner
    assert not re.search(r"(?<![\w\u200d])#[0-9]", body), body
    assert not re.search(r"(?i)gh-[0-9]", body), body  # GitHub links GH-123 (any case) to issue 123
    assert not re.search(r"(?<!\\)\]\(", body), body  # no link or image made from data
    assert not re.search(r"(?i)[a-z]://|www\.", body), body  # nor a bare URL GitHub links
    html = cmarkgfm.github_flavored_markdown_to_html(body)  # as GitHub renders it: no link, image or data's HTML
    assert not re.search(r"<(a|img|script|iframe|style|input|form)\b", html), html
    assert not re.search(r"<(em|del)>", html), html  # data's *emphasis*, _emphasis_ and ~~strikethrough~~ show as typed
    assert not re.search(r":[\w+-]+:", body), body  # nor an :emoji: shortcode, which GitHub replaces after rendering
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f\u2028\u202e]", body), repr(body)
    for secret in SECRETS:
        for part in re.findall(r"[A-Za-z0-9_]{12,}", secret):
            assert part not in body, (part, body)
    for line in body.splitlines():  # a table row keeps the header's number of cells
        if line.startswith("| "):
            assert len(re.findall(r"(?<!\\)\|", line)) >= 2


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=hostile, first=hostile, second=hostile, texts=st.lists(hostile, min_size=1, max_size=3))
def test_hostile_record_is_inert_in_the_comment_and_the_summary(tmp_path_factory, name, first, second, texts):
    folder = tmp_path_factory.mktemp("hostile")
    labels = [first, second + "\u2063"] if first == second else [first, second]
    run = write_run(folder / "run", name, labels, texts)
    body = summary_markdown(run)
    env = actions_env(folder, "http://127.0.0.1:9")
    with FakeGitHub() as fake:
        env["GITHUB_API_URL"] = fake.url
        assert github.comment_on_pull_request(body, "specs/a.yaml", env)["action"] == "created"
        posted = fake.comments[7][0]["body"]
    marker = github.comment_marker("specs/a.yaml")
    assert posted.startswith(marker + "\n") and posted.count("<!-- runner:comment") == 1
    assert_inert(posted[len(marker):], [name, *labels, *texts])
    github.write_step_summary(body, env)
    assert_inert(Path(env["GITHUB_STEP_SUMMARY"]).read_text(encoding="utf-8"), [name, *labels, *texts])


def test_another_specs_marker_in_a_text_cannot_take_over_its_comment(tmp_path):
    """The data of spec a holds spec b's marker: b's next run must update b's comment, not a's."""
    other = github.comment_marker("specs/b.yaml")
    run = write_run(tmp_path / "run", "a", ["pos", "neg"], [f"nice {other} text"])
    env = actions_env(tmp_path, "http://127.0.0.1:9")
    with FakeGitHub() as fake:
        env["GITHUB_API_URL"] = fake.url
        github.comment_on_pull_request(summary_markdown(run), "specs/a.yaml", env)
        result = github.comment_on_pull_request("b's metrics", "specs/b.yaml", env)
        assert result["action"] == "created"
        assert other not in fake.comments[7][0]["body"]


def test_failure_comment_cannot_carry_a_marker_or_unbalanced_details(tmp_path):
    from runner.publish.action import failure_body

    body = failure_body("s.yaml", "run", 2, "error: bad label '</details><!-- runner:comment key=x -->' @octocat\n"
                                            "hint: fix it")
    env = actions_env(tmp_path, "http://127.0.0.1:9")
    with FakeGitHub() as fake:
        env["GITHUB_API_URL"] = fake.url
        github.comment_on_pull_request(body, "s.yaml", env)
        posted = fake.comments[7][0]["body"]
    assert posted.count("<!-- runner:comment") == 1
    assert "</details>" not in posted


@pytest.mark.parametrize("text, kept, gone", [
    ("my AWS key AKIAIOSFODNN7EXAMPLE ok", "my AWS key", "AKIAIOSFODNN7EXAMPLE"),
    ("login password=hunter2secret now", "login", "hunter2secret"),
    ("db postgres://user:pa55word@host/db", "host/db", "pa55word"),
    ("-----BEGIN RSA PRIVATE KEY----- MIIEpAIBAAKCAQEA", "redacted", "MIIEpAIBAAKCAQEA"),
    ("hi @octocat see #12 <b>x</b>", "octocat", "<b>"),
    ("log in at https://evil.example/login", "evil.example/login", "https://evil"),  # shown, never a link
    ("or www.evil.example", "evil.example", "www.evil"),
])
def test_inline_redacts_and_escapes(text, kept, gone):
    shown = inline(text)
    assert kept in shown and gone not in shown and "\n" not in shown


@settings(max_examples=300, deadline=None)
@given(text=hostile)
def test_inline_shows_any_text_as_it_was_written(text):
    """Rendered as GitHub renders it (cmark-gfm), an inline text is one paragraph of exactly its own characters
    (secrets redacted, control characters as escapes, joiners aside): no emphasis, strikethrough, link, code or
    HTML made of it, and no `:name:` left for GitHub's emoji pass."""
    import html as html_module

    from runner.record.render import ZWJ, _visible
    from runner.redact import redact_text

    shown = inline(text)
    rendered = cmarkgfm.github_flavored_markdown_to_html(f"x {shown} x")
    inner = rendered.removeprefix("<p>").removesuffix("</p>\n")
    assert "<" not in inner, (text, rendered)  # one paragraph, no element inside
    assert not re.search(r":[\w+-]+:", html_module.unescape(inner)), (text, rendered)
    expected = _visible(redact_text(text)).replace(ZWJ, "")
    assert html_module.unescape(inner).replace(ZWJ, "") == f"x {expected} x", (text, shown, rendered)


@pytest.mark.parametrize("text, shown", [
    ("**bold**", "\\*\\*bold\\*\\*"), ("_it_", "\\_it\\_"), ("~~strike~~", "\\~\\~strike\\~\\~"),
    (":rocket: go", ":\u200drocket: go"), ("__init__", "\\_\\_init\\_\\_"),
    ("f1_macro", "f1_macro"), ("train_data.csv", "train_data.csv"),  # snake_case makes no emphasis: left as written
])
def test_emphasis_and_emoji_shortcodes_are_escaped(text, shown):
    assert inline(text) == shown


def posted_comment(run, tmp_path) -> str:
    """The pull-request comment the run's summary posts, as the fake GitHub received it."""
    env = actions_env(tmp_path, "http://127.0.0.1:9")
    with FakeGitHub() as fake:
        env["GITHUB_API_URL"] = fake.url
        github.comment_on_pull_request(summary_markdown(run), "specs/a.yaml", env)
        return fake.comments[7][0]["body"]


def test_a_hostile_spec_name_and_labels_show_literally_in_the_posted_comment(tmp_path):
    run = write_run(tmp_path / "run", "~~old~~ :rocket: **v2**", ["**bold**", "_it_"], ["a :smile: text"])
    posted = posted_comment(run, tmp_path)
    html = cmarkgfm.github_flavored_markdown_to_html(posted).replace("\u200d", "")
    assert "<h3>runner: ~~old~~ :rocket: **v2**" in html  # the title as the spec named it
    assert "<td>**bold**</td>" in html and "<td>_it_</td>" in html and "a :smile: text" in html
    assert not re.search(r"<(em|del)>", html) and "<strong>bold" not in html


@pytest.mark.parametrize("url, shown", [
    ("https://huggingface.co/acme/tiny", "<https://huggingface.co/acme/tiny>"),  # what `runner push` writes: a link
    ("https://huggingface.co/acme/tiny/discussions/3", "<https://huggingface.co/acme/tiny/discussions/3>"),
    ("https://evil.example/x)<img src=x>", None),  # anything else in run.json's hub URL: shown inert
    ("https://u:pa55word@host/x", None),
    ("javascript:alert(1)", None),
])
def test_the_hub_link_is_a_link_only_when_it_is_a_plain_address(url, shown):
    from runner.record.render import link

    if shown:
        assert link(url) == shown
    else:
        assert link(url) == inline(url) and "<img" not in link(url) and "pa55word" not in link(url)


def test_publish_balances_details_and_drops_markers():
    body = publish("a\n<details><summary>x</summary>\n\n</details>\n</details>\n<details>\n"
                   "<!-- runner:comment key=x -->")
    assert body.count("<details>") == body.count("</details>") == 2 and "<!-- runner:comment" not in body


def test_report_examples_false_leaves_texts_out_of_every_published_file(tmp_path, tiny_model):
    from conftest import labelled_rows, run_cli, tiny_spec_text, write_csv, write_spec

    rows = labelled_rows(per_label=25)
    rows += [dict(rows[0]), dict(rows[1])]  # duplicates: the data checks quote them
    write_csv(tmp_path / "data" / "train.csv", rows)
    spec = write_spec(tmp_path, tiny_spec_text(tiny_model, extra="report:\n  examples: false\n"))
    result = run_cli("run", str(spec), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    texts = {row["text"] for row in rows}
    summary = run_cli("report", "run", cwd=tmp_path).stdout
    for published in ("report.md", "run.json", "model/README.md"):
        content = (tmp_path / "run" / published).read_text(encoding="utf-8")
        assert not [t for t in texts if t in content], published
    assert not [t for t in texts if t in summary]
    assert run_cli("validate", "run/spec.yaml", cwd=tmp_path).returncode == 0


@pytest.mark.parametrize("text", ["fixed in GH-4242", "see gh-7 and Gh-12", "label GH-1", "x_GH-99"])
def test_github_style_references_are_broken_like_hash_references(text, tmp_path):
    shown = inline(text)
    assert not re.search(r"(?i)gh-[0-9]", shown) and "\u200d-" in shown
    assert shown.replace("\u200d", "") == text  # shown as it was, only not linked


def test_a_label_gh_reference_is_no_issue_link_in_the_comment(tmp_path):
    run = write_run(tmp_path / "run", "GH-4242 fix", ["GH-4242", "gh-7"], ["text about GH-12"])
    posted = posted_comment(run, tmp_path)
    assert "GH\u200d-4242" in posted and "gh\u200d-7" in posted
    assert not re.search(r"(?i)gh-[0-9]", posted), posted


# --- the comment and the job summary stay within what GitHub takes -------------------------------------

LONG_LABELS = [f"class {i:02d} " + "a very long and descriptive label name that keeps going " * 5 for i in range(60)]


def write_wide_run(folder: Path, labels: list[str]) -> Path:
    """A finished run's record with a per-class table of every label on validation and test."""
    folder.mkdir(parents=True, exist_ok=True)
    metrics = {split: {"accuracy": 0.5, "f1_macro": 0.4} for split in ("validation", "test")}
    metrics["headline"] = {"split": "validation", "name": "f1_macro", "value": 0.4}
    per_class = {split: {label: {"precision": 0.5, "recall": 0.5, "f1": round(0.99 - i / 100, 2), "support": 3}
                         for i, label in enumerate(labels)} for split in ("validation", "test")}
    results = {"task": "single_label_classification", "labels": labels, "per_class": per_class,
               "thresholds": {label: 0.5 for label in labels},
               "error_analysis": {"validation": {"errors": 1, "rows": 4, "costly_pairs": [
                   {"truth": a, "prediction": b, "rows": 1, "share_of_truth": 0.5, "share_of_errors": 1.0}
                   for a, b in zip(labels, labels[1:])]}}}
    (folder / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
    (folder / "run.json").write_text(json.dumps({"name": "wide", "status": "finished", "results": results}),
                                     encoding="utf-8")
    return folder


def test_sixty_long_labels_make_a_comment_github_takes(tmp_path):
    from runner.record.render import COMMENT_LIMIT, GITHUB_COMMENT_LIMIT

    run = write_wide_run(tmp_path / "run", LONG_LABELS)
    whole = summary_markdown(run, limit=10**9)
    assert len(whole) > GITHUB_COMMENT_LIMIT  # the hostile pass's comment, which GitHub refused
    body = summary_markdown(run)
    assert len(body) <= COMMENT_LIMIT
    assert body.startswith("### runner: wide · f1_macro 0.4000 (validation)")  # the headline stays
    assert "| **f1_macro** | 0.4000 |" in body and "| accuracy | 0.5000 |" in body  # and the metrics tables
    notes = re.findall(r"(\d+) of 60 classes left out here.*the whole table is in the run folder's report\.md", body)
    assert len(notes) == 2 and int(notes[0]) > 0
    shown = int(60 - int(notes[0]))
    for label in LONG_LABELS[-shown:]:  # the classes with the lowest F1 are the ones kept
        assert inline(label) in body
    assert inline(LONG_LABELS[0]) not in body.split("Per-class metrics")[1].split("</details>")[0]
    assert body.count("<details>") == body.count("</details>")
    env = actions_env(tmp_path, "http://127.0.0.1:9")
    with FakeGitHub() as fake:  # it answers 422 to a body over 65,536 characters, as GitHub does
        env["GITHUB_API_URL"] = fake.url
        assert github.comment_on_pull_request(body, "specs/a.yaml", env)["action"] == "created"


def test_any_body_is_cut_to_what_github_takes_with_its_blocks_closed(tmp_path):
    from runner.record.render import fit

    rows = "\n".join(f"| row {i} | {'x' * 200} |" for i in range(600))
    body = f"### title\n\n<details><summary>a</summary>\n\n```\n{rows}\n"
    env = actions_env(tmp_path, "http://127.0.0.1:9")
    with FakeGitHub() as fake:
        env["GITHUB_API_URL"] = fake.url
        assert github.comment_on_pull_request(body, "specs/a.yaml", env)["action"] == "created"
        posted = fake.comments[7][0]["body"]
    assert 60_000 < len(posted) <= 65_536 and posted.startswith("<!-- runner:comment key=specs/a.yaml -->\n### title")
    assert posted.rstrip().endswith("report.md (uploaded with the workflow run's artifact).")
    assert posted.count("```") == 2 and posted.count("<details>") == posted.count("</details>") == 1
    assert fit("short", 10) == "short"
    astral = "😀" * 40_000  # two UTF-16 units each: GitHub's count, not Python's
    assert len(fit(astral, 60_000).encode("utf-16-le")) // 2 <= 60_000


def test_the_job_summary_stays_under_one_mebibyte(tmp_path, capsys):
    from runner.record.render import SUMMARY_LIMIT

    env = actions_env(tmp_path, "http://127.0.0.1:9")
    summary = Path(env["GITHUB_STEP_SUMMARY"])
    summary.write_text("x" * 900_000 + "\n", encoding="utf-8")  # earlier specs of the same step
    body = "### runner: big\n\n" + "\n".join(f"| {i} | {'é' * 300} |" for i in range(1000))
    assert github.write_step_summary(body, env)
    written = summary.read_bytes()
    assert SUMMARY_LIMIT - 4096 < len(written) <= SUMMARY_LIMIT
    assert b"### runner: big" in written and b"Cut short here" in written
    github.write_step_summary("### runner: next", env)  # no room left: a notice, nothing appended
    assert summary.read_bytes() == written
    assert "job summary is full" in capsys.readouterr().err


def test_a_real_run_with_sixty_long_labels_reports_within_the_limit(tmp_path, tiny_model):
    import random

    from conftest import FILLER, run_cli, tiny_spec_text, write_csv, write_spec

    rng = random.Random(0)
    rows = [{"text": " ".join(rng.sample(FILLER, 5)), "label": label.strip()} for label in LONG_LABELS
            for _ in range(5)]
    rng.shuffle(rows)
    write_csv(tmp_path / "data" / "train.csv", rows)
    write_csv(tmp_path / "data" / "test.csv", rows)
    spec = write_spec(tmp_path, tiny_spec_text(tiny_model, extra="").replace(
        "  train: data/train.csv\n", "  train: data/train.csv\n  test_file: data/test.csv\n"))
    result = run_cli("run", str(spec), cwd=tmp_path, env={"OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    report = run_cli("report", "run", "--format", "markdown", cwd=tmp_path)
    assert report.returncode == 0, report.stderr[-2000:]
    assert len(report.stdout) <= 60_000 and "classes left out here" in report.stdout
    full = (tmp_path / "run" / "report.md").read_text(encoding="utf-8")
    assert all(inline(label.strip()) in full for label in LONG_LABELS)  # report.md keeps the whole table
