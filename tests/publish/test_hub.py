"""Publishing a run to the Hub (runner/publish/hub.py), against a local stand-in for the Hub that the real
huggingface_hub client talks to (tests/support/hub_server.py). The model is a real two-layer BERT with 32
hidden units and a WordPiece tokenizer trained on the fly, so loading it back from the "Hub" with
transformers and peft proves the push is usable, not just present."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path

import pytest
import yaml
from support.hub_server import TEST_TOKEN
from support.tiny_models import build_tiny_model

from runner.errors import RunError, SpecError
from runner.publish.hub import push_run, pushable_files

REPO = "tester/tiny"
BASE_REPO = "tester/tiny-base"
TEXTS = [
    "i love this movie",
    "i hate this film",
    "what a great day",
    "this is terrible",
    "so happy now",
    "so sad today",
    "a great film",
    "a terrible day",
]
LABELS = {0: "sadness", 1: "joy", 2: "anger"}
CARD = """---
license: apache-2.0
library_name: transformers
pipeline_tag: text-classification
---
# tiny

A tiny test model.
"""
METRICS = {
    "validation": {"accuracy": 0.875, "f1_macro": 0.8312},
    "headline": {"split": "validation", "name": "f1_macro", "value": 0.83123},
}


# ---------------------------------------------------------------------------------------------
# A tiny real model and run folder


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A saved BertForSequenceClassification (2 layers, hidden 32) with its fast tokenizer."""
    return build_tiny_model(
        tmp_path_factory.mktemp("tiny") / "model",
        corpus=TEXTS,
        vocab_size=120,
        max_length=32,
        intermediate_size=37,
        max_position_embeddings=32,
        initializer_range=0.5,
        id2label=LABELS,
        label2id={v: k for k, v in LABELS.items()},
    )


def make_run(run_dir: Path, model_dir: Path, hub: dict | None = None) -> Path:
    """A finished run folder as `runner train` leaves it, with a checkpoint that must never be pushed."""
    hub = {
        "repo_id": REPO,
        "push": True,
        "private": True,
        "revision": "main",
        "tag": None,
        "create_pr": False,
        **(hub or {}),
    }
    spec = {
        "version": 1,
        "name": "tiny",
        "task": "single_label_classification",
        "data": {"train": "data/train.csv"},
        "model": {"name": "local-bert"},
        "hub": hub,
    }
    shutil.copytree(model_dir, run_dir / "model")
    (run_dir / "model" / "README.md").write_text(CARD, encoding="utf-8")
    (run_dir / "metrics.json").write_text(json.dumps(METRICS, indent=2), encoding="utf-8")
    (run_dir / "run.json").write_text(
        json.dumps({"spec_file": "/specs/tiny.yaml", "spec": spec}, indent=2), encoding="utf-8"
    )
    (run_dir / "spec.yaml").write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    (run_dir / "report.md").write_text("# Report\n\nf1_macro 0.8312\n", encoding="utf-8")
    (run_dir / "confusion_matrix.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    checkpoint = run_dir / "checkpoints" / "checkpoint-1"
    checkpoint.mkdir(parents=True)
    (checkpoint / "optimizer.pt").write_bytes(b"optimizer state")
    (checkpoint / "model.safetensors").write_bytes(b"checkpoint weights")
    return run_dir


@pytest.fixture
def run_dir(tmp_path, tiny_model_dir) -> Path:
    return make_run(tmp_path / "run", tiny_model_dir)


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch):
    monkeypatch.setenv("RUNNER_HUB_RETRY_BASE_DELAY", "0.01")


