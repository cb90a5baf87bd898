"""The data path: tokenization cached by content, per-batch padding, length-grouped batches,
predictions in row order, and the attention, optimizer and precision the run picks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import labelled_rows, tiny_spec_text

from runner.spec.document import load_spec_text
from runner.train.model import tokenize_splits, tokenized_cache_key


@pytest.fixture
def tokenizer(tiny_model):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model)


@pytest.fixture
def splits():
    rows = labelled_rows(per_label=30)
    frame = pd.DataFrame(
        {
            "text": [r["text"] + " the" * (i % 9) for i, r in enumerate(rows)],
            "label": [int(r["label"] == "pos") for r in rows],
        }
    )
    return {"train": frame.iloc[:48].reset_index(drop=True), "validation": frame.iloc[48:].reset_index(drop=True)}


@pytest.fixture
def spec(tmp_path, tiny_model):
    return load_spec_text(tiny_spec_text(tiny_model), tmp_path / "spec.yaml", check_files=False)


def test_a_second_tokenization_of_the_same_data_is_served_from_the_cache(tmp_path, tokenizer, splits, monkeypatch):
    first = tokenize_splits(splits, tokenizer, 32, has_pair=False, cache_dir=tmp_path)
    files = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*.arrow"))
    assert len(files) == 2 and files[0].parent == files[1].parent
    assert first["train"].cache_files[0]["filename"].startswith(str(tmp_path))  # memory-mapped from the cache

    def no_tokenizing(*args, **kwargs):
        raise AssertionError("tokenized again instead of reading the cache")

    monkeypatch.setattr(type(tokenizer), "__call__", no_tokenizing)
    second = tokenize_splits(splits, tokenizer, 32, has_pair=False, cache_dir=tmp_path)
    assert second["train"]["input_ids"][:] == first["train"]["input_ids"][:]
    assert second["validation"]["labels"][:] == splits["validation"]["label"].tolist()
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*.arrow")) == files


def test_the_cache_key_follows_texts_labels_and_max_length(tokenizer, splits):
    key = tokenized_cache_key(splits, tokenizer, 32, False)
    assert tokenized_cache_key({k: v.copy() for k, v in splits.items()}, tokenizer, 32, False) == key
    assert tokenized_cache_key(splits, tokenizer, 16, False) != key
    edited = {k: v.copy() for k, v in splits.items()}
    edited["train"].loc[0, "text"] += "!"
    assert tokenized_cache_key(edited, tokenizer, 32, False) != key
    relabelled = {k: v.copy() for k, v in splits.items()}
    relabelled["validation"].loc[0, "label"] = 1 - relabelled["validation"].loc[0, "label"]
    assert tokenized_cache_key(relabelled, tokenizer, 32, False) != key


def test_rows_keep_their_length_and_what_truncation_cut(tmp_path, tokenizer):
    frame = pd.DataFrame({"text": ["great day", "the " * 40], "label": [1, 0]})
    out = tokenize_splits({"train": frame}, tokenizer, 16, has_pair=False, cache_dir=tmp_path)["train"]
    assert out["length"][:] == [4, 16]
    assert out["truncated"][:] == [False, True]
    assert out["full_length"][:] == [4, 42]
    assert [len(ids) for ids in out["input_ids"][:]] == [4, 16]  # not padded


def test_batches_are_padded_to_their_longest_row(tmp_path, tokenizer, splits):
    from runner.train.trainer import PadBatch

    train = tokenize_splits(splits, tokenizer, 32, has_pair=False, cache_dir=tmp_path)["train"]
    rows = [train[i] for i in range(4)]
    batch = PadBatch(tokenizer)(rows)
    assert batch["input_ids"].shape == (4, max(row["length"] for row in rows)) and batch["input_ids"].shape[1] < 32
    assert batch["attention_mask"].sum(dim=1).tolist() == [row["length"] for row in rows]
    assert set(batch) == {"input_ids", "token_type_ids", "attention_mask", "labels"}


def test_gpu_mixed_precision_batches_are_padded_to_a_multiple_of_8_and_cpu_batches_are_not(tmp_path, tokenizer,
                                                                                          splits):
    from runner.train.trainer import PadBatch, padding_multiple

    assert padding_multiple("cuda", "bf16") == padding_multiple("cuda", "fp16") == 8
    assert padding_multiple("cuda", "fp32") is padding_multiple("cpu", "bf16") is None
    assert padding_multiple("cpu", "fp32") is None
    train = tokenize_splits(splits, tokenizer, 32, has_pair=False, cache_dir=tmp_path)["train"]
    rows = [train[i] for i in range(4)]
    longest = max(row["length"] for row in rows)
    batch = PadBatch(tokenizer, 8)(rows)
    assert batch["input_ids"].shape[1] == -(-longest // 8) * 8  # rounded up, never cut
    assert batch["attention_mask"].sum(dim=1).tolist() == [row["length"] for row in rows]  # the padding is masked


def test_training_batches_are_grouped_by_length(tmp_path, spec, tiny_model, tokenizer, splits):
    from transformers import AutoModelForSequenceClassification
    from transformers.trainer_pt_utils import LengthGroupedSampler

    from runner.train.trainer import build_trainer, training_arguments

    args = training_arguments(spec.train, spec.seed, tmp_path, "cpu", "fp32")
    assert args.train_sampling_strategy == "group_by_length"
    tokenized = tokenize_splits(splits, tokenizer, 32, has_pair=False, cache_dir=tmp_path / "cache")
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model, num_labels=2)
    trainer = build_trainer(spec.train, spec.task, spec.predict.threshold, spec.seed, model, tokenizer, tokenized,
                            ["neg", "pos"], tmp_path, "cpu", "fp32")
    sampler = trainer._get_train_sampler()
    assert isinstance(sampler, LengthGroupedSampler)
    assert sampler.lengths == tokenized["train"]["length"][:]  # a plain list: read at once, not row by row
    lengths = np.asarray(sampler.lengths)[list(sampler)]
    batches = [lengths[i : i + 8] for i in range(0, len(lengths), 8)]
    wasted = sum(len(b) * b.max() - b.sum() for b in batches)
    shuffled = np.random.default_rng(0).permutation(lengths)
    wasted_at_random = sum(
        len(b) * b.max() - b.sum() for b in (shuffled[i : i + 8] for i in range(0, len(shuffled), 8))
    )
    assert wasted < wasted_at_random


def test_predictions_come_back_in_row_order(tmp_path, spec, tiny_model, tokenizer, splits):
    from transformers import AutoModelForSequenceClassification

    from runner.train.trainer import build_trainer

    tokenized = tokenize_splits(splits, tokenizer, 32, has_pair=False, cache_dir=tmp_path / "cache")
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model, num_labels=2)
    trainer = build_trainer(spec.train, spec.task, spec.predict.threshold, spec.seed, model, tokenizer, tokenized,
                            ["neg", "pos"], tmp_path, "cpu", "fp32")
    prediction = trainer.predict(tokenized["validation"])
    assert prediction.label_ids.tolist() == splits["validation"]["label"].tolist()
    one_by_one = []
    model.eval()
    import torch

    with torch.inference_mode():
        for row in tokenized["validation"]:
            one_by_one.append(model(input_ids=torch.tensor([row["input_ids"]])).logits[0].numpy())
    np.testing.assert_allclose(prediction.predictions, np.stack(one_by_one), atol=1e-5)


def test_the_model_uses_sdpa_attention(spec):
    from runner.train.model import load_model, resolve_model_source

    found = resolve_model_source(spec.model, spec.resolve, spec.where)
    model, _ = load_model(spec.model, found, spec.task, ["neg", "pos"], spec.where)
    assert model.config._attn_implementation == "sdpa"


def test_precision_and_optimizer_choices():
    from runner.train.hardware import NATIVE_BF16, cpu_info
    from runner.train.trainer import choose_precision, fused_adamw_available

    native = bool(cpu_info()["flags"] & set(NATIVE_BF16))
    assert choose_precision("auto", "cpu") == ("bf16" if native else "fp32")  # from the flags, not a timing
    assert choose_precision("bf16", "cpu") == "bf16"
    assert choose_precision("auto", "mps") == "fp32"
    assert fused_adamw_available("cpu") and not fused_adamw_available("mps")


def test_auto_precision_stays_fp32_on_a_cpu_without_native_bf16(monkeypatch):
    import runner.train.hardware
    from runner.train.trainer import choose_precision

    monkeypatch.setattr(runner.train.hardware, "cpu_info", lambda: {"model": "", "flags": {"avx2", "avx512f"}})
    assert choose_precision("auto", "cpu") == "fp32"  # no probe: PyTorch's bf16 matmul is a slow fallback there


def test_bf16_on_the_cpu_is_autocast_with_fp32_weights(tmp_path, spec):
    from runner.train.trainer import training_arguments

    args = training_arguments(spec.train, spec.seed, tmp_path, "cpu", "bf16")
    assert args.bf16 and not args.fp16 and args.use_cpu
    assert args.optim == "adamw_torch_fused"
