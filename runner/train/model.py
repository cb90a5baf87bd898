"""Model: find the pretrained model, load the tokenizer and AutoModelForSequenceClassification,
tokenize the splits, and wrap the model in LoRA when the spec asks for it."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

import numpy as np

from runner.console import say, shown, warn
from runner.errors import RunError, SpecError
from runner.files import cache_root
from runner.spec.sections import LoraSection, ModelSection
from runner.spec.specrules import looks_like_local_path, package_name_problem

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
Where = Callable[..., str]
"""The place of a spec value for an error (`spec.where`): where("model", "name") -> `spec.yaml:3:9 model.name`."""
Resolve = Callable[[str], Path]
"""A path written in the spec, relative to the spec file's folder (`spec.resolve`)."""
Source = tuple[str, str]
"""The model found (resolve_model_source): (what from_pretrained takes, 'hub' | 'local' | 'package')."""

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json",
                "pytorch_model.bin.index.json", "adapter_model.safetensors")


def resolve_model_source(model: ModelSection, resolve: Resolve, where: Where) -> Source:
    """(what to pass to from_pretrained, 'hub' | 'local' | 'package').

    `package:NAME` names a model shipped inside an installed Python package (the folder NAME/model),
    for machines without Hub access.
    """
    name = model.name
    if name.startswith("package:"):
        package, _, sub = name[len("package:"):].partition("/")
        if wrong := package_name_problem(name):
            raise SpecError(*wrong, where("model", "name"))
        found = importlib.util.find_spec(package)  # a top-level name is looked up on sys.path, never imported
        if found is None or not found.submodule_search_locations:
            raise SpecError(f"model package '{package}' is not installed", f"pip install {package.replace('_', '-')}",
                            where("model", "name"))
        folder = Path(list(found.submodule_search_locations)[0]) / (sub or "model")
        if not (folder / "config.json").exists():
            raise SpecError(f"package '{package}' has no model folder at {folder}",
                            "name the folder inside the package: package:NAME/SUBFOLDER", where("model", "name"))
        return str(folder), "package"
    local = resolve(name)
    if looks_like_local_path(name) or local.is_dir():
        return str(local), "local"
    return name, "hub"


def _explain_load_failure(exc: Exception, name: str, source: str, what: str, where: str = "model.name") -> Exception:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if source == "hub":
        return RunError(f"cannot load the {what} '{name}' from the Hub: {text}",
                        "offline or behind a firewall? give a local folder in model.name (saved with save_pretrained), "
                        "or download it once into the cache and set HF_HUB_OFFLINE=1", where)
    return SpecError(f"cannot load the {what} from '{name}': {text}",
                     "point model.name at a folder written by save_pretrained() "
                     "(config.json, weights, tokenizer files)",
                     where)


def load_tokenizer(model: ModelSection, found: Source, where: Where):
    """The tokenizer of the model `found` (resolve_model_source), checked against model.max_length."""
    from transformers import AutoTokenizer

    name, source = found
    try:
        tokenizer = AutoTokenizer.from_pretrained(name, revision=model.revision,
                                                  trust_remote_code=model.trust_remote_code)
    except (OSError, ValueError) as exc:
        raise _explain_load_failure(exc, name, source, "tokenizer", where("model", "name")) from None
    if not tokenizer.is_fast:
        warn(f"{type(tokenizer).__name__} is a slow tokenizer; tokenization will take longer")
    ensure_pad_token(tokenizer)
    model_limit = getattr(tokenizer, "model_max_length", None) or 0
    max_length = model.max_length
    if 0 < model_limit < 1_000_000 and max_length > model_limit:
        raise SpecError(f"model.max_length {max_length} is beyond the model's limit of {model_limit} tokens",
                        f"set model.max_length to {model_limit} or less", where("model", "max_length"))
    return tokenizer


def ensure_pad_token(tokenizer) -> None:
    """Decoder-only models (Llama, Qwen2, GPT-2, SmolLM...) ship without a pad token. Batches need
    one: the EOS token (else BOS or UNK) serves, or a new `<pad>` is added (the model then grows its
    embeddings to match). Padding stays on the right: the `score` head reads each row's last
    non-pad token, and absolute positions (GPT-2) stay those of the unpadded text."""
    if tokenizer.pad_token is None:
        stand_in = tokenizer.eos_token or tokenizer.bos_token or tokenizer.unk_token
        if stand_in is not None:
            tokenizer.pad_token = stand_in
        else:
            tokenizer.add_special_tokens({"pad_token": "<pad>"})
    tokenizer.padding_side = "right"


