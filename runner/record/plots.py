"""The report's pictures, drawn with matplotlib's Agg canvas and returned as PNG bytes.

No pyplot: a Figure with its own canvas needs no global backend, no display, and leaves no
figures open between calls.
"""

from __future__ import annotations

import io


def _png(figure) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight", pad_inches=0.15, metadata={"Software": None})
    return buffer.getvalue()


def confusion_matrix_png(matrices: dict[str, list[list[int]]], labels: list[str]) -> bytes | None:
    """One panel per split: counts in the cells, colour = share of the true label's rows.

    `matrices` maps a split name to its matrix (rows = true label, columns = predicted, both in
    `labels` order). Returns None when there is nothing to draw.
    """
    import numpy as np
    from matplotlib.figure import Figure

    panels = [(split, np.asarray(m, dtype=float)) for split, m in matrices.items() if m]
    panels = [(split, m) for split, m in panels if m.ndim == 2 and m.shape[0] == m.shape[1] and m.size]
    if not panels:
        return None
    size = panels[0][1].shape[0]
    names = list(labels) if len(labels) == size else [str(i) for i in range(size)]
    # Past ~30 classes the numbers no longer fit in the cells; the colours still tell the story.
    annotate = size <= 30
    font = 10 if size <= 8 else (8 if size <= 15 else 6)
    side = max(4.2, 0.5 * size + 2.2)
    figure = Figure(figsize=(side * len(panels) + 1.2, side), layout="constrained")
    axes = figure.subplots(1, len(panels), squeeze=False)[0]
    image = None
    for ax, (split, matrix) in zip(axes, panels):
        totals = matrix.sum(axis=1, keepdims=True)
        shares = np.divide(matrix, totals, out=np.zeros_like(matrix), where=totals > 0)
        image = ax.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
        ticks = range(size)
        ax.set_xticks(ticks, names, rotation=45, ha="right", rotation_mode="anchor", fontsize=font)
        ax.set_yticks(ticks, names, fontsize=font)
        ax.set_xlabel("Predicted label")
        if ax is axes[0]:
            ax.set_ylabel("True label")
        total = int(matrix.sum())
        accuracy = float(np.trace(matrix) / total) if total else 0.0
        ax.set_title(f"{split} (n={total}, accuracy {accuracy:.3f})")
        if annotate:
            for row in range(size):
                for column in range(size):
                    colour = "white" if shares[row, column] > 0.55 else "black"
                    ax.text(
                        column,
                        row,
                        f"{int(matrix[row, column])}",
                        ha="center",
                        va="center",
                        color=colour,
                        fontsize=font,
                    )
    colorbar = figure.colorbar(image, ax=list(axes), shrink=0.8)
    colorbar.set_label("share of the true label's rows")
    return _png(figure)


