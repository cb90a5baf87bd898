"""Label issues from two out-of-fold views (the fine-tuned model and TF-IDF + logistic
regression), a warning when the out-of-fold model is too weak, and the `row` column documented.
The real-text measurement against the cleanlab anchor is bench/label_issues.py."""

from __future__ import annotations

import random

import numpy as np
import pandas as pd
import pytest
from conftest import WORDS, make_texts

from runner.evaluate import labelissues
from runner.record.flows import report_sections
from runner.record.result import RunResult

LABELS = ["pos", "neg", "neu"]


def flipped_frame(per_label: int = 60, share: float = 0.1, seed: int = 0):
    rng = random.Random(seed)
    texts, truth = [], []
    for k, label in enumerate(LABELS):
        texts += make_texts(label, per_label, rng)
        truth += [k] * per_label
    truth = np.array(truth)
    flipped = rng.sample(range(len(truth)), round(len(truth) * share))
    given = truth.copy()
    for i in flipped:
        given[i] = rng.choice([k for k in range(3) if k != truth[i]])
    frame = pd.DataFrame({"text": texts, "label": given, "__row__": np.arange(len(texts)) + 2})
    return frame, truth, given, set(flipped)


def model_view(truth, seed: int, confusion: float):
    """Out-of-fold probabilities of a model that knows the true class with some confusion."""
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.ones(3), size=len(truth)) * confusion
    probs[np.arange(len(truth)), truth] += 1 - confusion
    return probs / probs.sum(axis=1, keepdims=True)


def test_second_view_is_out_of_fold_and_sees_the_words():
    frame, truth, given, _ = flipped_frame()
    view = labelissues.second_view(frame["text"].tolist(), given, 3, seed=0)
    assert view.shape == (len(frame), 3) and np.allclose(view.sum(axis=1), 1.0)
    assert (view.argmax(axis=1) == truth).mean() > 0.9  # the class words carry the true class, flipped rows too
    # Out of fold: a row's own (flipped) label was not learned, so it is not what the view predicts for it.
    assert (view.argmax(axis=1) == given).mean() < 0.95


def test_flipped_rows_come_first_and_row_is_the_file_line(monkeypatch):
    frame, truth, given, flipped = flipped_frame()
    found = labelissues.find_label_issues(frame, given, model_view(truth, 1, 0.6), LABELS)
    listed = [r["row"] - 2 for r in found["rows"]]
    top = set(listed[: len(flipped)])
    assert len(top & flipped) >= 0.8 * len(flipped), (sorted(top), sorted(flipped))
    assert [r["score"] for r in found["rows"]] == sorted(r["score"] for r in found["rows"])
    assert "header is line 1" in found["row_column"] and "warning" not in found
    first = found["rows"][0]
    assert frame.loc[frame["__row__"] == first["row"], "text"].item() == first["text"]
    assert first["suggested_label"] == LABELS[truth[first["row"] - 2]]


def test_the_two_views_together_rank_better_than_a_weak_model_alone():
    frame, truth, given, flipped = flipped_frame(per_label=80, seed=3)
    weak = model_view(truth, 2, 0.95)  # a model that barely knows the classes
    k = len(flipped)
    alone = labelissues.ranking_from_probabilities(given, weak)[:k]
    view = labelissues.second_view(frame["text"].tolist(), given, 3, seed=0)
    both = labelissues.ranking_from_probabilities(given, labelissues.combine(weak, view))[:k]
    assert len(set(both) & flipped) > len(set(alone) & flipped)


def test_a_weak_out_of_fold_model_is_warned_about():
    frame, truth, given, _ = flipped_frame()
    never = model_view(truth, 1, 0.6)
    never[:, 2] = 0.0  # one class never predicted: its highest probability is 0
    found = labelissues.find_label_issues(frame, given, never / never.sum(axis=1, keepdims=True), LABELS)
    assert "never predicts neu" in found["warning"]
    flat = np.full((len(given), 3), 1 / 3) + np.random.default_rng(0).normal(0, 0.01, (len(given), 3))
    warning = labelissues.weak_model_warning(given, flat, LABELS)
    assert warning and ("weak" in warning or "never predicts" in warning)
    result = RunResult.from_dict({"label_issues": found | {"top": found["rows"][:3]}})
    report = "\n".join(report_sections(result))
    assert "**Warning:** the out-of-fold model never predicts neu" in report and "`row` is the row's place" in report


def test_text_pairs_are_both_read(monkeypatch):
    frame, truth, given, _ = flipped_frame()
    frame["text_pair"] = [w for w in np.random.default_rng(0).choice(WORDS["neu"], len(frame))]
    seen = {}
    real = labelissues.second_view

    def spy(texts, *args, **kwargs):
        seen["texts"] = texts
        return real(texts, *args, **kwargs)

    monkeypatch.setattr(labelissues, "second_view", spy)
    labelissues.find_label_issues(frame, given, model_view(truth, 1, 0.6), LABELS)
    assert seen["texts"][0] == f"{frame['text'][0]} [SEP] {frame['text_pair'][0]}"


def test_crossval_uses_this_module():
    import inspect

    from runner.flows import crossval

    assert not hasattr(crossval, "find_label_issues") or crossval.find_label_issues is labelissues.find_label_issues
    assert "from runner.evaluate.labelissues import find_label_issues" in inspect.getsource(crossval)


@pytest.mark.parametrize("classes", [2, 3])
def test_a_class_missing_from_a_fold_does_not_break_the_view(classes):
    given = np.array([0] * 30 + [1] * 30 + ([2] if classes == 3 else []))
    texts = [f"text {i} {'great' if g == 0 else 'awful'}" for i, g in enumerate(given)]
    view = labelissues.second_view(texts, given, classes, seed=0)
    assert np.isfinite(view).all() and np.allclose(view.sum(axis=1), 1.0)
