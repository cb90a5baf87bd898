"""Logs for machines and people (runner.train.progress). With stderr not a terminal (CI, a pipe, a file), a real
`runner run` writes no `\\r` frame and no colour escape at all: progress is a line every 10% of the steps; the
new classification head every fine-tune adds is one line of runner's, not transformers' LOAD REPORT, while
any other row of that report (an unexpected key) still shows. Then the pieces: Lines on a clock of its own,
the report's rows split, and a variable the user set left alone."""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import sys

import pytest
from conftest import labelled_rows, run_cli, tiny_spec_text, write_csv, write_spec

from runner.train import progress

HEAD = "model: new classification head (classifier.weight, classifier.bias), as every fine-tune starts"


@pytest.fixture(scope="module")
def headless_with_extra_key(tiny_model, tmp_path_factory):
    """The tiny BERT as a pretrained checkpoint ships: the backbone without a classification head, plus one
    weight no BERT has (`encoder.layer.0.extra_weight`), which transformers reports as UNEXPECTED."""
    import torch
    from safetensors.torch import load_file, save_file
    from transformers import BertForSequenceClassification

    folder = tmp_path_factory.mktemp("headless")
    BertForSequenceClassification.from_pretrained(tiny_model).bert.save_pretrained(folder)
    for name in os.listdir(tiny_model):
        if name.startswith(("tokenizer", "special_tokens", "vocab")):
            shutil.copy(tiny_model / name, folder / name)
    weights = load_file(folder / "model.safetensors")
    weights["encoder.layer.0.extra_weight"] = torch.zeros(3)
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    return folder


def test_a_run_with_stderr_to_a_pipe_writes_lines(headless_with_extra_key, tmp_path):
    write_csv(tmp_path / "data" / "train.csv", labelled_rows(per_label=60))  # 96 training rows: 12 steps
    spec = write_spec(tmp_path, tiny_spec_text(headless_with_extra_key))
    done = run_cli("run", str(spec), cwd=tmp_path)  # stdout and stderr are pipes
    assert done.returncode == 0, done.stderr[-3000:]
    out, err = done.stdout, done.stderr
    assert "\r" not in out + err, [line for line in (out + err).split("\n") if "\r" in line][:3]
    assert "\x1b" not in out + err  # no colour escapes either
    steps = [line for line in err.splitlines() if line.startswith("train: ")]
    assert len(steps) >= 5 and all(re.fullmatch(r"train: step \d+ of 12 \(\d+%\), epoch [0-9.]+, \d+s elapsed"
                                                 r"(, about \d+s left)?", line) for line in steps), steps
    percents = [int(re.search(r"\((\d+)%\)", line).group(1)) for line in steps]
    assert percents == sorted(percents) and percents[-1] == 100
    assert err.splitlines().count(HEAD) == 1 and HEAD not in out  # runner's own line, once, beside the warnings
    report = err.replace(HEAD, "")  # the report without runner's own line
    assert "classifier.weight" not in report and "MISSING" not in report and "newly initialized" not in report
    assert "BertForSequenceClassification LOAD REPORT" in err  # the rest of the report still shows
    assert re.search(r"encoder\.layer\.0\.extra_weight\s*\|\s*UNEXPECTED", err), err[-3000:]
    assert "- UNEXPECTED:" in err
    assert "{'loss':" in out  # the Trainer's log lines stay where they were


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_lines_every_tenth_or_every_minute():
    clock, said = Clock(), []
    lines = progress.Lines("train", 1000, "step", clock=clock, say=said.append)
    for step in range(1, 1001):
        clock.now += 0.01
        lines.update(step)
    assert len(said) == 10 and said[0].startswith("train: step 100 of 1000 (10%)") and "left" in said[0]
    assert said[-1].startswith("train: step 1000 of 1000 (100%)") and "left" not in said[-1]
    said.clear()
    slow = progress.Lines("train", 1000, "step", clock=clock, say=said.append)
    for step in range(1, 51):  # 50 steps of 5 s each, no 10% crossed: a line a minute
        clock.now += 5
        slow.update(step)
    assert len(said) == 4 and said[0] == "train: step 12 of 1000 (1%), 1m00s elapsed, about 1h22m left"
    said.clear()
    quick = progress.Lines("evaluate", 4, "batch", percent=False, clock=clock, say=said.append)
    for batch in range(1, 5):
        quick.update(batch)
    assert said == []  # an evaluation of a few seconds says nothing
    unknown = progress.Lines("predict", None, "batch", clock=clock, say=said.append)  # no total: by time alone
    clock.now += 30
    unknown.update(3)
    clock.now += 31
    unknown.update(7)
    assert said == ["predict: batch 7, 1m01s elapsed"]