def snapshot(folder: Path) -> dict[str, str]:
    return {
        path.relative_to(folder).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def without_hub(run_json: Path) -> dict:
    manifest = json.loads(run_json.read_text(encoding="utf-8"))
    manifest.pop("hub", None)
    return manifest


# ---------------------------------------------------------------------------------------------
# Which files go


def test_pushable_files_are_the_model_at_the_root_plus_the_run_record(run_dir):
    (run_dir / "model" / "optimizer.pt").write_bytes(b"x")
    (run_dir / "model" / "checkpoint-3").mkdir()
    (run_dir / "model" / "checkpoint-3" / "config.json").write_text("{}")
    (run_dir / "merged").mkdir()
    (run_dir / "merged" / "model.safetensors").write_bytes(b"merged")

    files = dict(pushable_files(run_dir))

    model_files = {path.name for path in (run_dir / "model").iterdir() if path.is_file()} - {"optimizer.pt"}
    assert set(files) == model_files | {"metrics.json", "run.json", "spec.yaml", "report.md", "confusion_matrix.png"}
    assert files["README.md"] == run_dir / "model" / "README.md"
    assert files["model.safetensors"] == run_dir / "model" / "model.safetensors"
    assert [name for name, _ in pushable_files(run_dir)] == sorted(files)


def test_merged_model_is_pushed_only_when_there_is_no_model_folder(run_dir):
    shutil.move(run_dir / "model", run_dir / "merged")
    files = dict(pushable_files(run_dir))
    assert files["model.safetensors"] == run_dir / "merged" / "model.safetensors"


def test_a_folder_without_a_model_is_refused(tmp_path):
    (tmp_path / "metrics.json").write_text("{}")
    with pytest.raises(SpecError, match="no saved model"):
        pushable_files(tmp_path)


# ---------------------------------------------------------------------------------------------
# Pushing


def test_push_uploads_one_commit_tags_it_and_records_it(fake_hub, run_dir, capsys):
    before = snapshot(run_dir)

    result = push_run(run_dir, tag="v1.0.0")

    remote = fake_hub.files(REPO)
    local = dict(pushable_files(run_dir))
    for name, path in local.items():
        if name != "run.json":  # run.json gained the hub record after the upload
            assert remote[name] == path.read_bytes(), name
    assert json.loads(remote["run.json"]) == without_hub(run_dir / "run.json")
    assert set(remote) == set(local) | {".gitattributes"}
    assert not any("checkpoint" in name or "optimizer" in name for name in remote)
    assert remote["model.safetensors"] == (run_dir / "model" / "model.safetensors").read_bytes()

    assert [commit["message"] for commit in fake_hub.commits] == ["Train tiny: validation f1_macro=0.8312"]
    commit = fake_hub.commits[0]["oid"]
    repo = fake_hub.repo(REPO)
    assert repo.tags == {"v1.0.0": commit} and repo.branches["main"] == commit and repo.private

    expected = {"repo_id": REPO, "url": f"{fake_hub.url}/{REPO}", "commit": commit, "tag": "v1.0.0", "revision": "main"}
    assert result == expected
    assert json.loads((run_dir / "run.json").read_text())["hub"] == expected
    after = snapshot(run_dir)
    assert {name for name in after if after[name] != before.get(name)} == {"run.json"}
    assert set(after) == set(before)  # no temporary file left behind

    out = capsys.readouterr().out
    assert f"{fake_hub.url}/{REPO}" in out and commit in out


def test_pushed_model_loads_with_a_pipeline_and_predicts_the_same(fake_hub, run_dir):
    from transformers import pipeline

    push_run(run_dir)

    local = pipeline("text-classification", model=str(run_dir / "model"), device="cpu", top_k=None)
    remote = pipeline("text-classification", model=REPO, device="cpu", top_k=None)

    downloads = [r["path"] for r in fake_hub.requests if r["kind"] == "resolve" and r["method"] == "GET"]
    assert any(path.startswith(f"/{REPO}/resolve/") and path.endswith("/model.safetensors") for path in downloads)
    assert remote.model.config.id2label == LABELS
    texts = ["i love this film", "what a terrible day", "so happy"]
    assert remote(texts) == local(texts)


def test_pushed_lora_adapter_loads_with_peft_and_gives_the_same_logits(fake_hub, tmp_path, tiny_model_dir):
    import torch
    from peft import AutoPeftModelForSequenceClassification, LoraConfig, TaskType, get_peft_model
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    # The base model lives on the Hub too; the adapter names it.
    fake_hub.upload(BASE_REPO, {path.name: path for path in tiny_model_dir.iterdir()}, private=True)
    base = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir)
    lora = LoraConfig(
        task_type=TaskType.SEQ_CLS, r=4, lora_alpha=8, target_modules=["query", "value"], init_lora_weights=False
    )
    torch.manual_seed(1)
    adapted = get_peft_model(base, lora).eval()
    adapted.peft_config["default"].base_model_name_or_path = BASE_REPO
    run_dir = tmp_path / "lora-run"
    run_dir.mkdir()
    adapter_dir = tmp_path / "adapter"
    adapted.save_pretrained(adapter_dir)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(adapter_dir)
    make_run(run_dir, adapter_dir, hub={"repo_id": "tester/tiny-lora"})
    assert json.loads((run_dir / "model" / "adapter_config.json").read_text())["base_model_name_or_path"] == BASE_REPO

    push_run(run_dir)

    assert "adapter_model.safetensors" in fake_hub.files("tester/tiny-lora")
    remote = AutoPeftModelForSequenceClassification.from_pretrained("tester/tiny-lora").eval()
    tokenizer = AutoTokenizer.from_pretrained("tester/tiny-lora")
    batch = tokenizer(["i love this film", "what a terrible day"], return_tensors="pt", padding=True)
    with torch.no_grad():
        expected, got = adapted(**batch).logits, remote(**batch).logits
        plain = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir).eval()(**batch).logits
    torch.testing.assert_close(got, expected)
    assert not torch.allclose(got, plain)  # the adapter was applied, not just the base model
    base_downloads = [r for r in fake_hub.requests if r["path"].startswith(f"/{BASE_REPO}/resolve/")]
    assert base_downloads


