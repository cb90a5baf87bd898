"""The fast path, the parts a CPU can check: token-budget batches, padding-free batches (the same logits
and gradients as padded ones), and a run with both; bench/gpu.py measures them on a GPU."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import run_cli, tiny_spec_text, write_spec
from hypothesis import given, settings
from hypothesis import strategies as st

from runner.train.batching import TokenBudgetBatchSampler, cut_batches
from runner.train.packing import PackedBatch, packed_logits, supports_packing, use_packed_attention


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 64), min_size=1, max_size=200), st.integers(8, 512), st.booleans(),
       st.sampled_from([None, 8]))
def test_token_budget_batches_cover_every_row_once_within_the_budget(lengths, budget, packed, multiple):
    """Within the budget as the collator pads them: to the longest row, rounded up to 8 on a GPU."""
    sampler = TokenBudgetBatchSampler(lengths, budget, seed=3, packed=packed, multiple=multiple)
    for epoch in range(2):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(batches) == len(sampler)
        assert sorted(i for batch in batches for i in batch) == list(range(len(lengths)))
        for batch in batches:
            padded_to = -(-max(lengths[i] for i in batch) // (multiple or 1)) * (multiple or 1)
            cost = sum(lengths[i] for i in batch) if packed else len(batch) * padded_to
            assert cost <= budget or len(batch) == 1


def test_batches_are_seeded_and_change_with_the_epoch():
    lengths = [5, 9, 9, 9, 12, 30, 31, 7, 7, 7] * 10
    first, again = TokenBudgetBatchSampler(lengths, 64, seed=1), TokenBudgetBatchSampler(lengths, 64, seed=1)
    assert list(first) == list(again)
    epoch0 = list(first)
    first.set_epoch(1)
    assert list(first) != epoch0
    assert cut_batches([1, 2, 3, 10], 12, packed=False) == [3, 1]


def tiny(kind: str):
    from transformers import AutoModelForSequenceClassification, BertConfig, ModernBertConfig

    torch.manual_seed(0)
    if kind == "bert":
        config = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                            intermediate_size=64, num_labels=3, hidden_dropout_prob=0, attention_probs_dropout_prob=0)
    else:
        config = ModernBertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
                                  intermediate_size=64, num_labels=3, local_attention=4, global_attn_every_n_layers=2,
                                  pad_token_id=0, bos_token_id=1, eos_token_id=2, cls_token_id=1, sep_token_id=2,
                                  max_position_embeddings=128)
    return AutoModelForSequenceClassification.from_config(config, attn_implementation="sdpa")


@pytest.mark.parametrize("kind", ["bert", "modernbert"])
def test_packed_logits_and_gradients_equal_padded_ones(kind):
    model = tiny(kind).train()
    gen = torch.Generator().manual_seed(1)
    rows = [{"input_ids": [1, *torch.randint(3, 100, (n,), generator=gen).tolist()], "labels": i % 3}
            for i, n in enumerate([3, 9, 1, 14, 6])]
    longest = max(len(r["input_ids"]) for r in rows)
    ids = torch.tensor([r["input_ids"] + [0] * (longest - len(r["input_ids"])) for r in rows])
    mask = (ids != 0).long()
    mask[:, 0] = 1
    labels = torch.tensor([r["labels"] for r in rows])
    padded = model(input_ids=ids, attention_mask=mask, labels=labels)
    padded.loss.backward()
    reference = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    assert supports_packing(model)
    use_packed_attention(model)
    logits = packed_logits(model, PackedBatch()(rows))
    torch.testing.assert_close(logits, padded.logits, atol=1e-5, rtol=1e-4)
    torch.nn.functional.cross_entropy(logits, labels).backward()
    for name, grad in reference.items():
        torch.testing.assert_close(dict(model.named_parameters())[name].grad, grad, atol=1e-5, rtol=1e-3)
    # padded batches (evaluation) through the same attention function keep their mask
    torch.testing.assert_close(model(input_ids=ids, attention_mask=mask).logits, padded.logits, atol=1e-5, rtol=1e-4)


def test_a_run_with_token_budget_and_padding_free_batches(tiny_model, tiny_data):
    folder = tiny_data.parent.parent
    extra = "  max_tokens_per_batch: 96\n  padding_free: \"on\"\n"
    spec = write_spec(folder, tiny_spec_text(tiny_model).replace("  batch_size: 8\n", "  batch_size: 8\n" + extra))
    result = run_cli("run", str(spec), cwd=folder)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "token-budget batches of at most 96 tokens" in result.stdout + result.stderr
    manifest = json.loads((folder / "run" / "run.json").read_text())
    steps = manifest["results"]["timing"]["global_step"]
    assert steps != 8  # 64 training rows: 8 batches of 8 rows; token budgets cut them otherwise
    assert manifest["results"]["metrics"]["validation"]["accuracy"] >= 0.0


def test_a_compiled_run_keeps_torchs_compile_cache_out_of_tmpdir(tiny_model, tiny_data, tmp_path):
    """train.compile: true on the CPU: the run trains, and torch's compile cache (torchinductor_USER, which torch
    puts in TMPDIR) goes under runner's cache folder, so a run, or one stopped by a signal, leaves nothing in TMPDIR;
    a CPU run that did not ask for padding-free batches says nothing about them."""
    folder = tiny_data.parent.parent
    text = tiny_spec_text(tiny_model).replace("  batch_size: 8\n", "  batch_size: 8\n  compile: true\n")
    spec = write_spec(folder, text)
    scratch, cache = tmp_path / "tmp", tmp_path / "cache"
    scratch.mkdir()
    env = {"TMPDIR": str(scratch), "RUNNER_CACHE_DIR": str(cache), "TORCHINDUCTOR_CACHE_DIR": ""}  # "": not set
    result = run_cli("run", str(spec), cwd=folder, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "torch.compile (dynamic shapes)" in result.stdout + result.stderr
    assert "padding-free" not in result.stdout + result.stderr
    assert sorted(p.name for p in scratch.iterdir()) == []
    assert (cache / "torchinductor").is_dir()