def match_pad_token(model, tokenizer) -> None:
    """The model's config names the tokenizer's pad token, and its embeddings cover every token."""
    if tokenizer is None:
        return
    embeddings = model.get_input_embeddings()
    if embeddings is not None and len(tokenizer) > embeddings.weight.shape[0]:
        model.resize_token_embeddings(len(tokenizer))
    if getattr(model.config, "pad_token_id", None) is None or model.config.pad_token_id != tokenizer.pad_token_id:
        model.config.pad_token_id = tokenizer.pad_token_id


def new_modules(model, loading_info: dict) -> list[str]:
    """Modules whose weights were newly initialised at load (missing from the checkpoint, or of a
    different shape): the classification head of every architecture (`classifier`, `score`,
    DistilBERT's `pre_classifier`, ...). With LoRA they are trained in full and saved with the adapter."""
    keys = set(loading_info.get("missing_keys") or ())
    keys |= {k[0] if isinstance(k, (tuple, list)) else k for k in loading_info.get("mismatched_keys") or ()}
    prefix = getattr(model, "base_model_prefix", "")
    names = set()
    for key in keys:
        module = key.rsplit(".", 1)[0] if "." in key else key
        top = module.split(".", 1)[0]
        names.add(module if top == prefix else top)  # inside the backbone: that module only
    return sorted(names)


def load_model(section: ModelSection, found: Source, task, labels: list[str], where: Where, tokenizer=None):
    """AutoModelForSequenceClassification of the model `found` (resolve_model_source) with the labels in its
    config (so pipeline() prints names), sized for `task` (the spec's task table entry), and the names of its
    newly initialised modules (`new_modules`), which LoRA must train and save too."""
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification

    name, source = found
    if source != "hub":
        folder = Path(name)
        if not any((folder / f).exists() for f in WEIGHT_FILES):
            raise SpecError(f"the model folder '{section.name}' has no weights (model.safetensors or "
                            "pytorch_model.bin)",
                            "save the model with save_pretrained(), or give a Hub model id", where("model", "name"))
    kwargs = {"revision": section.revision, "trust_remote_code": section.trust_remote_code}
    try:
        config = AutoConfig.from_pretrained(name, num_labels=task.num_labels(labels), problem_type=task.problem_type,
                                            **kwargs)
    except (OSError, ValueError) as exc:
        raise _explain_load_failure(exc, name, source, "model config", where("model", "name")) from None
    if task.has_labels:
        config.id2label = dict(enumerate(labels))
        config.label2id = {label: i for i, label in enumerate(labels)}
    limit = getattr(config, "max_position_embeddings", None)
    if limit and section.max_length > limit:
        raise SpecError(f"model.max_length {section.max_length} is beyond the model's {limit} positions",
                        f"set model.max_length to {limit} or less", where("model", "max_length"))
    try:
        # Master weights stay fp32; bf16/fp16 come from autocast in the Trainer. No attn_implementation:
        # transformers 5 then uses SDPA (fused attention) where the architecture has it and falls back
        # to eager attention where not, while asking for "sdpa" outright fails on those architectures.
        model, info = AutoModelForSequenceClassification.from_pretrained(name, config=config, dtype=torch.float32,
                                                                         ignore_mismatched_sizes=True,
                                                                         output_loading_info=True, **kwargs)
    except (OSError, ValueError) as exc:
        raise _explain_load_failure(exc, name, source, "model", where("model", "name")) from None
    match_pad_token(model, tokenizer)
    return model, new_modules(model, info)


def lora_targets(model, lora: LoraSection, where: str) -> list[str]:
    """lora.target_modules, checked against the model, or the architecture's defaults; `where`: the place of
    lora.target_modules for an error (`spec.where("lora", "target_modules")`)."""
    import torch

    linear = (torch.nn.Linear, torch.nn.Conv1d)
    names = {name.rsplit(".", 1)[-1] for name, module in model.named_modules()
             if isinstance(module, linear) or type(module).__name__ == "Conv1D"}
    targets = lora.target_modules
    if targets:
        missing = [t for t in targets if t not in names]
        if missing:
            raise SpecError(f"lora.target_modules {', '.join(missing)} not found in the model",
                            f"valid names for this model: {', '.join(sorted(names))}", where)
        return targets
    model_type = model.config.model_type
    if model_type not in LORA_TARGETS:
        raise SpecError(f"no default LoRA targets for model type '{model_type}'",
                        f"set lora.target_modules; linear layers in this model: {', '.join(sorted(names))}", where)
    return LORA_TARGETS[model_type]


def apply_lora(model, lora: LoraSection, where: str, new: list[str] = ()):
    """Wrap the model with a PEFT LoRA adapter as the lora section says (`where`: the place of its
    target_modules, for an error); the classification head and the other newly initialised modules (`new`,
    from load_model) stay fully trainable and are saved with the adapter."""
    from peft import LoraConfig, TaskType, get_peft_model

    config = LoraConfig(
        task_type=TaskType.SEQ_CLS,
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        bias=lora.bias,
        target_modules=lora_targets(model, lora, where),
        # PEFT adds `classifier` and `score`; every other newly initialised module is trained and saved too
        modules_to_save=[m for m in new if m not in ("classifier", "score")] or None,
    )
    return get_peft_model(model, config)