def test_bar_is_lines_off_a_terminal(capsys):
    assert list(progress.bar(range(25), "predict", "batch")) == list(range(25))
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 10 and err[-1].startswith("predict: batch 25 of 25 (100%)")


REPORT = "\n".join([  # as transformers 5 logs it (utils/loading_report.py), colours and trailing spaces kept
    "\x1b[1mBertForSequenceClassification LOAD REPORT\x1b[0m from: somewhere",
    "Key                       | Status     | ",
    "--------------------------+------------+-",
    "{rows}",
    "",
    "Notes:",
    "- UNEXPECTED:\tcan be ignored when loading from different task/architecture; not ok if you expect identical arch.",
    "- MISSING:\tthose params were newly initialized because missing from the checkpoint. Consider training on your "
    "downstream task.",
    "- MISMATCH:\tckpt weights were loaded, but they did not match the original empty weight shapes.",
])


def record(rows: list[str]) -> logging.LogRecord:
    return logging.LogRecord("transformers.modeling_utils", logging.WARNING, __file__, 1,
                             REPORT.format(rows="\n".join(rows)), None, None)


def test_only_the_heads_rows_are_taken_out(capsys):
    notice = progress.HeadNotice()
    notice.said = set()
    head = ["classifier.bias           | MISSING    | ", "classifier.weight         | MISSING    | "]
    assert notice.filter(record(head)) is False  # nothing else: the report is dropped
    assert capsys.readouterr().err == HEAD + "\n"  # on stderr: stdout is predict's and eval's output
    pooler = record(head + ["bert.pooler.dense.weight  | MISSING    | "])  # inside the backbone: a real warning
    assert notice.filter(pooler) is True
    kept = pooler.getMessage()
    assert "bert.pooler.dense.weight" in kept and "classifier" not in kept and "- MISSING:" in kept
    assert "- UNEXPECTED:" not in kept and "\x1b" not in kept
    assert capsys.readouterr().err == ""  # the same head of the same model: said once
    mismatch = record(["classifier.weight         | MISMATCH   | Reinit due to size mismatch",
                       "classifier.bias           | MISMATCH   | Reinit due to size mismatch"])
    notice.said = set()
    assert notice.filter(mismatch) is False
    assert capsys.readouterr().err.startswith("model: new classification head (classifier.weight, classifier.bias), "
                                              "as every fine-tune starts; the checkpoint's own head")
    odd = logging.LogRecord("transformers.modeling_utils", logging.WARNING, __file__, 1,
                            "SomeModel LOAD REPORT from: x\nno table here", None, None)
    assert notice.filter(odd) is True and odd.getMessage().endswith("no table here")  # unread: passed on


def test_a_variable_the_user_set_is_left_alone():
    code = ("import os, runner.cli; runner.cli.main(['schema'], standalone_mode=False)\n"
            "print(os.environ.get('HF_HUB_DISABLE_PROGRESS_BARS'), "
            "os.environ.get('HF_DATASETS_DISABLE_PROGRESS_BARS'))")
    env = {**os.environ, "HF_HUB_DISABLE_PROGRESS_BARS": "0"}
    env.pop("HF_DATASETS_DISABLE_PROGRESS_BARS", None)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.stdout.splitlines()[-1].split() == ["0", "1"], done.stderr[-2000:]


def test_the_checkpoint_order_notice_is_dropped_and_other_warnings_stay(tmp_path):
    """Two checkpoints saved within a second (a small model) made transformers say "mtime may not be reliable on
    this filesystem" in every such run: its own ordering falls back to the step, which is right, so the line
    goes; the logger's other warnings still show. The records are taken at the logger itself, whatever
    handlers and levels earlier tests left on transformers' loggers."""
    from transformers.trainer_utils import sort_checkpoints

    for step in (4, 8):
        (tmp_path / f"checkpoint-{step}").mkdir()
    logger = logging.getLogger("transformers.trainer_utils")
    seen: list[str] = []
    collector = logging.Handler(logging.WARNING)
    collector.emit = lambda record: seen.append(record.getMessage())
    level = logger.level
    logger.addHandler(collector)
    logger.setLevel(logging.WARNING)
    try:
        progress.install_head_notice()
        logger.warning_once.cache_clear()  # transformers says it once a process
        ordered = sort_checkpoints(str(tmp_path), use_mtime=True)
        logger.warning("another warning")
    finally:
        logger.removeHandler(collector)
        logger.setLevel(level)
    assert [os.path.basename(p) for p in ordered] == ["checkpoint-4", "checkpoint-8"]
    assert seen == ["another warning"]
