"""report.md and its pictures: metrics, per-class results, data summary, timing."""

from __future__ import annotations

from runner.files import atomic_write_bytes, atomic_write_text, remove
from runner.record.analysis import report_sections as analysis_sections
from runner.record.flows import report_sections
from runner.record.markdown import SPLITS, duration, headline_text, metrics_table, number, per_class_table, table
from runner.record.render import examples_shown, inline, publish, shown_result
from runner.record.result import RunResult
from runner.record.rundir import RunDir
from runner.spec.sections import LoraSection, ModelSection, ReportSection
from runner.spec.tasks import Task, lower_is_better, task_of


def write_report(run_dir: RunDir, result: RunResult, *, name: str, task: Task, model: ModelSection,
                 lora: LoraSection | None, report: ReportSection, seed: int, metric_for_best_model: str) -> None:
    """report.md with metrics, per-class results, data summary, timing and the pictures. The spec's name, task,
    model, lora and report sections and seed go into the text; its train.metric_for_best_model picks the curve
    drawn when the result names no headline metric."""
    from runner.record import plots

    pictures = {"confusion_matrix.png": None}
    matrices = result.confusion_matrix
    if task_of(result.task).one_label_per_row and matrices:
        pictures["confusion_matrix.png"] = plots.confusion_matrix_png(
            {s: matrices[s] for s in SPLITS if matrices.get(s)}, result.labels
        )
    metric = result.headline.get("name") or metric_for_best_model
    pictures["training_curves.png"] = plots.training_curves_png(result.log_history, metric, lower_is_better(metric))
    pictures["reliability.png"] = plots.reliability_png(result.calibration) if result.calibration else None
    for picture, png in pictures.items():
        if png:
            atomic_write_bytes(run_dir / picture, png)
        else:
            remove(run_dir / picture)  # a picture left from an earlier run would mislead
    drawn = {picture for picture, png in pictures.items() if png}
    atomic_write_text(run_dir.report_file, render_report(result, drawn, name=name, task=task, model=model, lora=lora,
                                                         report=report, seed=seed))


def render_report(result: RunResult, pictures: set[str], *, name: str, task: Task, model: ModelSection,
                  lora: LoraSection | None, report: ReportSection, seed: int) -> str:
    result = shown_result(result, examples_shown(report))  # data-derived strings inert; texts out when asked
    metrics = result.metrics
    status = (
        "finished" if result.status == "recording" else result.status
    )  # the report is written just before the finish
    out = [f"# Run report: {inline(name)}", ""]
    facts = [f"Status: **{status}**", f"task: {task_of(result.task or task.name).display}"]
    if headline_text(metrics):
        facts.append(f"headline: {headline_text(metrics)}")
    out += [" · ".join(facts), ""]
    if status != "finished":
        out += ["> **This run did not finish.** The metrics and model are those saved when it stopped.", ""]

    out += ["## Metrics", "", metrics_table(metrics, metrics.get("headline")), ""]
    for split, per_class in result.per_class.items():
        if per_class:
            out += [f"### Per class ({split})", "", per_class_table(per_class), ""]
    if "confusion_matrix.png" in pictures:
        out += [
            "## Confusion matrix",
            "",
            "![Confusion matrix](confusion_matrix.png)",
            "",
            "Rows are the true label, columns the predicted label; a cell's number is its count and its colour "
            "the share of the true label's rows.",
            "",
        ]
    out += ["## Training curves", ""]
    if "training_curves.png" in pictures:
        out += ["![Training curves](training_curves.png)", ""]
    else:
        out += ["Nothing was logged during training, so there are no curves.", ""]

    out += report_sections(result)  # cross-validation, label issues, search
    out += analysis_sections(result, pictures)  # calibration, thresholds, error analysis, data checks
    out += _data_section(result.data_summary, result.labels)
    out += _training_section(result, model, lora, seed)
    out += [
        "## Files",
        "",
        "- `model/`: the trained "
        + ("LoRA adapter" if result.model.get("kind") == "lora" else "model")
        + " and tokenizer; its card is `model/README.md`",
        "- `metrics.json`: the metrics above; `spec.yaml`: the resolved spec",
        "- `run.json`: the manifest (spec and data hashes, base model revision, package versions, git commit); "
        "`runner reproduce` re-runs from it",
        "",
    ]
    return publish("\n".join(out))