def provenance(section: ModelSection, found: Source, lora: bool, model, trainable: int, total: int) -> dict:
    """Which base model (`found`: resolve_model_source) this run started from, exactly: resolved revision and
    weight-file hashes; `lora`: the model is a LoRA adapter."""
    from runner.files import sha256_file

    name, source = found
    config = model.config if not hasattr(model, "get_base_model") else model.get_base_model().config
    weights = {}
    if source == "hub":
        from transformers.utils import cached_file

        for filename in WEIGHT_FILES[:2]:
            path = cached_file(name, filename, revision=section.revision,
                               _raise_exceptions_for_missing_entries=False)
            if path:
                weights[filename] = sha256_file(path)
                break
    else:
        for filename in WEIGHT_FILES[:2]:
            if (Path(name) / filename).exists():
                weights[filename] = sha256_file(Path(name) / filename)
    return {
        "name": section.name,
        "path": name,
        "source": source,
        "revision": getattr(config, "_commit_hash", None) if source == "hub" else None,
        "name_or_path": getattr(config, "_name_or_path", None),
        "weight_files": weights,
        "kind": "lora" if lora else "full",
        "architecture": class_name(model.get_base_model() if hasattr(model, "get_base_model") else model),
        "trainable_params": trainable,
        "total_params": total,
    }


def class_name(model) -> str:
    """The model's class name. FSDP2 (fully_shard) turns a model's class into a subclass `FSDP<name>`."""
    from runner.train.sharded import unsharded_class

    return unsharded_class(model).__name__


