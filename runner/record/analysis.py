"""Markdown for what a run learned about its data and predictions: class weights, calibration and
tuned thresholds (next to the untuned figures), data checks, and error analysis. Used by the report,
the model card and the pull-request summary; everything is read from the RunResult (or its copy in
run.json), so a record can be written again without the model."""

from __future__ import annotations

from runner.record.markdown import SPLITS, number, table
from runner.record.result import RunResult
from runner.spec.tasks import THRESHOLD_METRICS, metric_display

SHOWN = 10


def _cell(text) -> str:
    """Texts come here made inert (runner.record.render): one line, markup escaped."""
    return str(text).replace("\n", " ")


def class_weight_lines(result: RunResult) -> list[str]:
    if not result.class_weights:
        return []
    return [
        "Class weights in the training loss (`train.class_weights`, from the training split): "
        + ", ".join(f"{name} {value:.3g}" for name, value in result.class_weights.items())
        + ".",
        "",
    ]


def argmax_table(metrics: dict) -> str | None:
    """Each decision metric of the run's rule next to the argmax of the raw scores (`<name>_argmax`);
    runs recorded before the rule was named keep `<name>_tuned` twins, shown the same way."""
    splits = [s for s in SPLITS if isinstance(metrics.get(s), dict)]
    rows, old = [], any(k.endswith("_tuned") for s in splits for k in metrics[s])
    for name in THRESHOLD_METRICS:
        rule, argmax = (f"{name}_tuned", name) if old else (name, f"{name}_argmax")
        if not any(argmax in metrics[s] and rule in metrics[s] for s in splits):
            continue
        cells = [metric_display(name)]
        for split in splits:
            cells += [number(metrics[split].get(rule)), number(metrics[split].get(argmax))]
        rows.append(cells)
    if not rows:
        return None
    header = ["metric"] + [f"{split} {kind}" for split in splits for kind in ("(run's rule)", "(argmax)")]
    return table(header, rows)


def rule_line(metrics: dict) -> list[str]:
    rule = (metrics.get("headline") or {}).get("rule")
    return [f"Decision rule of every figure above: **{rule}**.", ""] if rule else []


def _interval(value, interval) -> str:
    return number(value) + (f" [{interval[0]:.3f}, {interval[1]:.3f}]" if interval else "")


