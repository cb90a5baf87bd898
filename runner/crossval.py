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

import copy
import tempfile
import time
from pathlib import Path

from runner.distributed import say
from runner.errors import DataError, SpecError
from runner.recipe import Inputs, earlier_run_set_aside, now, publish, recover_earlier_run, save, train
from runner.rundir import RunDir
from runner.spec import Spec
from runner.tasks import metric_items, task_of

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


def final_spec(spec: Spec) -> Spec:
    """The spec the final model trains with: every row, no evaluation, no checkpoints, no early stopping."""
    values = copy.deepcopy(spec.values)
    values["train"].update(
        eval_strategy="no", save_strategy="no", load_best_model_at_end=False, early_stopping_patience=None
    )
    return Spec(values=values, path=spec.path, text=spec.text, positions=spec.positions)


def run_crossval(spec: Spec, overwrite: bool = False, resume: bool = False, argv=(), before_record=None) -> Path:
    """K folds, out-of-fold predictions and label issues, then the final model on all rows. Returns the run folder."""
    import sys

    from runner.doctor import check_gpu_usable
    from runner.preflight import prepare

    if resume:
        raise SpecError(
            "a cross-validation run cannot be resumed",
            "run it again with --overwrite",
            spec.where("data", "cross_validation"),
        )
    started_at, started = now(), time.perf_counter()
    argv = list(argv) or sys.argv
    check_gpu_usable(spec["train"]["device"])
    run_dir = RunDir(spec.output_dir)
    prepare(run_dir, overwrite=overwrite, resume=False)
    with run_dir.lock():
        recover_earlier_run(run_dir)
        earlier = run_dir.written_entries()
        inputs, oof = cross_validate(spec, run_dir)
        with earlier_run_set_aside(run_dir, earlier, resuming=False):
            result = train(spec, run_dir, inputs, argv, started_at)
            logits_by_split = evaluate_final(spec, inputs, result, oof)
            write_label_issues(run_dir, result)
            if before_record:
                before_record(run_dir, result)
            save(spec, run_dir, inputs, result, logits_by_split, started)
        cv = result.metrics["cross_validation"]
        metric = result.headline["name"]
        say(
            f"done: {cv['folds']}-fold out-of-fold {metric} = {result.headline['value']:.4f} "
            f"(folds {cv['mean'][metric]:.4f} ± {cv['std'][metric]:.4f}); run folder {run_dir.path}"
        )
    publish(spec, run_dir)
    return run_dir.path


def cross_validate(spec: Spec, run_dir: RunDir) -> tuple[Inputs, dict]:
    """Train and predict each fold; then load the final model's inputs. Nothing in the run folder changes."""
    import numpy as np
    import pandas as pd
    from transformers import set_seed

    from runner import data as data_step
    from runner import model as model_step
    from runner import train as train_step
    from runner.preflight import check_fingerprint, input_inside_run

    task, k = task_of(spec["task"]), spec["data"]["cross_validation"]["folds"]
    set_seed(spec["seed"])
    data = data_step.prepare_data(spec)
    input_inside_run(spec, data.files, run_dir)
    fingerprint = check_fingerprint(run_dir.path, spec, data.files, resuming=False, force=False)
    # the recipe's data step holds out a validation split; the folds take every row back
    rows = pd.concat([data.splits["train"], data.splits["validation"]]).sort_values(data_step.ROW, kind="stable")
    rows = rows.reset_index(drop=True)
    folds, stratified = fold_ids(
        rows["label"].tolist() if task.one_label_per_row else np.zeros(len(rows)),
        k,
        spec["seed"],
        task.one_label_per_row and spec["data"]["stratify"],
    )
    folds = np.asarray(folds)
    device = train_step.choose_device(spec["train"]["device"])
    precision = train_step.choose_precision(spec["train"]["precision"], device)
    tokenizer = model_step.load_tokenizer(spec)
    has_pair, max_length = bool(spec["data"]["text_pair_column"]), spec["model"]["max_length"]
    say(f"cross-validation: {len(rows)} rows in {k} {'stratified ' if stratified else ''}folds (seed {spec['seed']})")

    oof_logits, per_fold, fold_records = None, [], []
    with tempfile.TemporaryDirectory(prefix="runner-folds-") as scratch:
        for fold in range(k):
            fold_started = time.perf_counter()
            splits = {"train": rows[folds != fold], "validation": rows[folds == fold]}
            tokenized = model_step.tokenize_splits(splits, tokenizer, max_length, has_pair=has_pair)
            set_seed(spec["seed"])
            model = model_step.load_model(spec, data.labels, tokenizer)
            if spec["lora"]:
                model = model_step.apply_lora(model, spec)
            trainer = train_step.build_trainer(
                spec, model, tokenizer, tokenized, data.labels, Path(scratch) / f"fold-{fold}", device, precision
            )
            trainer.train()
            prediction = trainer.predict(tokenized["validation"], metric_key_prefix="fold")
            logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
            if oof_logits is None:
                oof_logits = np.zeros((len(rows),) + logits.shape[1:], dtype=np.float64)
            oof_logits[folds == fold] = logits
            metrics = task.compute_metrics(logits, prediction.label_ids, data.labels, spec["predict"]["threshold"])
            metrics["loss"] = round(float(prediction.metrics.get("fold_loss", float("nan"))), 6)
            per_fold.append(metrics)
            seconds = round(time.perf_counter() - fold_started, 3)
            fold_records.append(
                {
                    "fold": fold,
                    "rows": int((folds == fold).sum()),
                    "train_rows": int((folds != fold).sum()),
                    "seconds": seconds,
                    "global_step": trainer.state.global_step,
                    "metrics": metrics,
                }
            )
            metric = spec["train"]["metric_for_best_model"]
            say(f"fold {fold + 1}/{k}: {metric} {metrics.get(metric, float('nan')):.4f} ({seconds:.0f} s)")
            del trainer, model

    final = final_spec(spec)
    splits = {"train": rows} | ({"test": data.splits["test"]} if "test" in data.splits else {})
    tokenized = model_step.tokenize_splits(splits, tokenizer, max_length, has_pair=has_pair)
    data.summary.update(model_step.token_stats(tokenized, max_length))
    data.summary["rows"] = {name: len(frame) for name, frame in splits.items()}
    data.summary["label_distribution"] = {
        name: data_step.label_distribution(frame["label"], data.labels, task.target) for name, frame in splits.items()
    }
    data.summary["split_note"] = (
        f"{k}-fold {'stratified ' if stratified else ''}cross-validation, seed {spec['seed']}: validation metrics are "
        f"the out-of-fold predictions of every training row; the final model trained on all {len(rows)} rows"
    )
    data.splits = {"train": rows, "validation": rows} | ({"test": data.splits["test"]} if "test" in data.splits else {})
    set_seed(spec["seed"])
    model = model_step.load_model(spec, data.labels, tokenizer)
    if spec["lora"]:
        model = model_step.apply_lora(model, spec)
    trainer = train_step.build_trainer(final, model, tokenizer, tokenized, data.labels, run_dir.path, device, precision)
    inputs = Inputs(
        data=data,
        tokenized=tokenized,
        tokenizer=tokenizer,
        model=model,
        trainer=trainer,
        device=device,
        precision=precision,
        fingerprint=fingerprint,
        checkpoint=None,
    )
    mean, std = mean_and_std(per_fold)
    oof = {
        "logits": oof_logits,
        "folds": folds,
        "per_fold": per_fold,
        "records": fold_records,
        "mean": mean,
        "std": std,
        "stratified": stratified,
    }
    return inputs, oof


