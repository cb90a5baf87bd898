"""Attention in fp32 under the CPU's bf16 autocast (runner.train.attention): the same outputs as SDPA,
chosen only on the CPU under bf16 for the families that route attention through transformers, used by a
real run, and gone from the saved model."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import run_cli, tiny_spec_text, write_spec
from support.tiny_models import build_tiny

from runner.train import attention

ARCHITECTURES = ["llama", "qwen2", "gpt2", "modernbert"]


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory, tiny_distilbert) -> dict:
    root = tmp_path_factory.mktemp("attention-architectures")
    return {name: build_tiny(root / name, name) for name in ARCHITECTURES} | {"distilbert": tiny_distilbert}


def ids_and_mask(vocab: int = 100):
    torch.manual_seed(0)
    ids = torch.randint(5, vocab, (4, 12))
    mask = torch.ones_like(ids)
    mask[:2, 8:] = 0  # padded rows: the mask must reach the fp32 attention
    return ids, mask


def logits(model, ids, mask, bf16: bool):
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        return model(input_ids=ids, attention_mask=mask).logits.float()


@pytest.mark.parametrize("bf16", [False, True])
def test_fp32_attention_gives_the_logits_sdpa_gives(tiny_model, bf16):
    from transformers import AutoModelForSequenceClassification

    sdpa = AutoModelForSequenceClassification.from_pretrained(tiny_model, num_labels=2).eval()
    fp32 = AutoModelForSequenceClassification.from_pretrained(tiny_model, num_labels=2).eval()
    fp32.load_state_dict(sdpa.state_dict())
    assert attention.wanted(fp32, "cpu", "bf16")
    attention.use_fp32_attention(fp32)
    assert fp32.config._attn_implementation == attention.NAME
    ids, mask = ids_and_mask()
    expected, got = logits(sdpa, ids, mask, bf16), logits(fp32, ids, mask, bf16)
    # fp32: the same function on the same numbers; bf16: the attention is more exact than bf16 SDPA's
    assert torch.allclose(expected, got, atol=1e-6 if not bf16 else 2e-2), (expected, got)


@pytest.mark.parametrize("arch", [*ARCHITECTURES, "distilbert"])
def test_every_family_in_the_list_runs_forward_and_backward_with_it(tiny_models, arch):
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(tiny_models[arch], num_labels=2)
    if model.config.pad_token_id is None:  # decoders ship without one; the runner sets it (train.model)
        model.config.pad_token_id = 0
    assert attention.wanted(model, "cpu", "bf16"), model.config.model_type
    attention.use_fp32_attention(model)
    ids, mask = ids_and_mask(vocab=50)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model(input_ids=ids, attention_mask=mask, labels=torch.tensor([0, 1, 0, 1])).loss
    loss.backward()
    assert torch.isfinite(loss) and all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_only_the_cpu_under_bf16_gets_it(tiny_model):
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(tiny_model, num_labels=2)
    assert not attention.wanted(model, "cpu", "fp32") and not attention.wanted(model, "cuda", "bf16")
    model.config._attn_implementation = "eager"  # a model already on another attention keeps it
    assert not attention.wanted(model, "cpu", "bf16")


def test_a_bf16_run_on_the_cpu_trains_with_it_and_saves_a_plain_model(tiny_model, tiny_data):
    folder = tiny_data.parent.parent
    spec = write_spec(folder, tiny_spec_text(tiny_model).replace("epochs: 1", "epochs: 1\n  precision: bf16"))
    result = run_cli("run", str(spec), cwd=folder)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "attention in fp32 under bf16" in result.stdout + result.stderr
    config = json.loads((folder / "run" / "model" / "config.json").read_text())
    assert "runner" not in json.dumps(config)  # nothing of the training's attention in what is shipped
    predicted = run_cli("predict", str(folder / "run"), "a lovely happy day", cwd=folder)
    assert predicted.returncode == 0, predicted.stderr[-2000:]