def test_arguments_override_the_spec(fake_hub, run_dir):
    result = push_run(run_dir, repo_id="tester/other", private=False, tag="v2")

    assert result["repo_id"] == "tester/other" and result["tag"] == "v2"
    assert not fake_hub.repo("tester/other").private
    assert ("model", REPO) not in fake_hub.repos


def test_spec_settings_are_the_defaults(fake_hub, tmp_path, tiny_model_dir):
    run_dir = make_run(
        tmp_path / "run", tiny_model_dir, hub={"repo_id": "tester/from-spec", "tag": "v3", "private": False}
    )
    result = push_run(run_dir)

    assert result["repo_id"] == "tester/from-spec" and fake_hub.repo("tester/from-spec").tags.keys() == {"v3"}
    assert not fake_hub.repo("tester/from-spec").private


def test_create_pr_leaves_the_branch_alone(fake_hub, run_dir):
    fake_hub.create_repo(REPO)
    main_before = fake_hub.repo(REPO).branches["main"]

    result = push_run(run_dir, create_pr=True)

    assert result["pr_url"] == f"{fake_hub.url}/{REPO}/discussions/1"
    assert fake_hub.repo(REPO).branches["main"] == main_before
    assert "model.safetensors" in fake_hub.files(REPO, revision="refs/pr/1")


def test_push_to_a_new_branch(fake_hub, run_dir):
    result = push_run(run_dir, revision="experiments")

    assert fake_hub.repo(REPO).branches["experiments"] == result["commit"]
    assert "model.safetensors" not in fake_hub.files(REPO, revision="main")


# ---------------------------------------------------------------------------------------------
# Failures


@pytest.mark.parametrize("status", [500, 503, 429, 0])  # 0: the connection drops without an answer
def test_transient_failure_of_the_commit_is_retried(fake_hub, run_dir, capsys, status):
    fake_hub.fail_next("commit", times=1, status=status)

    result = push_run(run_dir)

    attempts = [r["status"] for r in fake_hub.requests if r["kind"] == "commit"]
    assert attempts == [status, 200]
    assert [commit["oid"] for commit in fake_hub.commits] == [result["commit"]]
    assert "retrying" in capsys.readouterr().err


def test_push_that_keeps_failing_names_the_command_to_retry(fake_hub, run_dir):
    fake_hub.fail_next("commit", times=10, status=502)
    before = snapshot(run_dir)

    with pytest.raises(RunError) as raised:
        push_run(run_dir, tag="v1.0.0", attempts=3)

    assert raised.value.exit_code == 1
    assert "after 3 attempts" in raised.value.message
    assert raised.value.hint.endswith(f"runner push {run_dir} --repo {REPO} --tag v1.0.0")
    assert len([r for r in fake_hub.requests if r["kind"] == "commit"]) == 3
    assert snapshot(run_dir) == before
    assert fake_hub.repo(REPO).tags == {}


