"""Cross-validation (`data.cross_validation: {folds: K}`): a flow beside the single run of the recipe.

The rows of `data.train` are cut into K seeded folds, stratified by label when every row has one
class and every class has at least K rows. For each fold a model is trained on the other K-1 folds
(evaluated on, and early-stopped on, the fold it leaves out) and predicts that fold, so every
training row gets exactly one out-of-fold prediction. Those predictions are the run's
`validation` split: metrics.json's `validation` metrics are computed on them (every row once),
`predictions/validation.jsonl` holds them with their probabilities, and `cross_validation` holds
each fold's metrics with their mean and standard deviation. From the out-of-fold probabilities,
cleanlab's confident learning ranks the rows whose given label looks wrong (label_issues.csv).

The final model (the one saved, reported and pushed) is trained on all the rows, with the spec's
hyperparameters for `train.epochs` (or `train.max_steps`) and without early stopping or a best
checkpoint: no row is left to choose one on. Its honest estimate is the cross-validated one; a
`data.test_file` is evaluated with it. Folds train in a temporary folder: the run folder is
touched only when every fold has finished, as in the recipe.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from runner.console import say, shown, warn
from runner.errors import DataError
from runner.record.rundir import RunDir
from runner.spec.document import Spec
from runner.spec.tasks import metric_items
from runner.train import pipeline

TOP_ISSUES = 20  # rows of the label-issue list shown in the report


def fold_ids(labels, n_folds: int, seed: int, stratify: bool) -> tuple[list[int], bool]:
    """The fold (0..K-1) of each row, and whether the folds are stratified. Seeded: the same rows,
    labels and seed give the same folds."""
    import numpy as np
    from sklearn.model_selection import KFold, StratifiedKFold

    labels = np.asarray(labels)
    n = len(labels)
    if n < 2 * n_folds:
        raise DataError(
            f"only {n} training row(s): too few for {n_folds} folds",
            "lower data.cross_validation.folds, or add rows",
        )
    if stratify:
        _, counts = np.unique(labels, return_counts=True)
        stratify = bool(counts.min() >= n_folds)
    splitter = (StratifiedKFold if stratify else KFold)(n_splits=n_folds, shuffle=True, random_state=seed)
    folds = np.empty(n, dtype=int)
    for k, (_, held_out) in enumerate(splitter.split(np.zeros(n), labels if stratify else None)):
        folds[held_out] = k
    return folds.tolist(), stratify


def mean_and_std(per_fold: list[dict]) -> tuple[dict, dict]:
    import numpy as np

    names = [name for name, _ in metric_items(per_fold[0])]
    values = {name: [m[name] for m in per_fold if isinstance(m.get(name), (int, float))] for name in names}
    mean = {name: round(float(np.mean(v)), 6) for name, v in values.items() if v}
    std = {name: round(float(np.std(v, ddof=1)) if len(v) > 1 else 0.0, 6) for name, v in values.items() if v}
    return mean, std


RESUMABLE = False


def describe(spec: Spec) -> str:
    k = spec.data.cross_validation.folds
    return (
        f"{k + 1} trainings: {k} folds (out-of-fold predictions of every training row), then the final model "
        "on all rows"
    )


def final_spec(spec: Spec) -> Spec:
    """The spec the final model trains with: every row, no evaluation, no checkpoints, no early stopping."""
    return spec.replace(
        train={"eval_strategy": "no", "save_strategy": "no", "load_best_model_at_end": False,
               "early_stopping_patience": None}
    )


def load(spec: Spec, folder) -> pipeline.Inputs:
    """Train and predict each fold in a temporary folder; then build the final model's inputs. The run
    folder is untouched. The inputs carry the out-of-fold record (`out_of_fold`)."""
    import numpy as np
    import pandas as pd

    from runner.data import prepare as data_step
    from runner.data.datachecks import check_prepared
    from runner.flows.preflight import check_fingerprint, input_inside_run

    task, k = spec.task, spec.data.cross_validation.folds
    # checked below, on the rows the folds train on
    data = pipeline.load_data(spec.data, spec.predict, spec.task, labels=spec.labels, seed=spec.seed,
                              resolve=spec.resolve, where=spec.where,
                              preflight=lambda files: input_inside_run(spec, files, folder.run_dir), check=False)
    fingerprint = check_fingerprint(folder.path, spec, data.files, resuming=False, force=False)
    # the data step holds out a validation split; the folds take every row back
    rows = pd.concat([data.splits["train"], data.splits["validation"]]).sort_values(data_step.ROW, kind="stable")
    rows = rows.reset_index(drop=True)
    test = {"test": data.splits["test"]} if "test" in data.splits else {}
    every_row = {"train": data_step.label_distribution(rows["label"], data.labels, task.target)}
    checked = dataclasses.replace(data, splits={"train": rows} | test, summary={**data.summary,
                                  "label_distribution": every_row})
    checks = check_prepared(spec.predict, task, checked, spec.where)
    data = dataclasses.replace(data, summary={**data.summary, "checks": checks})
    folds, stratified = fold_ids(
        rows["label"].tolist() if task.one_label_per_row else np.zeros(len(rows)),
        k,
        spec.seed,
        task.one_label_per_row and spec.data.stratify,
    )
    folds = np.asarray(folds)
    tokenizer, hardware = pipeline.load_tokenizer(spec.model, spec.resolve, spec.where), pipeline.hardware(spec.train)
    held_out = f"; test {len(test['test'])} rows, scored by the final model" if test else ""
    say(f"cross-validation: {len(rows)} rows in {k} {'stratified ' if stratified else ''}folds (seed {spec.seed})"
        f"{held_out}")
    metric, threshold = spec.train.metric_for_best_model, spec.predict.threshold
    oof_logits, per_fold, fold_records = None, [], []
    with pipeline.scratch_folder("runner-folds-") as scratch:
        for fold in range(k):
            fold_started = time.perf_counter()
            splits = {"train": rows[folds != fold], "validation": rows[folds == fold]}
            if task.one_label_per_row:
                missing = [data.labels[i] for i in sorted(set(range(len(data.labels))) - set(splits["train"]["label"]))]
                if missing:
                    warn(f"fold {fold + 1}/{k} has no training row of class {', '.join(map(repr, missing))}: its model "
                         "cannot predict it; add rows of that class or lower data.cross_validation.folds")
            inputs = pipeline.build_inputs(
                spec.model, spec.lora, spec.train, spec.predict, task, seed=spec.seed, resolve=spec.resolve,
                where=spec.where, data=data, splits=splits, output_dir=Path(scratch) / f"fold-{fold}",
                tokenizer=tokenizer, hardware_=hardware, quiet=fold > 0,
            )
            what = f"training fold {fold + 1}/{k}"
            pipeline.fit(inputs.trainer, Path(scratch), what=what, resume_hint=folder.rerun, resumable=False)
            evaluation = pipeline.evaluate_split(
                inputs.trainer, inputs.tokenized["validation"], task, data.labels, threshold, "fold"
            )
            if oof_logits is None:
                oof_logits = np.zeros((len(rows),) + evaluation.logits.shape[1:], dtype=np.float64)
            oof_logits[folds == fold] = evaluation.logits
            per_fold.append(evaluation.metrics)
            seconds = round(time.perf_counter() - fold_started, 3)
            fold_records.append(
                {
                    "fold": fold,
                    "rows": int((folds == fold).sum()),
                    "train_rows": int((folds != fold).sum()),
                    "seconds": seconds,
                    "global_step": inputs.trainer.state.global_step,
                    "class_weights": inputs.class_weights,
                    "metrics": evaluation.metrics,
                }
            )
            say(f"fold {fold + 1}/{k}: {metric} {evaluation.metrics.get(metric, float('nan')):.4f} ({seconds:.0f} s)")
            del inputs

    splits = {"train": rows} | test
    summary = dict(data.summary)
    summary["rows"] = {name: len(frame) for name, frame in splits.items()}
    summary["label_distribution"] = {
        name: data_step.label_distribution(frame["label"], data.labels, task.target) for name, frame in splits.items()
    }
    summary["split_note"] = (
        f"{k}-fold {'stratified ' if stratified else ''}cross-validation, seed {spec.seed}: validation metrics are "
        f"the out-of-fold predictions of every training row; the final model trained on all {len(rows)} rows"
    )
    final_data = dataclasses.replace(data, splits={"train": rows, "validation": rows} | test, summary=summary)
    final = final_spec(spec)
    inputs = pipeline.build_inputs(final.model, final.lora, final.train, final.predict, final.task, seed=final.seed,
                                   resolve=final.resolve, where=final.where, data=final_data, splits=splits,
                                   output_dir=folder.path, tokenizer=tokenizer, hardware_=hardware)
    inputs.fingerprint = fingerprint
    mean, std = mean_and_std(per_fold)
    inputs.out_of_fold = {
        "logits": oof_logits,
        "folds": folds,
        "per_fold": per_fold,
        "records": fold_records,
        "mean": mean,
        "std": std,
        "stratified": stratified,
    }
    return inputs


def evaluate(spec: Spec, inputs: pipeline.Inputs, result) -> tuple[dict, dict]:
    """validation: the out-of-fold predictions; test: the final model. Returns the logits and truth by split."""
    import numpy as np

    task, labels, threshold = spec.task, inputs.data.labels, spec.predict.threshold
    oof = inputs.out_of_fold
    rows = inputs.data.splits["validation"]
    truth = np.asarray(rows["label"].tolist())
    sizes = np.array([r["rows"] for r in oof["records"]], dtype=float)
    losses = np.array([m.get("loss", np.nan) for m in oof["per_fold"]], dtype=float)
    loss = float((losses * sizes).sum() / sizes.sum())  # the mean loss over every row
    validation = pipeline.evaluation_of(oof["logits"], truth, task, labels, threshold, loss)
    pipeline.record_evaluation(result, "validation", validation)
    logits_by_split, truth_by_split = {"validation": oof["logits"]}, {"validation": truth}
    if "test" in inputs.tokenized:
        test = pipeline.evaluate_split(inputs.trainer, inputs.tokenized["test"], task, labels, threshold, "test")
        pipeline.record_evaluation(result, "test", test)
        logits_by_split["test"], truth_by_split["test"] = test.logits, test.truth
    metric = spec.train.metric_for_best_model
    result.metrics["headline"] = {"split": "validation", "name": metric, "value": validation.metrics[metric]}
    k = spec.data.cross_validation.folds
    result.metrics["cross_validation"] = {
        "folds": k,
        "per_fold": oof["per_fold"],
        "mean": oof["mean"],
        "std": oof["std"],
    }
    result.cross_validation = {
        "folds": k,
        "seed": spec.seed,
        "stratified": oof["stratified"],
        "per_fold": oof["records"],
        "mean": oof["mean"],
        "std": oof["std"],
        "fold_seconds": round(sum(r["seconds"] for r in oof["records"]), 3),
        "final_model": f"trained on all {len(rows)} rows for the spec's epochs/max_steps, without early stopping",
    }
    if task.one_label_per_row:
        from runner.evaluate.labelissues import find_label_issues
        from runner.evaluate.strategies import strategy_of

        result.label_issues = find_label_issues(rows, truth, strategy_of(task).probabilities(oof["logits"]), labels)
    return logits_by_split, truth_by_split


def done_line(result, run_dir) -> str:
    cv, metric = result.metrics["cross_validation"], result.headline["name"]
    return (
        f"done: {cv['folds']}-fold out-of-fold {metric} = {result.headline['value']:.4f} "
        f"(folds {cv['mean'][metric]:.4f} ± {cv['std'][metric]:.4f}); run folder {shown(run_dir.path)}"
    )


def write_extras(run_dir: RunDir, result) -> None:
    """label_issues.csv (every flagged row, most suspect first); run.json keeps the top rows."""
    import csv
    import io

    issues = result.label_issues
    if not issues:
        return
    buffer = io.StringIO()
    writer = csv.DictWriter(
        buffer, fieldnames=["rank", "row", "text", "given_label", "suggested_label", "score", "confident"]
    )
    writer.writeheader()
    for rank, row in enumerate(issues["rows"], 1):
        writer.writerow({"rank": rank, **row})
    from runner.files import atomic_write_text

    atomic_write_text(run_dir.label_issues_file, buffer.getvalue())
    issues["top"] = issues.pop("rows")[:TOP_ISSUES]
    issues["file"] = run_dir.label_issues_file.name
