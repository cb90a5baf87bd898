"""Model: find the pretrained model, load the tokenizer and AutoModelForSequenceClassification,
tokenize the splits, and wrap the model in LoRA when the spec asks for it."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from runner.errors import RunError, SpecError
from runner.spec import Spec, looks_like_local_path

# Attention projections LoRA adapts by default, by `config.model_type`.
LORA_TARGETS = {
    "distilbert": ["q_lin", "v_lin"],
    "bert": ["query", "value"],
    "roberta": ["query", "value"],
    "xlm-roberta": ["query", "value"],
    "camembert": ["query", "value"],
    "electra": ["query", "value"],
    "albert": ["query", "value"],
    "mpnet": ["q", "v"],
    "deberta": ["in_proj"],
    "deberta-v2": ["query_proj", "value_proj"],
    "modernbert": ["Wqkv"],
    "xlnet": ["q", "v"],
    "longformer": ["query", "value"],
    "bart": ["q_proj", "v_proj"],
    "llama": ["q_proj", "v_proj"],
    "mistral": ["q_proj", "v_proj"],
    "qwen2": ["q_proj", "v_proj"],
    "gpt2": ["c_attn"],
}
PROBLEM_TYPES = {
    "single_label_classification": "single_label_classification",
    "text_pair_classification": "single_label_classification",
    "multi_label_classification": "multi_label_classification",
    "regression": "regression",
}
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json", "pytorch_model.bin.index.json", "adapter_model.safetensors")


def resolve_model_source(spec: Spec) -> tuple[str, str]:
    """(what to pass to from_pretrained, 'hub' | 'local' | 'package').

    `package:NAME` names a model shipped inside an installed Python package (the folder NAME/model),
    for machines without Hub access.
    """
    name = spec["model"]["name"]
    if name.startswith("package:"):
        package, _, sub = name[len("package:"):].partition("/")
        found = importlib.util.find_spec(package)
        if found is None or not found.submodule_search_locations:
            raise SpecError(f"model package '{package}' is not installed", f"pip install {package.replace('_', '-')}", "model.name")
        folder = Path(list(found.submodule_search_locations)[0]) / (sub or "model")
        if not (folder / "config.json").exists():
            raise SpecError(f"package '{package}' has no model folder at {folder}", "name the folder inside the package: package:NAME/SUBFOLDER", "model.name")
        return str(folder), "package"
    local = spec.resolve(name)
    if looks_like_local_path(name) or local.is_dir():
        return str(local), "local"
    return name, "hub"


def _explain_load_failure(exc: Exception, name: str, source: str, what: str) -> Exception:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if source == "hub":
        return RunError(f"cannot load the {what} '{name}' from the Hub: {text}",
                        "offline or behind a firewall? give a local folder in model.name (saved with save_pretrained), "
                        "or download it once into the cache and set HF_HUB_OFFLINE=1", "model.name")
    return SpecError(f"cannot load the {what} from '{name}': {text}",
                     "point model.name at a folder written by save_pretrained() (config.json, weights, tokenizer files)", "model.name")


def load_tokenizer(spec: Spec):
    from transformers import AutoTokenizer

    name, source = resolve_model_source(spec)
    try:
        tokenizer = AutoTokenizer.from_pretrained(name, revision=spec["model"]["revision"], trust_remote_code=spec["model"]["trust_remote_code"])
    except (OSError, ValueError) as exc:
        raise _explain_load_failure(exc, name, source, "tokenizer") from None
    if not tokenizer.is_fast:
        print(f"warning: {type(tokenizer).__name__} is a slow tokenizer; tokenization will take longer")
    model_limit = getattr(tokenizer, "model_max_length", None) or 0
    max_length = spec["model"]["max_length"]
    if 0 < model_limit < 1_000_000 and max_length > model_limit:
        raise SpecError(f"model.max_length {max_length} is beyond the model's limit of {model_limit} tokens",
                        f"set model.max_length to {model_limit} or less", "model.max_length")
    return tokenizer


def load_model(spec: Spec, labels: list[str]):
    """AutoModelForSequenceClassification with the spec's labels in its config (so pipeline() prints names)."""
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification

    name, source = resolve_model_source(spec)
    if source != "hub":
        folder = Path(name)
        if not any((folder / f).exists() for f in WEIGHT_FILES):
            raise SpecError(f"the model folder '{spec['model']['name']}' has no weights (model.safetensors or pytorch_model.bin)",
                            "save the model with save_pretrained(), or give a Hub model id", "model.name")
    task = spec["task"]
    kwargs = {"revision": spec["model"]["revision"], "trust_remote_code": spec["model"]["trust_remote_code"]}
    num_labels = 1 if task == "regression" else len(labels)
    try:
        config = AutoConfig.from_pretrained(name, num_labels=num_labels, problem_type=PROBLEM_TYPES[task], **kwargs)
    except (OSError, ValueError) as exc:
        raise _explain_load_failure(exc, name, source, "model config") from None
    if task != "regression":
        config.id2label = dict(enumerate(labels))
        config.label2id = {label: i for i, label in enumerate(labels)}
    limit = getattr(config, "max_position_embeddings", None)
    if limit and spec["model"]["max_length"] > limit:
        raise SpecError(f"model.max_length {spec['model']['max_length']} is beyond the model's {limit} positions",
                        f"set model.max_length to {limit} or less", "model.max_length")
    try:
        # Master weights stay fp32; bf16/fp16 come from autocast in the Trainer.
        model = AutoModelForSequenceClassification.from_pretrained(name, config=config, dtype=torch.float32, ignore_mismatched_sizes=True, **kwargs)
    except (OSError, ValueError) as exc:
        raise _explain_load_failure(exc, name, source, "model") from None
    return model


