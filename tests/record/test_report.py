"""`report.md` shows the class weights, and the training-curve panels keep honest axes (a metric
in [0, 1] on a 0-1 axis, losses from zero), so a 3-point change does not fill the panel."""

from __future__ import annotations

import pytest

from runner.record import plots
from runner.record.analysis import report_sections
from runner.record.result import RunResult


def drawn_axes(monkeypatch, log, metric):
    captured = {}
    monkeypatch.setattr(plots, "_png", lambda figure: captured.setdefault("figure", figure) and b"png")
    assert plots.training_curves_png(log, metric) == b"png"
    loss_ax, metric_ax = captured["figure"].axes[:2]
    return loss_ax.get_ylim(), metric_ax.get_ylim()


LOG = [
    {"step": 10, "epoch": 1.0, "loss": 0.52, "eval_loss": 0.50, "eval_f1_macro": 0.80, "eval_mse": 0.30},
    {"step": 20, "epoch": 2.0, "loss": 0.49, "eval_loss": 0.48, "eval_f1_macro": 0.83, "eval_mse": 0.28},
    {"step": 30, "epoch": 3.0, "loss": 0.47, "eval_loss": 0.47, "eval_f1_macro": 0.82, "eval_mse": 0.27},
]


def test_a_three_point_change_is_drawn_on_a_zero_to_one_axis(monkeypatch):
    loss, metric = drawn_axes(monkeypatch, LOG, "f1_macro")
    assert metric == pytest.approx((0.0, 1.02))
    assert loss[0] == 0.0 and loss[1] >= 0.52


def test_errors_start_at_zero_and_correlations_span_minus_one_to_one():
    assert plots.honest_limits("mse", [0.3, 0.27]) == (0.0, None)
    assert plots.honest_limits("pearson", [0.5]) == (-1.02, 1.02)
    assert plots.honest_limits("r2", [-0.4, 0.2])[0] <= -0.4
    assert plots.honest_limits("accuracy_argmax", [0.8]) == (0.0, 1.02)


def test_the_report_shows_the_class_weights():
    result = RunResult.from_dict({"labels": ["a", "b"], "class_weights": {"a": 0.625, "b": 2.5}})
    text = "\n".join(report_sections(result))
    assert "## Class weights" in text and "a 0.625, b 2.5" in text
    assert "## Class weights" not in "\n".join(report_sections(RunResult.from_dict({"labels": ["a", "b"]})))
