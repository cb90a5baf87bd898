"""Labels that look the same but are not (a zero-width space, a no-break space, another Unicode form)
would train as two classes and show as one word: a data error that names both, code points shown."""

from __future__ import annotations

import pandas as pd
import pytest
from conftest import labelled_rows, run_cli, tiny_spec_text, write_csv, write_spec

from runner.data.labels import ROW, check_look_alike_labels, code_points, encode_multi_labels, encode_single_labels
from runner.errors import DataError

TWINS = [
    ("neg", "neg\u200b", "'neg\\u200b'"),  # zero-width space
    ("not good", "not\u00a0good", "'not\\u00a0good'"),  # no-break space inside
    ("caf\u00e9", "cafe\u0301", "'cafe\\u0301'"),  # NFC and NFD
    ("fine", "\ufb01ne", "'\\ufb01ne'"),  # a ligature NFKC makes two letters
    ("neg", "\u2060neg", "'\\u2060neg'"),  # a word joiner in front
]


def frame(labels: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"label": labels, ROW: range(2, len(labels) + 2)})


@pytest.mark.parametrize("first, second, shown", TWINS)
def test_look_alike_labels_are_a_data_error_naming_both(first, second, shown):
    with pytest.raises(DataError) as caught:
        encode_single_labels(frame([first, first, second, "pos"]), "label", None, "train.csv", "train.csv")
    message = caught.value.message
    assert code_points(first) in message and shown in message and "look the same" in message
    assert caught.value.where == "train.csv:4"  # the row of the odd one out
    with pytest.raises(DataError):  # the spec's labels name one, the data holds the other
        encode_single_labels(frame([first, second]), "label", [first, "pos"], "train.csv", "train.csv")
    with pytest.raises(DataError, match="look the same"):
        encode_multi_labels(frame([f"{first},pos", f"pos,{second}"]), "label", None, ",", "train.csv")


def test_labels_that_only_look_alike_to_a_reader_stay_apart():
    check_look_alike_labels(["Pos", "pos", "neg", "negative", "1", "01", "café", "cafe"], pd.Series([], dtype=str),
                            pd.Series([], dtype=int), "train.csv")
    codes, labels = encode_single_labels(frame(["pos", "neg", "pos"]), "label", None, "t.csv", "t.csv")
    assert labels == ["neg", "pos"] and codes.tolist() == [1, 0, 1]


@pytest.mark.parametrize("first, second, shown", TWINS[:3])
def test_a_run_with_look_alike_labels_stops_with_one_error(tmp_path, tiny_model, first, second, shown):
    rows = labelled_rows(labels=("pos", "neg"), per_label=10)
    rows = [{**row, "label": first if row["label"] == "neg" else row["label"]} for row in rows]
    rows[3] = {**rows[3], "label": second}
    write_csv(tmp_path / "data" / "train.csv", rows)
    spec = write_spec(tmp_path, tiny_spec_text(tiny_model))
    result = run_cli("run", str(spec), cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith(("error:", "hint:"))]
    assert len(lines) == 2 and "Traceback" not in result.stderr
    assert lines[0].startswith("error: ") and "train.csv:5:" in lines[0]  # row 5: the header is line 1
    assert code_points(first) in lines[0] and shown in lines[0]
    assert lines[1].startswith("hint: ") and "invisible characters" in lines[1]
    assert not (tmp_path / "run").exists()