def calibration_lines(result: RunResult, pictures: set[str] = frozenset()) -> list[str]:
    """The report's section: the calibration asked, whether it was applied and why (with the figures),
    ECE before/after with intervals, the reliability diagram, the thresholds and the argmax figures."""
    if not (result.calibration or result.thresholds):
        return []
    out = ["## Calibration and thresholds", ""]
    calibration = result.calibration or {}
    rule = (result.metrics.get("headline") or {}).get("rule") or "argmax"
    declined = (calibration.get("thresholds") or {}).get("tuned") is False  # below the floor (validation_floor)
    if declined:
        out += [f"`predict.tune_thresholds`: **not tuned**. {calibration['thresholds']['reason']}.", ""]
    if calibration.keys() - {"floor", "thresholds", "class_prior"}:  # a calibration was asked for
        applied = calibration.get("applied", True)  # runs recorded before: the temperature was always applied
        method = calibration.get("method")
        if calibration.get("reason"):
            out += [
                f"`predict.calibration: {calibration.get('asked', method)}`: "
                f"**{'applied: ' + method if applied else 'not applied'}**. {calibration['reason']}.",
                "",
            ]
        if applied and method == "temperature":
            out += [
                f"Temperature scaling: **T = {calibration.get('temperature', 1.0):.3f}** (scores are softmax/sigmoid "
                "of logits / T; the argmax does not change).",
                "",
            ]
        elif applied and method == "vector":
            params = calibration.get("params") or {}
            out += [
                "Vector scaling: each class's logit times its scale plus its bias (the bias can undo the prior "
                "shift class weights put into the scores; the most probable class can change):",
                "",
                table(
                    ["label", "scale", "bias"],
                    [[n, f"{w:.3f}", f"{b:+.3f}"] for n, w, b in zip(result.labels, params["scale"], params["bias"])],
                ),
                "",
            ]
        checks = [["raw scores (all rows)", calibration.get("raw") or {}]]
        checks += [[f"{name}, held out (2-fold)", v] for name, v in (calibration.get("cross_fitted") or {}).items()]
        if calibration.get("fitted"):
            checks.append([f"{calibration.get('fitted_method') or method}, fitted on all rows", calibration["fitted"]])
        if len(checks) > 1:
            metric = calibration.get("metric")
            out += [
                f"How it was chosen, on the {calibration.get('rows', '?')} validation rows"
                + (f" ({metric}: of the decisions made from each, which must not drop)" if metric else "")
                + ":",
                "",
                table(
                    ["scores", "log loss", "ECE"] + ([metric] if metric else []),
                    [
                        [n, number(v.get("log_loss")), number(v.get("ece"))]
                        + ([number(v.get("decisions"))] if metric else [])
                        for n, v in checks
                    ],
                ),
                "",
            ]
        rows = [
            [
                split,
                _interval(v.get("ece"), v.get("ece_interval")),
                _interval(v.get("ece_calibrated"), v.get("ece_calibrated_interval")),
                number(v.get("log_loss")),
                number(v.get("log_loss_calibrated")),
            ]
            for split, v in (calibration.get("splits") or {}).items()
        ]
        out += [
            f"Expected calibration error in {calibration.get('bins', 15)} equal-width bins, on the decisions the "
            f"model outputs ({rule}; a row's confidence is the probability of the class it is given), with a "
            "bias-corrected bootstrap 95% interval on small splits. Validation is where the calibration was chosen, "
            "so test is the honest figure.",
            "",
            table(["split", "ECE raw", "ECE calibrated", "log loss raw", "log loss calibrated"], rows),
            "",
        ]
        if "reliability.png" in pictures:
            out += ["![Reliability diagram](reliability.png)", ""]
    from runner.record.classprior import report_lines  # predict.class_prior, after the calibration

    out += report_lines(calibration.get("class_prior"))
    if result.thresholds:
        out += [
            "Decision thresholds tuned on validation (`predict.tune_thresholds`) to maximise F1"
            + (" on the calibrated probabilities" if result.temperature or calibration.get("params") else "")
            + "; the metrics, confusion matrix, gate, `runner predict` and the predictions files use them:",
            "",
            table(["label", "threshold"], [[name, f"{value:.2f}"] for name, value in result.thresholds.items()]),
            "",
        ]
    beside = argmax_table(result.metrics)
    if beside:
        out += [f"The run's rule, {rule}, against the argmax of the raw scores:", "", beside, ""]
    return out