def test_rejected_token_is_a_run_error_naming_hf_token(fake_hub, run_dir, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_wrongTOKEN000000000000")
    before = snapshot(run_dir)

    with pytest.raises(RunError, match="HF_TOKEN") as raised:
        push_run(run_dir)

    assert raised.value.exit_code == 1
    assert "rejected" in raised.value.message and "runner push" in raised.value.hint
    assert snapshot(run_dir) == before
    assert fake_hub.commits == [] and fake_hub.repos == {}


def test_forbidden_is_a_run_error_naming_hf_token(fake_hub, run_dir):
    fake_hub.fail_next("create_repo", status=403)
    fake_hub.fail_next("info", status=403)  # the client then checks whether the repo exists
    before = snapshot(run_dir)

    with pytest.raises(RunError, match="HF_TOKEN"):
        push_run(run_dir)
    assert snapshot(run_dir) == before


def test_missing_token_is_a_run_error_naming_hf_token(fake_hub, run_dir, monkeypatch):
    monkeypatch.delenv("HF_TOKEN")
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    before = snapshot(run_dir)

    with pytest.raises(RunError, match="HF_TOKEN") as raised:
        push_run(run_dir)

    assert "hf auth login" in raised.value.hint
    assert fake_hub.requests == []
    assert snapshot(run_dir) == before


def test_cached_login_is_used_when_hf_token_is_unset(fake_hub, run_dir, monkeypatch, tmp_path):
    from huggingface_hub import constants

    monkeypatch.delenv("HF_TOKEN")
    Path(constants.HF_TOKEN_PATH).write_text(TEST_TOKEN)

    assert push_run(run_dir)["commit"] == fake_hub.commits[0]["oid"]


@pytest.mark.parametrize("repo_id", ["no-namespace", "a/b/c", "me/bad name", "me/x--y", "me/" + "x" * 97])
def test_invalid_repo_id_is_a_spec_error(fake_hub, run_dir, repo_id):
    with pytest.raises(SpecError) as raised:
        push_run(run_dir, repo_id=repo_id)

    assert raised.value.exit_code == 2 and raised.value.where == "hub.repo_id"
    assert fake_hub.requests == []


def test_missing_repo_id_is_a_spec_error(fake_hub, tmp_path, tiny_model_dir):
    run_dir = make_run(tmp_path / "run", tiny_model_dir, hub={"repo_id": None})
    with pytest.raises(SpecError, match="no Hub repository") as raised:
        push_run(run_dir)
    assert raised.value.where == "hub.repo_id" and "--repo" in raised.value.hint


def test_existing_tag_is_refused_before_anything_is_committed(fake_hub, run_dir):
    fake_hub.upload(REPO, {"old.txt": b"old"})
    fake_hub.repo(REPO).tags["v1.0.0"] = fake_hub.repo(REPO).branches["main"]
    before = snapshot(run_dir)

    with pytest.raises(RunError, match="already exists"):
        push_run(run_dir, tag="v1.0.0")

    assert fake_hub.commits == [] and snapshot(run_dir) == before


def test_invalid_model_card_metadata_fails_before_anything_is_committed(fake_hub, run_dir):
    (run_dir / "model" / "README.md").write_text("---\nlicense: [unclosed\n---\n# tiny\n", encoding="utf-8")
    before = snapshot(run_dir)

    with pytest.raises(RunError, match="README.md") as raised:
        push_run(run_dir)

    assert "runner push" in raised.value.hint
    assert fake_hub.commits == [] and snapshot(run_dir) == before


def test_token_is_never_written_or_printed(fake_hub, run_dir, capfd, caplog, tmp_path):
    from huggingface_hub import constants
    from transformers import pipeline

    caplog.set_level(logging.DEBUG)
    fake_hub.fail_next("commit", status=500)  # exercise the retry message too
    push_run(run_dir, tag="v1.0.0")
    pipeline("text-classification", model=REPO, device="cpu")
    with pytest.raises(SpecError):
        push_run(run_dir, repo_id="tester/../x")

    captured = capfd.readouterr()
    assert TEST_TOKEN not in captured.out + captured.err + caplog.text
    hf_home = Path(constants.HF_HOME)
    assert any(hf_home.rglob("*.safetensors"))  # the download really went through this cache
    for folder in (run_dir, hf_home):
        for path in folder.rglob("*"):
            if path.is_file():
                assert TEST_TOKEN.encode() not in path.read_bytes(), path


def test_the_fake_hub_also_serves_datasets_to_load_dataset(fake_hub):
    """Not about pushing: keeps tests/support/hub_server.py honest for tests that download Hub datasets."""
    import datasets

    fake_hub.upload(
        "tester/emotions",
        {"train.csv": "text,label\nhi,0\nbye,1\n", "test.csv": "text,label\nyo,1\n"},
        repo_type="dataset",
        private=True,
    )

    loaded = datasets.load_dataset("tester/emotions")

    assert loaded["train"]["text"] == ["hi", "bye"] and loaded["test"].num_rows == 1