def training_curves_png(log_history: list[dict], metric: str | None, lower_is_better: bool = False) -> bytes | None:
    """Train and eval loss against the step, and the eval `metric` on a second panel (the
    learning rate when there is no such metric), its best value starred. Returns None when
    nothing was logged."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    def series(key: str) -> tuple[list, list]:
        points = [(e["step"], e[key]) for e in log_history if isinstance(e.get(key), (int, float)) and "step" in e]
        return [p[0] for p in points], [p[1] for p in points]

    train_steps, train_loss = series("loss")
    eval_steps, eval_loss = series("eval_loss")
    if not train_steps and not eval_steps:
        return None
    metric_key = f"eval_{metric}" if metric and metric != "loss" else None
    metric_steps, metric_values = series(metric_key) if metric_key else ([], [])

    figure = Figure(figsize=(11, 4.4), layout="constrained")
    loss_ax, second_ax = figure.subplots(1, 2)
    if train_steps:
        # Markers keep a short log (one or two points) visible.
        loss_ax.plot(
            train_steps,
            train_loss,
            color="tab:blue",
            linewidth=1.4,
            marker="." if len(train_steps) < 30 else None,
            label="train loss",
        )
    if eval_steps:
        loss_ax.plot(eval_steps, eval_loss, color="tab:orange", marker="o", linewidth=1.6, label="eval loss")
    loss_ax.set_title("Loss")
    loss_ax.set_xlabel("step")
    loss_ax.set_ylabel("loss")
    loss_ax.set_ylim(bottom=0)  # from zero: a small change must not fill the panel
    loss_ax.grid(alpha=0.3)
    loss_ax.legend()

    if metric_steps:
        second_ax.plot(
            metric_steps, metric_values, color="tab:green", marker="o", linewidth=1.6, label=f"eval {metric}"
        )
        pick = min if lower_is_better else max
        best = pick(range(len(metric_values)), key=lambda i: metric_values[i])
        second_ax.scatter(
            [metric_steps[best]],
            [metric_values[best]],
            s=160,
            marker="*",
            color="tab:red",
            zorder=3,
            label=f"best {metric_values[best]:.4f} (step {metric_steps[best]})",
        )
        second_ax.set_title(f"Validation {metric}")
        second_ax.set_ylabel(metric)
        low, high = honest_limits(metric, metric_values)
        second_ax.set_ylim(low, high)
        second_ax.legend()
    else:
        lr_steps, learning_rates = series("learning_rate")
        second_ax.plot(lr_steps, learning_rates, color="tab:purple", linewidth=1.4)
        second_ax.set_title("Learning rate" + (f" (no eval {metric} logged)" if metric_key else ""))
        second_ax.set_ylabel("learning rate")
        # Tick labels carry their own exponent: matplotlib's shared offset text collides with the epoch axis.
        second_ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:.1e}"))
    second_ax.set_xlabel("step")
    second_ax.grid(alpha=0.3)

    # An epoch axis on top, when the log says how steps map to epochs.
    last = max(
        (e for e in log_history if e.get("step") and isinstance(e.get("epoch"), (int, float))),
        key=lambda e: e["step"],
        default=None,
    )
    if last and last["epoch"] > 0:
        ratio = last["epoch"] / last["step"]
        for ax in (loss_ax, second_ax):
            top = ax.secondary_xaxis("top", functions=(lambda s, r=ratio: s * r, lambda e, r=ratio: e / r))
            top.set_xlabel("epoch")
    return _png(figure)


# Metrics on a fixed scale: drawn on their whole range, so a 3-point change looks like 3 points.
UNIT_METRICS = ("accuracy", "f1", "precision", "recall", "roc_auc", "subset_accuracy", "ece")


def honest_limits(metric: str | None, values: list[float]) -> tuple[float | None, float | None]:
    """The y-axis of a metric panel: 0 to 1 for metrics in [0, 1] (accuracy, F1, ...), -1 to 1 for
    correlations; from zero for errors and losses (MSE, MAE); R² keeps its own range up to 1."""
    name = (metric or "").lower()
    if name.startswith(UNIT_METRICS):
        return 0.0, 1.02
    if name in ("pearson", "spearman"):
        return -1.02, 1.02
    if name == "r2":
        return min(0.0, min(values, default=0.0) - 0.05), 1.02
    if name in ("mse", "mae", "loss"):
        return 0.0, None
    return None, None


def reliability_png(calibration: dict) -> bytes | None:
    """Reliability diagram: one panel per split, observed accuracy against mean confidence in each
    bin, before and after calibration (when it was applied), with the diagonal of perfect calibration; marker area
    grows with the bin's rows. Returns None when there are no bins."""
    from matplotlib.figure import Figure

    splits = {s: v for s, v in (calibration.get("splits") or {}).items() if v.get("reliability")}
    if not splits:
        return None
    figure = Figure(figsize=(5.0 * len(splits) + 0.5, 4.6), layout="constrained")
    axes = figure.subplots(1, len(splits), squeeze=False)[0]
    temperature = calibration.get("temperature")
    method = calibration.get("method") or "calibrated"
    for ax, (split, values) in zip(axes, splits.items()):
        ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfect calibration")
        for key, colour, name, ece in (
            ("reliability", "tab:red", "raw scores", values.get("ece")),
            (
                "reliability_calibrated",
                "tab:blue",
                f"temperature {temperature:.2f}" if temperature else method,
                values.get("ece_calibrated"),
            ),
        ):
            bins = values.get(key) or []
            if not bins:
                continue
            total = max(sum(b["rows"] for b in bins), 1)
            x, y = [b["confidence"] for b in bins], [b["accuracy"] for b in bins]
            ax.plot(x, y, color=colour, linewidth=1.4, alpha=0.8)
            ax.scatter(
                x,
                y,
                s=[20 + 400 * b["rows"] / total for b in bins],
                color=colour,
                alpha=0.7,
                label=f"{name} (ECE {ece:.3f})" if isinstance(ece, (int, float)) else name,
            )
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_aspect("equal")
        ax.set_xlabel("mean confidence in bin")
        if ax is axes[0]:
            ax.set_ylabel("observed accuracy (frequency)")
        ax.set_title(f"{split}")
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", fontsize=8)
    return _png(figure)