def lora_targets(model, spec: Spec) -> list[str]:
    """The spec's target modules, checked against the model, or the architecture's defaults."""
    import torch

    names = {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv1d)) or type(m).__name__ == "Conv1D"}
    targets = spec["lora"]["target_modules"]
    if targets:
        missing = [t for t in targets if t not in names]
        if missing:
            raise SpecError(f"lora.target_modules {', '.join(missing)} not found in the model",
                            f"valid names for this model: {', '.join(sorted(names))}", "lora.target_modules")
        return targets
    model_type = model.config.model_type
    if model_type not in LORA_TARGETS:
        raise SpecError(f"no default LoRA targets for model type '{model_type}'",
                        f"set lora.target_modules; linear layers in this model: {', '.join(sorted(names))}", "lora.target_modules")
    return LORA_TARGETS[model_type]


def apply_lora(model, spec: Spec):
    """Wrap the model with a PEFT LoRA adapter; the classification head stays fully trainable."""
    from peft import LoraConfig, TaskType, get_peft_model

    lora = spec["lora"]
    config = LoraConfig(
        task_type=TaskType.SEQ_CLS,
        r=lora["r"],
        lora_alpha=lora["alpha"],
        lora_dropout=lora["dropout"],
        bias=lora["bias"],
        target_modules=lora_targets(model, spec),
    )
    return get_peft_model(model, config)


def provenance(spec: Spec, model, trainable: int, total: int) -> dict:
    """Which base model this run started from, exactly: resolved revision and weight-file hashes."""
    from runner.files import sha256_file

    name, source = resolve_model_source(spec)
    config = model.config if not hasattr(model, "get_base_model") else model.get_base_model().config
    weights = {}
    if source == "hub":
        from transformers.utils import cached_file

        for filename in WEIGHT_FILES[:2]:
            path = cached_file(name, filename, revision=spec["model"]["revision"], _raise_exceptions_for_missing_entries=False)
            if path:
                weights[filename] = sha256_file(path)
                break
    else:
        for filename in WEIGHT_FILES[:2]:
            if (Path(name) / filename).exists():
                weights[filename] = sha256_file(Path(name) / filename)
    return {
        "name": spec["model"]["name"],
        "path": name,
        "source": source,
        "revision": getattr(config, "_commit_hash", None) if source == "hub" else None,
        "name_or_path": getattr(config, "_name_or_path", None),
        "weight_files": weights,
        "kind": "lora" if spec["lora"] else "full",
        "architecture": type(model.get_base_model() if hasattr(model, "get_base_model") else model).__name__,
        "trainable_params": trainable,
        "total_params": total,
    }


def count_parameters(model) -> tuple[int, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total


# ---------------------------------------------------------------------------------------------
# Tokenization


def tokenize_splits(splits: dict, tokenizer, max_length: int, has_pair: bool):
    """Tokenize every split with the fast tokenizer in large batches, without padding.

    Padding happens per batch in the collator. Each row keeps its token count in `length` (used to
    group rows of similar length) and whether it was truncated.
    """
    import datasets

    n_special = tokenizer.num_special_tokens_to_add(pair=has_pair)

    def encode(batch):
        args = (batch["text"], batch["text_pair"]) if has_pair else (batch["text"],)
        encoded = tokenizer(*args, truncation=True, max_length=max_length)
        encodings = encoded.encodings or []
        encoded["length"] = [len(ids) for ids in encoded["input_ids"]]
        encoded["truncated"] = [bool(e.overflowing) for e in encodings] if encodings else [n >= max_length for n in encoded["length"]]
        # Each overflowing piece repeats the special tokens, so count only its own tokens.
        encoded["full_length"] = [len(e.ids) + sum(max(len(o.ids) - n_special, 0) for o in e.overflowing) for e in encodings] if encodings else encoded["length"]
        return encoded

    out = {}
    for name, frame in splits.items():
        dataset = datasets.Dataset.from_pandas(frame, preserve_index=False)
        remove = [c for c in dataset.column_names if c not in ("label",)]
        out[name] = dataset.map(encode, batched=True, batch_size=2000, remove_columns=remove, desc=f"tokenize {name}")
        out[name] = out[name].rename_column("label", "labels")
    return out


def token_stats(tokenized: dict, max_length: int) -> dict:
    lengths = np.asarray(tokenized["train"]["full_length"])
    truncated = int(np.sum(tokenized["train"]["truncated"]))
    return {
        "token_lengths": {f"p{q}": int(np.percentile(lengths, q)) for q in (50, 90, 95, 99)} | {"max": int(lengths.max()), "mean": round(float(lengths.mean()), 1)},
        "truncated": {"rows": truncated, "fraction": round(truncated / len(lengths), 4), "max_length": max_length},
    }