def evaluate_final(spec: Spec, inputs: Inputs, result, oof: dict) -> dict:
    """validation: the out-of-fold predictions; test: the final model. Returns the logits by split."""
    import numpy as np

    task, labels, threshold = task_of(spec["task"]), inputs.data.labels, spec["predict"]["threshold"]
    rows = inputs.data.splits["validation"]
    truth = np.asarray(rows["label"].tolist())
    logits_by_split = {"validation": oof["logits"]}
    metrics = task.compute_metrics(oof["logits"], truth, labels, threshold)
    sizes = np.array([r["rows"] for r in oof["records"]], dtype=float)
    losses = np.array([m.get("loss", np.nan) for m in oof["per_fold"]], dtype=float)
    metrics["loss"] = round(float((losses * sizes).sum() / sizes.sum()), 6)  # the mean loss over every row
    result.metrics["validation"] = metrics
    if task.has_labels:
        result.per_class["validation"] = task.per_class(oof["logits"], truth, labels, threshold)
    matrix = task.confusion(oof["logits"], truth, labels)
    if matrix is not None:
        result.confusion_matrix["validation"] = matrix
    if "test" in inputs.tokenized:
        prediction = inputs.trainer.predict(inputs.tokenized["test"], metric_key_prefix="test")
        logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
        result.metrics["test"] = task.compute_metrics(logits, prediction.label_ids, labels, threshold)
        result.metrics["test"]["loss"] = round(float(prediction.metrics.get("test_loss", float("nan"))), 6)
        if task.has_labels:
            result.per_class["test"] = task.per_class(logits, prediction.label_ids, labels, threshold)
        matrix = task.confusion(logits, prediction.label_ids, labels)
        if matrix is not None:
            result.confusion_matrix["test"] = matrix
        logits_by_split["test"] = logits
    metric = spec["train"]["metric_for_best_model"]
    result.metrics["headline"] = {"split": "validation", "name": metric, "value": metrics[metric]}
    k = spec["data"]["cross_validation"]["folds"]
    result.metrics["cross_validation"] = {
        "folds": k,
        "per_fold": oof["per_fold"],
        "mean": oof["mean"],
        "std": oof["std"],
    }
    result.cross_validation = {
        "folds": k,
        "seed": spec["seed"],
        "stratified": oof["stratified"],
        "per_fold": oof["records"],
        "mean": oof["mean"],
        "std": oof["std"],
        "fold_seconds": round(sum(r["seconds"] for r in oof["records"]), 3),
        "final_model": f"trained on all {len(rows)} rows for the spec's epochs/max_steps, without early stopping",
    }
    if task.one_label_per_row:
        from runner.labelissues import find_label_issues

        result.label_issues = find_label_issues(rows, truth, task.probabilities(oof["logits"]), labels)
    return logits_by_split


def write_label_issues(run_dir: RunDir, result) -> None:
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