def data_check_lines(checks: dict) -> list[str]:
    if not checks:
        return []
    out = ["## Data checks", ""]
    warnings = checks.get("warnings") or []
    out += (
        [f"- {line}" for line in warnings]
        if warnings
        else ["No duplicates, overlaps, extreme lengths or rare classes found."]
    )
    out += [""]
    mix = {split: found for split, found in (checks.get("class_mix") or {}).items() if found.get("shift")}
    if mix:  # the shift that decides whether calibration and tuned thresholds transfer: its table
        splits = list(mix)
        labels = list(next(iter(mix.values()))["proportions"])
        rows = [[_cell(label), f"{mix[splits[0]]['proportions'][label][0]:.1%}",
                 *(f"{mix[s]['proportions'][label][1]:.1%}" for s in splits)] for label in labels]
        out += ["Class mix (share of rows). Calibration and tuned thresholds are fitted on validation, which is "
                "drawn like training; a split with another mix can score worse with them than without. "
                "Evaluate on data with the mix you will predict on; `predict.class_prior` adjusts the probabilities "
                "to a stated mix (`from_test`: the test split's).", "",
                table(["class", "training", *splits], rows), ""]
    duplicates = checks.get("duplicates_in_train") or {}
    overlap = checks.get("overlap") or {}
    rows = [["training, repeated inside", number(duplicates.get("exact")), number(duplicates.get("normalized"))]]
    rows += [
        [f"{split}, also in training", number(v.get("exact")), number(v.get("normalized"))]
        for split, v in overlap.items()
    ]
    out += [table(["rows", "exact", "normalised"], rows), ""]
    if duplicates.get("examples"):
        out += [
            table(
                ["repeated training text", "copies", "labels", "rows"],
                [
                    [_cell(e["text"]), e["copies"], ", ".join(e["labels"]), ", ".join(map(str, e["rows"]))]
                    for e in duplicates["examples"]
                ],
                "lrll",
            ),
            "",
        ]
    for split, found in overlap.items():
        if found.get("examples"):
            shown = "; ".join(f'row {e["row"]}: "{_cell(e["text"])}"' for e in found["examples"])
            out += [f"Shared with {split}: {shown}.", ""]
    lengths = checks.get("lengths") or {}
    for kind in ("short", "long"):
        found = lengths.get(kind) or {}
        if found.get("rows"):
            out += [
                f"Very {kind} training texts ({found['rows']})"
                + (": " + "; ".join(f'"{_cell(t)}"' for t in found["examples"]) if found.get("examples") else "")
                + ".",
                "",
            ]
    return out


def error_analysis_lines(analysis: dict, heading: str = "##", shown: int = SHOWN) -> list[str]:
    if not analysis:
        return []
    out = [
        f"{heading} Error analysis",
        "",
        "The final predictions, as `runner predict` gives them: "
        + (analysis.get("applied") or "the decisions the run recorded")
        + ".",
        "",
    ]
    for split in SPLITS:
        entry = analysis.get(split)
        if not entry:
            continue
        errors = entry.get("errors")
        out += [
            f"{heading}# {split}" + (f": {errors} of {entry.get('rows')} rows wrong" if errors is not None else ""),
            "",
        ]
        mistakes = entry.get("mistakes") or []
        if mistakes:
            first = mistakes[0]
            if "error" in first:
                header, cells = (
                    ["row", "text", "truth", "prediction", "error"],
                    ["row", "text", "truth", "prediction", "error"],
                )
            elif "kind" in first:
                header, cells = ["row", "text", "label", "mistake", "score"], ["row", "text", "label", "kind", "score"]
            else:
                header, cells = (
                    ["row", "text", "truth", "prediction", "score"],
                    ["row", "text", "truth", "prediction", "score"],
                )
            out += [
                "Most confident mistakes:",
                "",
                table(header, [[_cell(number(m.get(c))) for c in cells] for m in mistakes[:shown]], "rlllr"),
                "",
            ]
        pairs = entry.get("costly_pairs") or []
        if pairs and "truth" in pairs[0]:
            out += [
                "Confusions that cost the most:",
                "",
                table(
                    ["truth", "predicted", "rows", "share of truth", "share of errors"],
                    [
                        [
                            p["truth"],
                            p["prediction"],
                            p["rows"],
                            f"{p['share_of_truth']:.1%}",
                            f"{p['share_of_errors']:.1%}",
                        ]
                        for p in pairs
                    ],
                    "llrrr",
                ),
                "",
            ]
        elif pairs:
            out += [
                "Labels with the most wrong decisions:",
                "",
                table(
                    ["label", "false positives", "false negatives"],
                    [[p["label"], p["false_positives"], p["false_negatives"]] for p in pairs],
                ),
                "",
            ]
        buckets = entry.get("length_buckets") or []
        if buckets:
            names = [k for k in buckets[0] if k not in ("words", "rows")]
            out += [
                "By text length (words):",
                "",
                table(
                    ["words", "rows"] + names,
                    [[b["words"], b["rows"]] + [number(b.get(n)) for n in names] for b in buckets],
                ),
                "",
            ]
    return out


