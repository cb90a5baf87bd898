"""A catalogue of bad inputs: the spec, the data, the model, the output folder and the Hub.

Each case writes a small workspace (a tiny model, a data file, a spec, and an earlier finished run
in the output folder), runs the real `runner` command, and checks what the user sees: the exit
code (2 for the user's input, 1 for a failure at run time), one line `error: <where>: <message>`
naming the place (file, line or row, spec path), a `hint:` line, no traceback, and that every
file that was there before, the earlier run included, is still there unchanged.

Most cases run the click command in this process (fast); a few run the CLI in a subprocess.
Set RUNNER_CATALOGUE=path.md to write the table of cases and their messages.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import labelled_rows, run_cli, tiny_spec_text, write_csv

from runner.cli import main

CATALOGUE: list[tuple[str, int, str]] = []


@dataclass
class Workspace:
    root: Path
    model: Path

    def write(self, relative: str, content: str | bytes) -> Path:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        return path

    def spec(
        self, extra: str = "", train: str = "data/train.csv", output: str = "run", replace: dict | None = None
    ) -> list[str]:
        """Write spec.yaml (the tiny spec, edited) and return the arguments of `runner run` on it."""
        text = tiny_spec_text(self.model, train=train, extra=extra, output=output)
        for old, new in (replace or {}).items():
            assert old in text, old
            text = text.replace(old, new)
        self.write("spec.yaml", text)
        return ["run", "spec.yaml", "--overwrite"]


@dataclass
class Case:
    name: str
    setup: object  # Workspace -> the command's arguments
    exit_code: int
    message: str  # a regex the first error line must match (after "error: ")
    where: str  # what the error line must name: a file, file:line, or a spec path
    subprocess: bool = False
    env: dict | None = None


CASES: list[Case] = []


def case(name: str, exit_code: int, message: str, where: str, **options):
    def register(setup):
        CASES.append(Case(name, setup, exit_code, message, where, **options))
        return setup

    return register


def csv_text(rows: list[tuple]) -> str:
    return "text,label\n" + "".join(",".join(map(str, row)) + "\n" for row in rows)


GOOD_ROWS = [(row["text"], row["label"]) for row in labelled_rows(per_label=10)]

# ---------------------------------------------------------------------------------------------
# The spec


@case("YAML that is not a mapping", 2, r"the spec must be a mapping of keys to values, not a list", "spec.yaml:1:1")
def _(ws):
    ws.write("spec.yaml", "- version: 1\n- data: {train: data/train.csv}\n")
    return ["run", "spec.yaml", "--overwrite"]


@case("spec that is only a comment", 2, r"the spec is empty", "spec.yaml:1:1")
def _(ws):
    ws.write("spec.yaml", "# TODO: write the spec\n")
    return ["run", "spec.yaml", "--overwrite"]


@case(
    "YAML syntax error",
    2,
    r"YAML syntax error while parsing a flow sequence \(starting here\): .* at spec\.yaml:5:6",
    "spec.yaml:4:17",
)
def _(ws):
    ws.write("spec.yaml", "version: 1\ndata:\n  train: data/train.csv\n  label_column: [label\nmodel:\n  name: x\n")
    return ["run", "spec.yaml", "--overwrite"]


@case("duplicate key", 2, r"duplicate key 'seed' \(first at line 3\)", "spec.yaml:4:1 seed")
def _(ws):
    return ws.spec(replace={"seed: 7\n": "seed: 7\nseed: 8\n"})


@case("misspelt key", 2, r"unknown key 'epoch'", "spec.yaml:10:3 train.epoch")
def _(ws):
    return ws.spec(replace={"epochs: 1": "epoch: 1"})


@case("value of the wrong type", 2, r'expected number, got "three"', "spec.yaml:10:11 train.epochs")
def _(ws):
    return ws.spec(replace={"epochs: 1": "epochs: three"})


@case("spec file not UTF-8", 2, r"the spec is not UTF-8 text \(byte \d+\)", "spec.yaml")
def _(ws):
    ws.write("spec.yaml", "version: 1\nname: caf\xe9\n".encode("latin-1"))
    return ["run", "spec.yaml", "--overwrite"]


@case("spec path is a folder", 2, r"the spec path is a folder", "data")
def _(ws):
    return ["run", "data", "--overwrite"]


@case("spec file missing", 2, r"spec file not found", "missing.yaml")
def _(ws):
    return ["run", "missing.yaml", "--overwrite"]


@case("YAML tag that would run code", 2, r"YAML syntax error: could not determine a constructor", "spec.yaml:2:")
def _(ws):
    ws.write("spec.yaml", "version: 1\ndata: !!python/object/apply:os.system ['touch pwned']\n")
    return ["run", "spec.yaml", "--overwrite"]


@case(
    "save_strategy steps without save_steps",
    2,
    r"train.save_strategy is 'steps' but train.save_steps is not set",
    "spec.yaml:11:18 train.save_strategy",
)
def _(ws):
    return ws.spec(
        replace={"epochs: 1\n": "epochs: 1\n  save_strategy: steps\n  eval_strategy: steps\n  eval_steps: 5\n"}
    )


@case("--set without a value", 2, r"--set 'train.epochs' is not KEY=VALUE", "")
def _(ws):
    return ws.spec() + ["--set", "train.epochs"]


# compute.*: the rules across its keys are spec errors `runner validate` places (and `run` refuses the same)
NODES = "compute:\n  nnodes: 2\n  rdzv_endpoint: 127.0.0.1:29500\n"  # lines 17-19 of the tiny spec


@case("node_rank not below nnodes (validate)", 2, r"compute.node_rank is 2, not a node rank from 0 to 1",
      "spec.yaml:20:14 compute.node_rank")
def _(ws):
    return ["validate", ws.spec(extra=NODES + "  node_rank: 2\n")[1]]


@case("node_rank not below nnodes, from --set (validate)", 2, r"compute.node_rank is 5, not a node rank from 0 to 1",
      "--set compute.node_rank")
def _(ws):
    return ["validate", ws.spec(extra=NODES)[1], "--set", "compute.node_rank=5"]


@case("node_rank given on one machine (validate)", 2, r"compute.node_rank is 1, not a node rank from 0 to 0",
      "spec.yaml:18:14 compute.node_rank")
def _(ws):
    return ["validate", ws.spec(extra="compute:\n  node_rank: 1\n")[1]]


@case("several machines without rdzv_endpoint (run; a spec for `runner sky` validates without one)", 2,
      r"compute.nnodes is 2 but compute.rdzv_endpoint is not set", "spec.yaml:18:11 compute.nnodes")
def _(ws):
    return ws.spec(extra="compute:\n  nnodes: 2\n  node_rank: 0\n")


@case("rdzv_endpoint port above 65535 (validate)", 2, r'"127.0.0.1:99999" is not a valid value here',
      "spec.yaml:19:18 compute.rdzv_endpoint")
def _(ws):
    return ["validate", ws.spec(extra=NODES.replace("29500", "99999"))[1]]


@case("rdzv_endpoint port 0 (run)", 2, r'"node0:0" is not a valid value here', "spec.yaml:19:18 compute.rdzv_endpoint")
def _(ws):
    return ws.spec(extra=NODES.replace("127.0.0.1:29500", "node0:0"))


@case("several machines with search (validate)", 2, r"search and cross-validation train in one process",
      "spec.yaml:18:11 compute.nnodes")
def _(ws):
    return ["validate", ws.spec(extra=NODES + "search:\n  trials: 2\n")[1]]


@case("NODE_RANK in superscript digits", 2,
      r"NODE_RANK='²' in the environment is not a node rank from 0 to 1 \(compute.nnodes is 2\)",
      "spec.yaml:18:11 compute.nnodes", env={"NODE_RANK": "²", "SKYPILOT_NODE_RANK": None})
def _(ws):
    return ws.spec(extra=NODES)


@case("SKYPILOT_NODE_RANK in Arabic-Indic digits", 2,
      r"SKYPILOT_NODE_RANK='١' in the environment is not a node rank from 0 to 1",
      "spec.yaml:18:11 compute.nnodes", env={"NODE_RANK": None, "SKYPILOT_NODE_RANK": "١"})
def _(ws):
    return ws.spec(extra=NODES)


@case("NODE_RANK not below nnodes", 2, r"NODE_RANK='2' in the environment is not a node rank from 0 to 1",
      "spec.yaml:18:11 compute.nnodes", env={"NODE_RANK": "2", "SKYPILOT_NODE_RANK": None})
def _(ws):
    return ws.spec(extra=NODES)


# ---------------------------------------------------------------------------------------------
# The data


@case("data path is a folder", 2, r"'data' is a folder, not a data file", "spec.yaml:5:10 data.train")
def _(ws):
    return ws.spec(train="data")


@case("data file missing", 2, r"data file 'data/missing.csv' not found", "spec.yaml:5:10 data.train")
def _(ws):
    return ws.spec(train="data/missing.csv")


@case("CSV with only a header", 2, r"the file has no data rows", "data/header.csv")
def _(ws):
    ws.write("data/header.csv", "text,label\n")
    return ws.spec(train="data/header.csv")


@case("empty CSV file", 2, r"the file is empty", "data/empty.csv")
def _(ws):
    ws.write("data/empty.csv", "")
    return ws.spec(train="data/empty.csv")


@case(
    "CSV row with too many fields",
    2,
    r"cannot parse the CSV file: .*Expected 2 fields in line 5, saw 3",
    "data/fields.csv:5",
)
def _(ws):
    ws.write(
        "data/fields.csv",
        csv_text(GOOD_ROWS[:3]) + "it was good, really,pos\n" + csv_text(GOOD_ROWS[3:]).split("\n", 1)[1],
    )
    return ws.spec(train="data/fields.csv")


def _jsonl_with(ws, name: str, index: int, line: str):
    """The good rows as JSONL, with line `index` (from 0) replaced by `line`; the spec that trains on it."""
    lines = [json.dumps({"text": t, "label": label}) for t, label in GOOD_ROWS]
    lines[index] = line
    ws.write(name, "\n".join(lines) + "\n")
    return ws.spec(train=name)


@case("JSONL with one broken line", 2, r"line 3 is not valid JSON", "data/broken.jsonl:3")
def _(ws):
    return _jsonl_with(ws, "data/broken.jsonl", 2, '{"text": "a day", "label": pos}')


@case("JSONL line that is a list", 2, r"line 2 is an array, not a JSON object", "data/list.jsonl:2")
def _(ws):
    return _jsonl_with(ws, "data/list.jsonl", 1, '["a day", "pos"]')


@case("JSONL line that is null", 2, r"line 3 is null, not a JSON object", "data/null.jsonl:3")
def _(ws):
    return _jsonl_with(ws, "data/null.jsonl", 2, "null")


def _header_twice(ws, suffix: str, sep: str) -> list[str]:
    rows = "".join(sep.join((t, label, "other words")) + "\n" for t, label in GOOD_ROWS)
    ws.write(f"data/twice.{suffix}", sep.join(("text", "label", "text")) + "\n" + rows)
    return ws.spec(train=f"data/twice.{suffix}")


@case("CSV header naming a column twice", 2, r"the header names column 'text' twice \(columns 1 and 3\)",
      "data/twice.csv:1")
def _(ws):
    return _header_twice(ws, "csv", ",")


@case("TSV header naming a column twice", 2, r"the header names column 'text' twice \(columns 1 and 3\)",
      "data/twice.tsv:1")
def _(ws):
    return _header_twice(ws, "tsv", "\t")


@case("JSONL row naming a key twice", 2, r"line 3 names the key 'text' twice", "data/twice.jsonl:3")
def _(ws):
    return _jsonl_with(ws, "data/twice.jsonl", 2, '{"text": "a good day", "label": "pos", "text": "a sad day"}')


@case("JSON row naming a key twice", 2, r"the key 'label' is named twice in one object \(row 2\)", "data/twice.json")
def _(ws):
    rows = [json.dumps({"text": t, "label": label}) for t, label in GOOD_ROWS]
    rows[1] = '{"text": "a good day", "label": "pos", "label": "neg"}'
    ws.write("data/twice.json", "[" + ",\n".join(rows) + "]\n")
    return ws.spec(train="data/twice.json")


@case("Parquet list<string> text column", 2,
      r"the text column 'text' \(data.text_column\) holds an array in row 1, not a string \(19 more row",
      "data/lists.parquet:1")
def _(ws):
    import pandas as pd

    (ws.root / "data").mkdir(exist_ok=True)
    frame = pd.DataFrame({"text": [t.split() for t, _ in GOOD_ROWS], "label": [label for _, label in GOOD_ROWS]})
    frame.to_parquet(ws.root / "data" / "lists.parquet")
    return ws.spec(train="data/lists.parquet")


def _text_value(ws, name: str, value, row: int = 4) -> list[str]:
    rows = [{"text": t, "label": label} for t, label in GOOD_ROWS]
    rows[row - 1]["text"] = value
    ws.write(f"data/{name}.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    return ws.spec(train=f"data/{name}.jsonl")


@case("JSONL text that is an object", 2, r"the text column 'text' \(data.text_column\) holds an object in row 4, "
      r"not a string$", "data/object.jsonl:4")
def _(ws):
    return _text_value(ws, "object", {"en": "a good day"})


@case("JSONL text that is a number", 2, r"holds a number in row 4, not a string", "data/number.jsonl:4")
def _(ws):
    return _text_value(ws, "number", 42)


@case("JSONL text that is true", 2, r"holds true in row 4, not a string", "data/true.jsonl:4")
def _(ws):
    return _text_value(ws, "true", True)


@case("JSONL text pair that is an array", 2,
      r"the text column 'pair' \(data.text_pair_column\) holds an array in row 2, not a string", "data/pair.jsonl:2")
def _(ws):
    rows = [{"text": t, "pair": "and so on", "label": label} for t, label in GOOD_ROWS]
    rows[1]["pair"] = ["and", "so", "on"]
    ws.write("data/pair.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    return ws.spec(train="data/pair.jsonl", extra="task: text_pair_classification\n",
                   replace={"train: data/pair.jsonl\n": "train: data/pair.jsonl\n  text_pair_column: pair\n"})


@case(
    "CSV in another encoding", 2, r"the file is not valid utf-8 text \(byte \d+ cannot be decoded\)", "data/latin1.csv"
)
def _(ws):
    ws.write("data/latin1.csv", (csv_text(GOOD_ROWS) + "un café très bon,pos\n").encode("latin-1"))
    return ws.spec(train="data/latin1.csv")


@case("unknown encoding name", 2, r"unknown encoding 'klingon'", "data/train.csv")
def _(ws):
    return ws.spec(replace={"train: data/train.csv\n": "train: data/train.csv\n  encoding: klingon\n"})


@case(
    "NaN and empty texts (empty_text: fail)",
    2,
    r"3 row\(s\) have an empty or missing text \(rows 2, 4, 6\)",
    "data/nan.jsonl",
)
def _(ws):
    lines = [json.dumps({"text": t, "label": label}) for t, label in GOOD_ROWS]
    lines[1], lines[3], lines[5] = (
        '{"text": NaN, "label": "pos"}',
        '{"text": "  ", "label": "neg"}',
        '{"text": null, "label": "pos"}',
    )
    ws.write("data/nan.jsonl", "\n".join(lines) + "\n")
    return ws.spec(
        train="data/nan.jsonl", replace={"train: data/nan.jsonl\n": "train: data/nan.jsonl\n  empty_text: fail\n"}
    )


@case("every text empty", 2, r"every row has an empty text", "data/blank.csv")
def _(ws):
    ws.write("data/blank.csv", csv_text([("", label) for _, label in GOOD_ROWS]))
    return ws.spec(train="data/blank.csv")


@case(
    "labels numbers in one row, strings in another (JSONL)",
    2,
    r"the label column mixes numbers and text: row 4 has 1, row 1 has 'pos'",
    "data/mixed.jsonl:4",
)
def _(ws):
    rows = [{"text": t, "label": "pos"} for t, _ in GOOD_ROWS[:10]] + [
        {"text": t, "label": "neg"} for t, _ in GOOD_ROWS[10:]
    ]
    rows[3]["label"] = 1
    ws.write("data/mixed.jsonl", "".join(json.dumps(row) + "\n" for row in rows))
    return ws.spec(train="data/mixed.jsonl")


@case(
    "labels numbers in one row, strings in another (CSV)",
    2,
    r"the label column mixes numbers and text: row 3 has '0', row 2 has '\w+'",
    "data/mixed.csv:3",
)
def _(ws):
    rows = list(GOOD_ROWS)
    rows[1] = (rows[1][0], 0)
    ws.write("data/mixed.csv", csv_text(rows))
    return ws.spec(train="data/mixed.csv")


@case(
    "label column that looks like free text",
    2,
    r"the label column 'label' has 300 distinct values in 300 rows; it looks like free text",
    "data/free.csv",
)
def _(ws):
    ws.write("data/free.csv", "text,label\n" + "".join(f"a day,note number {i} about the day\n" for i in range(300)))
    return ws.spec(train="data/free.csv")


@case(
    "text column not in the file",
    2,
    r"column 'txt' \(data.text_column\) not found; the file has: text, label",
    "data/train.csv",
)
def _(ws):
    return ws.spec(replace={"train: data/train.csv\n": "train: data/train.csv\n  text_column: txt\n"})


@case("rows without a label", 2, r"2 row\(s\) have no label \(rows 3, 7\)", "data/nolabel.csv:3")
def _(ws):
    rows = list(GOOD_ROWS)
    rows[1], rows[5] = (rows[1][0], ""), (rows[5][0], "")
    ws.write("data/nolabel.csv", csv_text(rows))
    return ws.spec(train="data/nolabel.csv")


@case("label outside the spec's labels", 2, r"row\(s\) have labels outside the spec's labels: 'neg'", "data/train.csv")
def _(ws):
    return ws.spec(extra="labels: [pos, neu]\n")


@case("a single class", 2, r"the training data has a single class \('pos'\)", "data/one.csv")
def _(ws):
    ws.write("data/one.csv", csv_text([(t, "pos") for t, _ in GOOD_ROWS]))
    return ws.spec(train="data/one.csv")


@case("unknown file extension", 2, r"cannot tell the format of 'train.txt' from its extension", "data/train.txt")
def _(ws):
    ws.write("data/train.txt", csv_text(GOOD_ROWS))
    return ws.spec(train="data/train.txt")


@case("too few rows to split", 2, r"only 3 usable row\(s\): too few to hold out a validation split", "data/three.csv")
def _(ws):
    ws.write("data/three.csv", csv_text([("a good day", "pos"), ("a sad day", "neg"), ("a fine day", "pos")]))
    return ws.spec(train="data/three.csv")


@case(
    "regression target that is not a number",
    2,
    r"1 row\(s\) have a target that is not a number \(rows 4\)",
    "data/scores.csv",
)
def _(ws):
    ws.write(
        "data/scores.csv",
        csv_text([(t, 0.5) for t, _ in GOOD_ROWS[:2]] + [("a day", "high")] + [(t, 1.5) for t, _ in GOOD_ROWS[2:]]),
    )
    return ws.spec(train="data/scores.csv", extra="task: regression\n")


@case("Parquet file that is not Parquet", 2, r"cannot (parse|read) the (PARQUET )?file", "data/fake.parquet")
def _(ws):
    ws.write("data/fake.parquet", csv_text(GOOD_ROWS))
    return ws.spec(train="data/fake.parquet")


# ---------------------------------------------------------------------------------------------
# The model


@case(
    "LoRA target not in the model",
    2,
    r"lora.target_modules q_lin not found in the model",
    "spec.yaml:19:19 lora.target_modules",
)
def _(ws):
    return ws.spec(extra="lora:\n  r: 4\n  target_modules: [q_lin]\n")


@case("model folder without weights", 2, r"the model folder '.*' has no weights", "spec.yaml:7:9 model.name")
def _(ws):
    folder = ws.root / "noweights"
    folder.mkdir()
    for item in ws.model.iterdir():
        if item.suffix != ".safetensors":
            (folder / item.name).write_bytes(item.read_bytes())
    return ws.spec(replace={f"name: {ws.model}": "name: ./noweights"})


@case("model folder without config.json", 2, r"'./empty-model' has no config.json", "spec.yaml:7:9 model.name")
def _(ws):
    (ws.root / "empty-model").mkdir()
    return ws.spec(replace={f"name: {ws.model}": "name: ./empty-model"})


@case(
    "model folder that does not exist", 2, r"model folder './no-such-model' does not exist", "spec.yaml:7:9 model.name"
)
def _(ws):
    return ws.spec(replace={f"name: {ws.model}": "name: ./no-such-model"})


@case(
    "max_length beyond the model's limit",
    2,
    r"model.max_length 512 is beyond the model's limit of 128 tokens",
    "spec.yaml:8:15 model.max_length",
)
def _(ws):
    return ws.spec(replace={"max_length: 32": "max_length: 512"})


@case(
    "Hub model that cannot be reached",
    1,
    r"cannot load the tokenizer 'nobody-here/no-such-model' from the Hub",
    "spec.yaml:7:9 model.name",
    subprocess=True,
    env={"HF_HUB_OFFLINE": "1", "HF_HOME": "hf-home"},
)
def _(ws):
    return ws.spec(replace={f"name: {ws.model}": "name: nobody-here/no-such-model"})


# ---------------------------------------------------------------------------------------------
# The output folder

OUTPUT_DIR = "spec.yaml:16:8 output.dir"  # where the tiny spec sets its output folder


@case(
    "output folder that cannot be written",
    2,
    r"cannot write to output folder 'data/train.csv/run': Not a directory",
    OUTPUT_DIR,
)
def _(ws):
    return ws.spec(output="data/train.csv/run")


@case("output folder that is a file", 2, r"output folder 'data/train.csv' is a file", OUTPUT_DIR)
def _(ws):
    return ws.spec(output="data/train.csv")


@case("finished run without --overwrite", 2, r"output folder 'run' already holds a finished run", OUTPUT_DIR)
def _(ws):
    return ws.spec()[:-1]


@case(
    "--overwrite on files no run wrote",
    2,
    r"output folder 'mine' holds logs, report.md but no run record",
    OUTPUT_DIR,
)
def _(ws):
    ws.write("mine/logs/notes.txt", "my notes")
    ws.write("mine/report.md", "my report")
    return ws.spec(output="mine")


@case("--resume with no checkpoint", 2, r"nothing to resume: 'fresh/checkpoints' holds no checkpoint", OUTPUT_DIR)
def _(ws):
    return ws.spec(output="fresh")[:-1] + ["--resume"]


@case(
    "--resume on a finished run",
    2,
    r"output folder 'run' holds a finished run: there is nothing to resume",
    OUTPUT_DIR,
)
def _(ws):
    return ws.spec()[:-1] + ["--resume"]


# ---------------------------------------------------------------------------------------------
# The Hub


@case("Hub repo id that is not valid (spec)", 2, r'"my model" is not a valid value here', "spec.yaml:19:12 hub.repo_id")
def _(ws):
    return ws.spec(extra="hub:\n  push: true\n  repo_id: my model\n")


@case("Hub dataset id that is not valid", 2, r'"not a dataset!" is not a valid value here', "spec.yaml:4:9 data.hub.id")
def _(ws):
    ws.write("spec.yaml", "version: 1\ndata:\n  hub:\n    id: not a dataset!\n")
    return ["run", "spec.yaml", "--overwrite"]


@case("push to a repo id that is not valid", 2, r"'a/b/c' is not of the form namespace/name", "hub.repo_id")
def _(ws):
    return ["push", "run", "--repo", "a/b/c"]


# ---------------------------------------------------------------------------------------------
# Running the cases


@pytest.fixture
def workspace(tmp_path, tiny_model, monkeypatch) -> Workspace:
    """The tiny model, data/train.csv, and an earlier finished run in run/ that must survive."""
    ws = Workspace(tmp_path, tiny_model)
    write_csv(tmp_path / "data" / "train.csv", labelled_rows())
    ws.write("run/run.json", json.dumps({"format": 1, "name": "tiny", "spec_sha256": "0", "status": "finished"}))
    ws.write("run/metrics.json", json.dumps({"validation": {"f1_macro": 0.9}}))
    ws.write("run/spec.yaml", "name: tiny\nhub:\n  repo_id: someone/tiny\n")
    ws.write("run/model/config.json", "{}")
    ws.write("run/report.md", "# the earlier run\n")
    monkeypatch.chdir(tmp_path)
    return ws


def snapshot(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def error_lines(stderr: str) -> list[str]:
    """The error and hint lines. A progress bar cut short leaves escape codes and carriage returns
    before the error on its line, which a terminal overwrites."""
    lines = re.split(r"[\r\n]", re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "\n", stderr))
    return [line for line in lines if line.startswith(("error:", "hint:"))]


def invoke(case: Case, args: list[str], root: Path) -> tuple[int, str]:
    """Run the command; returns the exit code and stderr. Asserts that no exception escaped."""
    if case.subprocess:
        env = {key: str(root / value) if key == "HF_HOME" else value for key, value in (case.env or {}).items()}
        done = run_cli(*args, cwd=root, env=env)
        return done.returncode, done.stderr
    result = CliRunner().invoke(main, args, env=case.env)
    assert isinstance(result.exception, SystemExit), f"an exception escaped: {result.exception!r}\n{result.output}"
    return result.exit_code, result.stderr


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input(case: Case, workspace: Workspace):
    args = case.setup(workspace)
    before = snapshot(workspace.root)

    code, stderr = invoke(case, args, workspace.root)

    assert "Traceback" not in stderr, stderr
    lines = error_lines(stderr)
    assert lines and lines[0].startswith("error: "), stderr
    first = lines[0][len("error: ") :]
    CATALOGUE.append((case.name, code, lines[0]))
    assert code == case.exit_code, stderr
    if case.where:
        assert first.startswith(case.where), f"expected the place {case.where!r} in: {first}"
    assert re.search(case.message, first), f"expected {case.message!r} in: {first}"
    assert len(lines) > 1 and lines[1].startswith("hint: ") and len(lines[1]) > len("hint: "), stderr

    after = snapshot(workspace.root)
    lost = {path for path, digest in before.items() if after.get(path) != digest}
    assert not lost, f"files lost or changed: {sorted(lost)}"
    assert not (workspace.root / "pwned").exists()


def test_catalogue_is_large_enough():
    assert len(CASES) >= 25
    groups = {"spec": 0, "data": 0, "model": 0, "hub": 0}
    for c in CASES:
        text = (c.name + " " + c.where).lower()
        for group in groups:
            groups[group] += group in text
    assert all(groups.values()), groups


# ---------------------------------------------------------------------------------------------
# A full disk, simulated: the save fails with ENOSPC; the checkpoints stay, the run can resume.


def _fail_when(path_part: str):
    from transformers import PreTrainedModel

    original = PreTrainedModel.save_pretrained

    def save_pretrained(self, save_directory, *args, **kwargs):
        if path_part in str(save_directory):
            raise OSError(28, "No space left on device", str(save_directory))
        return original(self, save_directory, *args, **kwargs)

    return save_pretrained


@pytest.mark.parametrize(
    "where,extra_epochs", [(".model.tmp", 1), ("checkpoint-16", 2)], ids=["saving the model", "saving a checkpoint"]
)
def test_full_disk(where, extra_epochs, workspace, monkeypatch):
    from transformers import PreTrainedModel

    args = workspace.spec(replace={"epochs: 1": f"epochs: {extra_epochs}"}, output="full")
    original = PreTrainedModel.save_pretrained
    monkeypatch.setattr(PreTrainedModel, "save_pretrained", _fail_when(where))
    earlier = snapshot(workspace.root / "run")

    result = CliRunner().invoke(main, args)

    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == 1, result.output
    lines = error_lines(result.stderr)
    CATALOGUE.append(
        (
            f"full disk while {'saving the model' if where == '.model.tmp' else 'saving a checkpoint'} (simulated)",
            result.exit_code,
            lines[0],
        )
    )
    assert "No space left on device" in lines[0] and "Traceback" not in result.output
    assert lines[1].startswith("hint: free disk space") and "--resume" in lines[1]
    assert snapshot(workspace.root / "run") == earlier
    checkpoints = workspace.root / "full" / "checkpoints"
    assert (checkpoints / "checkpoint-8" / "trainer_state.json").exists()
    assert not (workspace.root / "full" / "model").exists() and not (workspace.root / "full" / ".model.tmp").exists()
    if where == "checkpoint-16":
        assert lines[0].startswith("error: full/checkpoints/checkpoint-16: a write failed while training")
        from runner.train.trainer import latest_checkpoint

        assert latest_checkpoint(workspace.root / "full").name == "checkpoint-8"
        assert not (checkpoints / "checkpoint-16").exists()  # the half-written one is removed: it holds the space
    else:
        assert lines[0].startswith("error: full/model: could not save the model")
        # Space is back: --resume finishes the run from the kept checkpoint without training again.
        monkeypatch.setattr(PreTrainedModel, "save_pretrained", original)
        resumed = CliRunner().invoke(main, args[:-1] + ["--resume"])
        assert resumed.exit_code == 0, resumed.output
        assert (workspace.root / "full" / "model" / "config.json").exists()
        assert json.loads((workspace.root / "full" / "run.json").read_text())["timing"]["global_step"] == 8


def test_full_disk_at_the_first_checkpoint_offers_no_resume(workspace, monkeypatch):
    """The first checkpoint could not be written: --resume would say "holds no complete checkpoint", so the hint
    says to run again, and the half-written checkpoint is removed."""
    from transformers import PreTrainedModel

    args = workspace.spec(output="full")
    monkeypatch.setattr(PreTrainedModel, "save_pretrained", _fail_when("checkpoint-8"))
    result = CliRunner().invoke(main, args)

    assert result.exit_code == 1, result.output
    lines = error_lines(result.stderr)
    assert "No space left on device" in lines[0] and "Traceback" not in result.output
    assert lines[1].startswith("hint: free disk space") and "--resume" not in lines[1], lines
    assert "nothing to resume" in lines[1]
    assert not list((workspace.root / "full" / "checkpoints").glob("checkpoint-*"))


def test_full_disk_while_tokenizing(workspace, monkeypatch):
    import runner.train.model

    def full_disk(path, *args, **kwargs):
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setenv("RUNNER_CACHE_DIR", str(workspace.root / "cache"))
    monkeypatch.setattr(runner.train.model, "_write_tokenized", full_disk)
    before = snapshot(workspace.root)
    result = CliRunner().invoke(main, workspace.spec())

    assert isinstance(result.exception, SystemExit) and result.exit_code == 1, repr(result.exception)
    lines = error_lines(result.stderr)
    CATALOGUE.append(("full disk while tokenizing (simulated)", result.exit_code, lines[0]))
    assert (
        lines[0].startswith(f"error: {workspace.root / 'cache' / 'tokenized'}")
        and "could not write the tokenized data: No space left on device" in lines[0]
    )
    assert lines[1].startswith("hint: free disk space") and "Traceback" not in result.output
    after = snapshot(workspace.root)
    assert all(after.get(path) == digest for path, digest in before.items())  # the earlier run is intact


@pytest.fixture(scope="module", autouse=True)
def write_catalogue():
    yield
    target = os.environ.get("RUNNER_CATALOGUE")
    if target and CATALOGUE:
        rows = ["| case | exit code | message first line |", "|---|---|---|"]
        escape = str.maketrans({"|": "\\|"})
        rows += [f"| {name} | {code} | `{line.translate(escape)}` |" for name, code, line in CATALOGUE]
        Path(target).write_text("\n".join(rows) + "\n", encoding="utf-8")