def count_parameters(model) -> tuple[int, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total


# ---------------------------------------------------------------------------------------------
# Tokenization

TOKENIZE_CHUNK = 20_000  # rows per tokenizer call: enough for the Rust tokenizer's threads, little memory
TOKENIZED_FORMAT = 1  # bump when the cached columns or their meaning change
MASK_INPUTS = ("attention_mask", "token_type_ids", "special_tokens_mask")  # small integers, stored as int8


def tokenizer_fingerprint(tokenizer) -> str:
    """sha256 of what decides the token ids: vocabulary, normalizer, special tokens, truncation side."""
    import hashlib
    import json

    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        state = json.loads(backend.to_str())
        state["truncation"] = state["padding"] = None  # every call sets these; the call's max_length is in the key
        body = json.dumps(state, sort_keys=True)
    else:
        kwargs = {k: v for k, v in tokenizer.init_kwargs.items() if k not in ("name_or_path", "vocab_file",
                                                                              "merges_file")}
        body = json.dumps([sorted(tokenizer.get_vocab().items()), kwargs], sort_keys=True, default=str)
    extra = json.dumps([type(tokenizer).__name__, list(tokenizer.model_input_names), tokenizer.truncation_side],
                       default=str)
    return hashlib.sha256((body + extra).encode("utf-8")).hexdigest()


def tokenized_cache_key(splits: dict, tokenizer, max_length: int, has_pair: bool) -> str:
    """Content key of the tokenized splits: every text and label, the tokenizer and max_length."""
    import hashlib
    import json

    import pandas as pd

    digest = hashlib.sha256(json.dumps([TOKENIZED_FORMAT, max_length, has_pair,
                                        tokenizer_fingerprint(tokenizer)]).encode())
    for name in sorted(splits):
        frame = splits[name]
        digest.update(f"{name}:{len(frame)}".encode())
        for column in ("text", "text_pair"):
            if column in frame.columns:
                digest.update(pd.util.hash_pandas_object(frame[column], index=False).to_numpy().tobytes())
        labels = np.asarray(frame["label"].tolist())
        digest.update(f"{labels.dtype}{labels.shape}".encode())
        digest.update(labels.tobytes())
    return digest.hexdigest()[:32]


def tokenize_splits(splits: dict, tokenizer, max_length: int, has_pair: bool, cache_dir: Path | None = None) -> dict:
    """Tokenize every split with the fast tokenizer in large batches, without padding, into Arrow
    files that later runs on the same texts, labels, tokenizer and max_length reuse.

    Padding happens per batch in the collator. Each row keeps its token count in `length` (used to
    group rows of similar length), whether it was truncated, and its untruncated `full_length`.
    The splits come back memory-mapped, so a large dataset is not held in memory twice.
    """
    import atexit
    import os
    import time

    import datasets
    from filelock import FileLock

    from runner.files import make_folder, move, remove, temporary_folder
    from runner.train.tokencache import cache_problem, write_cache_record

    key = tokenized_cache_key(splits, tokenizer, max_length, has_pair)
    root = Path(cache_dir) if cache_dir else cache_root() / "tokenized"
    folder = root / key
    try:
        make_folder(root)
    except OSError as exc:
        warn(f"cannot use the tokenization cache {shown(root)} ({exc.strerror}); tokenizing into a temporary folder")
        root = temporary_folder(prefix="runner-tokenized-")
        atexit.register(remove, root, ignore_errors=True)  # memory-mapped files stay readable until then
        folder = root / key
    rows = sum(len(frame) for frame in splits.values())
    # The lock makes concurrent runs (and the processes of one distributed run) tokenize once.
    with FileLock(str(root / f"{key}.lock")):
        problem = cache_problem(folder, key, splits, TOKENIZED_FORMAT) if folder.is_dir() else None
        if problem:  # damaged or foreign: never trusted, never fatal
            warn(f"the tokenization cache entry {shown(folder)} is {problem}; it is discarded and rebuilt")
            remove(folder, ignore_errors=True)
        if folder.is_dir():
            say(f"tokenize: {rows} rows from the cache ({shown(folder)})")
        else:
            started = time.perf_counter()
            partial = root / f".{key}.{os.getpid()}.tmp"
            remove(partial, ignore_errors=True)
            make_folder(partial, parents=False)
            for name, frame in splits.items():
                _write_tokenized(partial / f"{name}.arrow", frame, tokenizer, max_length, has_pair)
            write_cache_record(partial, key, splits, TOKENIZED_FORMAT)
            move(partial, folder)
            seconds = time.perf_counter() - started
            say(f"tokenize: {rows} rows in {seconds:.2f}s ({rows / max(seconds, 1e-9):,.0f} rows/s), cached in "
                  f"{folder}")
    return {name: datasets.Dataset.from_file(str(folder / f"{name}.arrow")) for name in splits}


def _write_tokenized(path: Path, frame, tokenizer, max_length: int, has_pair: bool) -> None:
    """One split as an Arrow stream file, TOKENIZE_CHUNK rows at a time."""
    import pyarrow as pa

    n_special = tokenizer.num_special_tokens_to_add(pair=has_pair)
    labels = frame["label"]
    if labels.dtype == object:
        label_type = pa.list_(pa.float32())  # multi-hot vectors
    elif np.issubdtype(labels.dtype, np.floating):
        label_type = pa.float32()
    else:
        label_type = pa.int64()
    writer = None
    with pa.OSFile(str(path), "wb") as sink:
        for start in range(0, max(len(frame), 1), TOKENIZE_CHUNK):
            chunk = frame.iloc[start:start + TOKENIZE_CHUNK]
            args = (chunk["text"].tolist(), chunk["text_pair"].tolist()) if has_pair else (chunk["text"].tolist(),)
            encoded = tokenizer(*args, truncation=True, max_length=max_length)
            columns = {"labels": pa.array(chunk["label"].tolist(), label_type)}
            for name, values in encoded.items():
                columns[name] = pa.array(values, pa.list_(pa.int8() if name in MASK_INPUTS else pa.int32()))
            columns.update(_length_columns(encoded, max_length, n_special))
            batch = pa.RecordBatch.from_pydict(columns)
            if writer is None:
                writer = pa.ipc.new_stream(sink, batch.schema)
            writer.write_batch(batch)
        writer.close()


def _length_columns(encoded, max_length: int, n_special: int) -> dict:
    length = np.fromiter((len(ids) for ids in encoded["input_ids"]), dtype=np.int32, count=len(encoded["input_ids"]))
    encodings = encoded.encodings
    if not encodings:  # a slow tokenizer does not say what it cut off
        return {"length": length, "truncated": length >= max_length, "full_length": length}
    full_length = length.copy()
    truncated = np.zeros(len(length), dtype=bool)
    for i, encoding in enumerate(encodings):
        if encoding.overflowing:
            truncated[i] = True
            # Each overflowing piece repeats the special tokens, so count only its own tokens.
            full_length[i] += sum(max(len(o) - n_special, 0) for o in encoding.overflowing)
    return {"length": length, "truncated": truncated, "full_length": full_length}


def column_array(dataset, name: str) -> np.ndarray:
    """A whole column as numpy in one read (datasets' `dataset[name]` reads it row by row)."""
    return np.asarray(dataset.with_format("numpy", columns=[name])[:][name])


def token_stats(tokenized: dict, max_length: int) -> dict:
    lengths = column_array(tokenized["train"], "full_length")
    truncated = int(column_array(tokenized["train"], "truncated").sum())
    return {
        "token_lengths": {f"p{q}": int(np.percentile(lengths, q)) for q in (50, 90, 95, 99)}
        | {"max": int(lengths.max()), "mean": round(float(lengths.mean()), 1)},
        "truncated": {"rows": truncated, "fraction": round(truncated / len(lengths), 4), "max_length": max_length},
    }