def report_sections(result: RunResult, pictures: set[str] = frozenset()) -> list[str]:
    weights = class_weight_lines(result)
    return (
        (["## Class weights", ""] + weights if weights else [])
        + calibration_lines(result, pictures)
        + error_analysis_lines(result.error_analysis)
        + data_check_lines(result.data_checks)
    )


def card_lines(result: RunResult, lora: bool) -> list[str]:
    """The model card's note on class weights, temperature and thresholds, and how pipeline() applies them."""
    out = class_weight_lines(result)
    vector = (result.calibration or {}).get("params") if (result.calibration or {}).get("method") == "vector" else None
    prior = ((result.calibration or {}).get("class_prior") or {}).get("params")  # calibration and class prior in one
    vector = prior or vector
    if not (result.temperature or result.thresholds or vector):
        return out
    where = "the snippet below" if lora else "the `How to use` snippet"
    saved = []
    if result.temperature and not prior:
        saved.append(f"`runner_temperature` = {result.temperature:.4f} (divide the logits by it before softmax)")
    if prior:
        mix = ", ".join(f"{name} {share:.1%}" for name, share in prior["class_prior"].items())
        saved.append(f"`runner_calibration` (the calibration and the adjustment to the class mix {mix}, "
                     "`predict.class_prior`, in one: multiply each label's logit by its `scale` and add its `bias`, "
                     "by label id, before softmax)")
    elif vector:
        saved.append("`runner_calibration` (vector scaling: multiply each label's logit by its `scale` and add its "
                     "`bias`, by label id, before softmax/sigmoid)")
    if result.thresholds:
        saved.append(f"`runner_thresholds` = {dict(result.thresholds)!r} (a label is predicted when its probability "
                     "is at least its threshold)")
    out += [
        "## Calibration and decision thresholds",
        "",
        "Fitted on the validation split and saved in this model's `config.json`: "
        + "; ".join(saved)
        + f". `pipeline()` does not apply them by itself: ask it for the raw scores with `top_k=None, "
        f'function_to_apply="none"` and apply them as {where} does. `runner predict` applies them.',
        "",
    ]
    if lora:
        out += ["A LoRA adapter's base config does not carry them, so here they are as numbers:", "", "```python"]
        out += [f"calibration = {vector!r}"] if vector else [f"T = {result.temperature or 1.0!r}"]
        out += [f"thresholds = {dict(result.thresholds or {})!r}", "```", ""]
    beside = argmax_table(result.metrics)
    if beside:
        out += rule_line(result.metrics) + [beside, ""]
    return out


def summary_lines(results: dict) -> list[str]:
    """The pull-request comment's details: calibration, tuned thresholds, error analysis, data warnings."""
    out = []
    recorded = results.get("calibration") or {}
    calibration = recorded.get("splits") or {}
    if recorded.get("reason"):
        out += [f"Calibration (`{recorded.get('asked')}`): {recorded['reason']}.", ""]
    if calibration and recorded.get("applied", True):
        name = recorded.get("method") or "temperature"
        if name == "temperature":
            name = f"temperature {results.get('temperature') or 1.0:.3f}"
        out += [
            f"ECE ({name}): "
            + " · ".join(
                f"{s} {number(v.get('ece'))} → {number(v.get('ece_calibrated'))}" for s, v in calibration.items()
            ),
            "",
        ]
    from runner.record.classprior import summary_line

    out += summary_line(recorded.get("class_prior"))
    if results.get("thresholds"):
        out += ["Tuned thresholds: " + ", ".join(f"{n} {t:.2f}" for n, t in results["thresholds"].items()), ""]
    warnings = (results.get("data_checks") or {}).get("warnings") or []
    if warnings:
        out += ["<details><summary>Data checks</summary>", ""] + [f"- {w}" for w in warnings] + ["", "</details>", ""]
    analysis = results.get("error_analysis") or {}
    if analysis:
        out += (
            ["<details><summary>Error analysis</summary>", ""]
            + error_analysis_lines(analysis, "####", 5)
            + ["</details>", ""]
        )
    return out
