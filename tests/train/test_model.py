"""Decoder-only classifiers (Llama, Qwen2, GPT-2 architectures, shipped without a pad token) and a
ModernBERT one: full fine-tuning and LoRA through `runner run`, then the saved run reloaded three
ways (the predict code, `runner predict`, `pipeline()`) must give the labels of the run's own
validation predictions."""

from __future__ import annotations

import json

import pytest
from conftest import run_cli, tiny_spec_text, write_spec
from support.tiny_models import ARCHITECTURES, DECODERS, build_tiny

LORA = """lora:
  r: 4
  alpha: 8
  merge: true
"""


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("tiny-architectures")
    return {name: build_tiny(root / name, name) for name in ARCHITECTURES}


def _validation(run_dir) -> list[dict]:
    lines = (run_dir / "predictions" / "validation.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


@pytest.mark.parametrize("mode", ["full", "lora"])
@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_tiny_architecture_trains_saves_and_predicts_the_same(arch, mode, tiny_models, tiny_data, tmp_path):
    spec = write_spec(tmp_path, tiny_spec_text(tiny_models[arch], extra=LORA if mode == "lora" else ""))
    result = run_cli("run", str(spec), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    run_dir = tmp_path / "run"
    expected = _validation(run_dir)
    texts = [row["text"] for row in expected]

    from runner.inference.predict import load_trained_model, predict_logits
    from runner.record.runrecord import RunRecord

    labels = RunRecord.load(run_dir).labels
    assert labels == ["neg", "pos"]
    model, tokenizer = load_trained_model(run_dir / "model", labels, "single_label_classification")
    assert tokenizer.pad_token is not None and model.config.pad_token_id == tokenizer.pad_token_id
    logits = predict_logits(model, tokenizer, texts, None, 32, batch_size=7)  # other batches, other padding
    names = [model.config.id2label[int(i)] for i in logits.argmax(-1)]
    assert names == [row["label"] for row in expected]

    if mode == "lora":
        import safetensors

        saved = safetensors.safe_open(str(run_dir / "model" / "adapter_model.safetensors"), "pt").keys()
        head = "classifier" if arch == "modernbert" else "score"
        assert any(f"{head}." in key for key in saved), sorted(saved)  # the new head is saved with the adapter

    from transformers import pipeline

    folder = run_dir / ("merged" if mode == "lora" else "model")
    classifier = pipeline("text-classification", model=str(folder), device="cpu")
    assert [r["label"] for r in classifier(texts[:6])] == [row["label"] for row in expected[:6]]

    cli = run_cli("predict", str(run_dir), texts[0], texts[1], cwd=tmp_path)
    assert cli.returncode == 0, cli.stderr[-2000:]
    assert [json.loads(line)["label"] for line in cli.stdout.splitlines() if line.startswith("{")] == [
        row["label"] for row in expected[:2]
    ]


@pytest.mark.parametrize("arch", DECODERS)
def test_decoder_tokenizer_gets_a_pad_token_and_the_head_is_trainable_with_lora(arch, tiny_models, tiny_data, tmp_path):
    """Without the fix the collator fails: 'Asking to pad but the tokenizer does not have a padding token'."""
    from runner.spec.document import load_spec
    from runner.train.model import apply_lora, load_model, load_tokenizer, resolve_model_source

    spec = load_spec(write_spec(tmp_path, tiny_spec_text(tiny_models[arch], extra=LORA)))
    found = resolve_model_source(spec.model, spec.resolve, spec.where)
    tokenizer = load_tokenizer(spec.model, found, spec.where)
    assert tokenizer.pad_token is not None and tokenizer.padding_side == "right"
    batch = tokenizer(["great day", "a really awful and gloomy day today"], padding=True, return_tensors="pt")
    assert batch["input_ids"].shape[0] == 2
    model, new = load_model(spec.model, found, spec.task, ["neg", "pos"], spec.where, tokenizer)
    assert model.config.pad_token_id == tokenizer.pad_token_id
    assert "score" in new
    peft_model = apply_lora(model, spec.lora, spec.where("lora", "target_modules"), new)
    trainable = {name for name, p in peft_model.named_parameters() if p.requires_grad}
    assert any(
        ".score." in name or name.startswith("score") or "score.modules_to_save" in name for name in trainable
    ), trainable
    assert model(**batch).logits.shape == (2, 2)


def test_every_newly_initialised_module_is_saved_with_the_adapter(tiny_distilbert, tiny_data, tmp_path):
    """DistilBERT's `pre_classifier` is new at load like `classifier`; PEFT alone keeps it frozen and
    unsaved, so a reloaded adapter would predict with a different random layer."""
    from runner.spec.document import load_spec
    from runner.train.model import apply_lora, load_model, load_tokenizer, new_modules, resolve_model_source

    spec = load_spec(write_spec(tmp_path, tiny_spec_text(tiny_distilbert, extra=LORA)))
    found = resolve_model_source(spec.model, spec.resolve, spec.where)
    tokenizer = load_tokenizer(spec.model, found, spec.where)
    # 3 labels: the saved 2-label head does not fit
    model, new = load_model(spec.model, found, spec.task, ["neg", "pos", "neu"], spec.where, tokenizer)
    assert {"classifier"} <= set(new)
    peft_model = apply_lora(model, spec.lora, spec.where("lora", "target_modules"), new)
    trainable = {name for name, p in peft_model.named_parameters() if p.requires_grad}
    for module in new:
        assert any(f"{module}.modules_to_save" in name for name in trainable), (module, sorted(trainable))
    info = {
        "missing_keys": {
            "pre_classifier.weight",
            "pre_classifier.bias",
            "classifier.weight",
            "distilbert.embeddings.LayerNorm.weight",
        },
        "mismatched_keys": set(),
    }
    assert new_modules(model, info) == ["classifier", "distilbert.embeddings.LayerNorm", "pre_classifier"]
