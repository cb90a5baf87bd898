"""The record's words on `predict.class_prior` (runner.evaluate.classprior adjusts the probabilities and records
the adjustment in run.json's calibration.class_prior): the report's paragraph and table, the comment's line."""

from __future__ import annotations

from runner.evaluate.classprior import FROM_TEST, mix_text
from runner.record.markdown import number, table


def report_lines(recorded: dict) -> list[str]:
    """The report's paragraph and table on the adjustment (run.json's calibration.class_prior); [] without one."""
    if not (recorded or {}).get("applied"):
        return []
    asked = recorded["asked"]
    stated = "`from_test`: the test split's mix" if asked == FROM_TEST else "the mix stated in the spec"
    splits = recorded.get("splits") or {}
    calibrated = any("ece_calibrated" in v for v in splits.values())
    rows = [[split, number(v.get("ece"))] + ([number(v.get("ece_calibrated"))] if calibrated else [])
            + [number(v.get("ece_prior_adjusted")), number(v.get("log_loss")), number(v.get("log_loss_prior_adjusted"))]
            for split, v in splits.items()]
    header = ["split", "ECE raw"] + (["ECE calibrated"] if calibrated else []) + [
        "ECE prior-adjusted", "log loss raw", "log loss prior-adjusted"]
    return [
        f"`predict.class_prior`: **applied**, after {recorded.get('after', 'calibration')}. The probabilities are "
        f"adjusted from the training split's class mix ({mix_text(recorded['training'])}) to {stated} "
        f"({mix_text(recorded['target'])}): p'(y|x) is proportional to p(y|x) * target(y) / training(y). This "
        "holds when only the class mix differs between training and the rows predicted on (the texts of each class "
        "look alike in both); the decisions are the argmax of the adjusted probabilities, and `runner predict` "
        "applies the same numbers. A split drawn like training (validation) scores worse with it by design: read "
        "the split with the stated mix.",
        "",
        table(header, rows),
        "",
    ]


def summary_line(recorded: dict) -> list[str]:
    """The pull-request comment's line on the adjustment; [] without one."""
    if not (recorded or {}).get("applied"):
        return []
    splits = recorded.get("splits") or {}
    shown = " · ".join(f"{s} {v['ece']:.4f} → {v['ece_prior_adjusted']:.4f}" for s, v in splits.items())
    return [f"Class prior adjusted to {mix_text(recorded['target'])} (training: {mix_text(recorded['training'])}); "
            f"ECE {shown}.", ""]