def _data_section(summary: dict, labels: list[str]) -> list[str]:
    out = ["## Data", ""]
    rows = summary.get("rows") or {}
    if rows:
        out += [table(["split", "rows"], [[split, number(n)] for split, n in rows.items()]), ""]
    if summary.get("split_note"):
        out += [f"Split: {summary['split_note']}.", ""]
    distribution = summary.get("label_distribution") or {}
    if distribution:
        splits = list(distribution)
        names = list(dict.fromkeys(list(labels) + [n for counts in distribution.values() for n in counts]))
        out += [
            "Label distribution:",
            "",
            table(
                ["label"] + splits, [[name] + [number(distribution[s].get(name, 0)) for s in splits] for name in names]
            ),
            "",
        ]
    lengths = summary.get("token_lengths") or {}
    if lengths:
        out += ["Token lengths: " + ", ".join(f"{key} {number(value)}" for key, value in lengths.items()) + ".", ""]
    truncated = summary.get("truncated") or {}
    if truncated:
        fraction = truncated.get("fraction") or 0.0
        rows_cut = truncated.get("rows", 0)
        out += [
            f"Truncated: {number(rows_cut)} {'row was' if rows_cut == 1 else 'rows were'} ({fraction:.1%}) longer than "
            f"max_length {truncated.get('max_length', '?')} tokens.",
            "",
        ]
    dropped = summary.get("dropped") or []
    if dropped:
        out += [
            "Rows dropped:",
            "",
            table(
                ["split", "reason", "rows"],
                [[d.get("split", ""), d.get("reason", ""), number(d.get("rows"))] for d in dropped],
                "llr",
            ),
            "",
        ]
    elif summary:
        out += ["No rows were dropped.", ""]
    return out


def _training_section(result: RunResult, spec_model: ModelSection, lora: LoraSection | None, seed: int) -> list[str]:
    model, timing = result.model, result.timing  # the run's record of the base model; spec_model: the spec's
    rows = [
        [
            "base model",
            f"`{model.get('name') or inline(spec_model.name)}`"
            + (f" (revision `{model['revision'][:12]}`)" if model.get("revision") else ""),
        ]
    ]
    if model.get("architecture"):
        rows.append(["architecture", model["architecture"]])
    rows.append(
        [
            "fine-tuning",
            f"LoRA (r={lora.r}, alpha={lora.alpha})" if model.get("kind") == "lora" or lora else "full",
        ]
    )
    if model.get("trainable_params") and model.get("total_params"):
        share = model["trainable_params"] / model["total_params"]
        rows.append(
            ["parameters", f"{model['trainable_params']} trainable of {model['total_params']} ({share:.1%})"]
        )
    rows.append(["device", f"{result.device or '?'}, {result.precision or '?'}"])
    if result.checkpoints:  # runner.train.checkpoints: what was kept, and the disk it takes
        rows.append(["checkpoints", describe_checkpoints(result.checkpoints).removeprefix("checkpoints: ")])
    throughput = timing.get("train_samples_per_second")
    rows.append(
        [
            "training time",
            duration(timing.get("train_seconds"))
            + (f" ({throughput:.1f} samples/s)" if isinstance(throughput, (int, float)) else ""),
        ]
    )
    rows.append(["total time", duration(timing.get("total_seconds"))])
    if timing.get("started_at"):
        rows.append(["started / finished", f"{timing['started_at']} / {timing.get('finished_at', '?')}"])
    rows.append(["seed", str(seed)])
    return ["## Training", "", table(["", ""], rows, "ll"), ""]


def describe_checkpoints(record: dict) -> str:
    """One line: what the checkpoints folder holds now."""
    if not record:
        return ""
    size = f"{record['bytes'] / 1e6:.0f} MB"
    if not record.get("pruned"):
        return f"checkpoints: {size} ({', '.join(record['kept']) or 'none'}; all kept)"
    return (f"checkpoints: {size}, was {record['bytes_before'] / 1e6:.0f} MB ({', '.join(record['kept'])}, without "
            "optimizer/scheduler/RNG state; train.keep_checkpoints: true keeps them)")
