"""The Hugging Face names users know (TrainingArguments, LoraConfig, the example scripts) and runner's keys for
them: an unknown key that is one of them gets a hint naming runner's key and the value form, and a metric
written with Trainer's `eval_` prefix (`eval_loss`) is read as runner's name for it, with a note."""

from __future__ import annotations

# Hugging Face's name -> (runner's key, how its value is written there)
HF_NAMES: dict[str, tuple[str, str]] = {
    "per_device_train_batch_size": ("train.batch_size", "batch_size: 16"),
    "train_batch_size": ("train.batch_size", "batch_size: 16"),
    "per_device_eval_batch_size": ("train.eval_batch_size", "eval_batch_size: 64"),
    "num_train_epochs": ("train.epochs", "epochs: 3"),
    "bf16": ("train.precision", "precision: bf16"),
    "fp16": ("train.precision", "precision: fp16"),
    "lr_scheduler_type": ("train.lr_scheduler", "lr_scheduler: linear"),
    "optim": ("train.optimizer", "optimizer: adamw_torch"),
    "evaluation_strategy": ("train.eval_strategy", "eval_strategy: epoch"),
    "torch_compile": ("train.compile", "compile: true"),
    "dataloader_num_workers": ("train.dataloader_num_workers", "dataloader_num_workers: 2"),
    "early_stopping_patience": ("train.early_stopping_patience", "early_stopping_patience: 3"),
    "output_dir": ("output.dir", "output:\n  dir: runs/x"),
    "push_to_hub": ("hub.push", "hub:\n  push: true"),
    "hub_model_id": ("hub.repo_id", "hub:\n  repo_id: you/model"),
    "hub_private_repo": ("hub.private", "hub:\n  private: true"),
    "model_name_or_path": ("model.name", "model:\n  name: ..."),
    "max_seq_length": ("model.max_length", "model:\n  max_length: 256"),
    "lora_r": ("lora.r", "lora:\n  r: 16"),
    "lora_alpha": ("lora.alpha", "lora:\n  alpha: 32"),
    "lora_dropout": ("lora.dropout", "lora:\n  dropout: 0.05"),
    "num_labels": ("labels", "labels: [neg, pos]  (or leave it out: the labels come from the data)"),
    "seed": ("seed", "seed: 42"),
    "use_cpu": ("train.device", "device: cpu"),
    "no_cuda": ("train.device", "device: cpu"),
    "warmup_steps": ("train.warmup_ratio", "warmup_ratio: 0.1  (a share of the training steps, not a count)"),
    "validation_split": ("data.validation_fraction", "validation_fraction: 0.1"),
}
SHORT_NAMES = {"lr": "learning_rate", "bs": "batch_size", "epoch": "epochs", "num_epochs": "epochs"}
KEEPS_ITS_VALUE_FORM = ("num_labels", "warmup_steps")  # the user's value would be wrong under runner's key


def hf_hint(key: str, section: tuple, value=None) -> str | None:
    """The hint for an unknown `key` in `section` that is a Hugging Face name, else None: runner's key, written
    with the user's own value where it carries over as it is (a number, a name), else the example's form."""
    found = HF_NAMES.get(str(key))
    if found is None:
        return None
    target, example = found
    here = ".".join(str(part) for part in section)
    where = target.split(".")[-1] if here and target.startswith(here + ".") else target
    if "." not in target and here:
        where = f"{target}, at the spec's top level"
    name = target.split(".")[-1]
    if key in ("bf16", "fp16"):
        example = f"precision: {key if value is True else 'fp32'}"
    elif key in ("use_cpu", "no_cuda"):
        example = f"device: {'cpu' if value is True else 'auto'}"
    elif isinstance(value, (int, float, str)) and not isinstance(value, bool) and ": " in example \
            and target.count(".") <= 1 and key not in KEEPS_ITS_VALUE_FORM:
        example = f"{name}: {value}"
    example = " ".join(example.split())
    return f"that is Hugging Face's name; runner's is {where} ({example})"


METRIC_PREFIX = "eval_"


def metric_without_prefix(value, allowed) -> str | None:
    """`eval_loss` -> `loss` when `loss` is a metric runner knows (Trainer prefixes every evaluation metric)."""
    if isinstance(value, str) and value.startswith(METRIC_PREFIX) and value[len(METRIC_PREFIX):] in allowed:
        return value[len(METRIC_PREFIX):]
    return None


def placed_hint(key: str, section: tuple, schema: dict) -> str | None:
    """The hint for an unknown `key` that is runner's key in another section (`learning_rate` at the top level,
    `load_best_model_at_end` under model:), or a short name of one (`lr`), else None."""
    key = SHORT_NAMES.get(str(key), str(key))
    here = ".".join(str(part) for part in section)
    own = schema
    for part in section:
        own = own.get("properties", {}).get(part, {}) if isinstance(own, dict) else {}
    if key in (own.get("properties", {}) if isinstance(own, dict) else {}):  # a short name of a key here
        return f"did you mean '{key}'?"
    places, queue = [], [((), schema)]
    while queue:  # every section of the spec, breadth first: the nearest one that has the key
        path, node = queue.pop(0)
        properties = node.get("properties", {}) if isinstance(node, dict) else {}
        if key in properties and path != tuple(section):
            places.append(".".join(path + (key,)))
        queue += [(path + (name,), sub) for name, sub in properties.items()
                  if isinstance(sub, dict) and "properties" in sub]
    if not places:
        return None
    where = f"under {here}" if here else "at the spec's top level"
    return f"{key} is {places[0]}, not a key {where}" if places[0].count(".") else \
        f"{key} is a key at the spec's top level, not {where}"
