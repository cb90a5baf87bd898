"""Safe YAML (runner/spec/yamlsource.py): alias bombs, deep nesting, recursive aliases, odd keys, NaN,
numbers in every YAML 1.2 / JSON form, and syntax errors placed where the construct started.
Each hostile input is a SpecError with a file:line:column, fast, in little memory, and never
repeats the file's content; hypothesis then generates more of them."""

from __future__ import annotations

import resource
import time

import pytest
from conftest import run_cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runner.errors import SpecError
from runner.spec.document import Spec, load_spec_text
from runner.spec.yamlsource import MAX_DEPTH, parse_value, parse_yaml

GOOD = "version: 1\ndata:\n  train: data/train.csv\nmodel:\n  name: some-model\n"
SECRET = "hf_SecretThatMustNotBeEchoed"


def alias_bomb(width: int = 9, levels: int = 9) -> str:
    """The "billion laughs" shape: each level repeats the previous one `width` times (9**9 values)."""
    lines = ["version: 1", "a0: &a0 [" + ",".join(["lol"] * width) + "]"]
    for level in range(1, levels):
        lines.append(f"a{level}: &a{level} [" + ",".join([f"*a{level - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


def refused(text: str) -> SpecError:
    with pytest.raises(SpecError) as caught:
        parse_yaml(text, "spec.yaml")
    return caught.value


def test_alias_bomb_of_500_bytes_is_refused_fast_and_small():
    text = alias_bomb()
    assert len(text.encode()) <= 500
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    error = refused(text)
    seconds = time.perf_counter() - started
    grown_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert seconds < 0.5, seconds
    assert grown_kb < 50_000, grown_kb  # peak RSS may not grow by more than 50 MB
    assert "aliases expand this value" in error.message
    assert error.where.startswith("spec.yaml:") and error.where.count(":") >= 2


def test_alias_bomb_on_the_command_line_exits_2_with_its_place(tmp_path):
    (tmp_path / "bomb.yaml").write_text(alias_bomb(), encoding="utf-8")
    (tmp_path / "good.yaml").write_text(GOOD.replace("data/train.csv", "t.csv"), encoding="utf-8")
    (tmp_path / "t.csv").write_text("text,label\na,b\n", encoding="utf-8")
    started = time.perf_counter()
    result = run_cli("validate", "bomb.yaml", "good.yaml", cwd=tmp_path, timeout=60)
    assert time.perf_counter() - started < 30
    assert result.returncode == 2
    assert "error: bomb.yaml:" in result.stderr and "Traceback" not in result.stderr
    assert "ok: good.yaml" in result.stdout  # the bad spec does not stop the next one


@pytest.mark.parametrize(
    "text, message, place",
    [
        ("version: 1\nx: &a [1, *a]\n", "refers to the value that holds it", "spec.yaml:2:4"),
        ("version: 1\nx: &a {k: *a}\n", "refers to the value that holds it", "spec.yaml:2:4"),
        (
            "version: 1\nx: " + "[" * 100_000 + "]" * 100_000 + "\n",
            f"nested more than {MAX_DEPTH} levels",
            "spec.yaml:2:",
        ),
        ("version: 1\nx:\n" + "".join("  " * i + f"k{i}:\n" for i in range(1, 200)), "nested more than", "spec.yaml:"),
        ("version: 1\n1: x\n", "a key here is a number", "spec.yaml:2:1"),
        ("version: 1\nnull: x\n", "a key here is null", "spec.yaml:2:1"),
        ("version: 1\n? [a, b]\n: x\n", "a key here is a list or mapping", "spec.yaml:2:3"),
        ("version: 1\n? {a: b}\n: x\n", "a key here is a list or mapping", "spec.yaml:2:3"),
        ("version: 1\nyes: x\n", "a key here is true or false", "spec.yaml:2:1"),
        ("version: 1\nseed: 2024-13-45\n", "cannot be read", "spec.yaml:2:7"),
        ("version: 1\nseed: " + "9" * 5000 + "\n", "cannot be read", "spec.yaml:2:7"),
        ("version: 1\nx: *nowhere\n", "YAML syntax error", "spec.yaml:2:4"),
    ],
)
def test_hostile_yaml_is_a_spec_error_with_its_place(text, message, place):
    error = refused(text)
    assert message in error.message
    assert error.where.startswith(place), error.where


def test_messages_never_echo_the_file_content():
    for text in (f'version: 1\nname: "{SECRET}\n', f"version: 1\n{SECRET}: [\n", f"version: 1\nx: &a [{SECRET}, *a]\n"):
        error = refused(text)
        assert SECRET not in " ".join(error.lines())


def test_unterminated_quote_is_placed_where_it_starts():
    """Before: 'spec.yaml:7:1: found unexpected end of stream' (the end of the file)."""
    text = 'version: 1\ndata:\n  train: data/train.csv\nname: "abc\nmodel:\n  name: x\n'
    error = refused(text)
    assert error.where == "spec.yaml:4:7"
    assert "quoted scalar" in error.message and "spec.yaml:7:1" in error.message  # and where it broke


def test_unclosed_bracket_names_start_and_break():
    error = refused("version: 1\ndata:\n  label_column: [label\nmodel:\n  name: x\n")
    assert error.where == "spec.yaml:3:17"
    assert "spec.yaml:4:" in error.message


@pytest.mark.parametrize(
    "key, written, value",
    [
        ("learning_rate", "5e-5", 5e-5),
        ("learning_rate", "1E-3", 1e-3),
        ("warmup_ratio", ".5", 0.5),
        ("epochs", "+1e3", 1000.0),
        ("weight_decay", "2.5E-2", 0.025),
        ("epochs", "1.5e0", 1.5),
    ],
)
def test_every_yaml_12_and_json_float_form_is_a_number(key, written, value):
    """Before: `expected number, got "5e-5"` (YAML 1.1 wants 5.0e-5)."""
    spec = load_spec_text(GOOD + f"train:\n  {key}: {written}\n", None, check_files=False)
    assert spec["train"][key] == value
    spec = load_spec_text(GOOD, None, overrides=[f"train.{key}={written}"], check_files=False)
    assert spec["train"][key] == value
    assert parse_value(written, "--set x") == value
    assert parse_value("-" + written.lstrip("+"), "--set x") == -value


def test_strings_that_only_look_like_numbers_stay_strings():
    assert parse_value("1e", "x") == "1e" and parse_value("e5", "x") == "e5" and parse_value("1.2.3", "x") == "1.2.3"
    assert parse_value("'5e-5'", "x") == "5e-5"


@pytest.mark.parametrize("written", [".nan", ".inf", "-.inf", "1e999"])
def test_nan_and_infinity_are_schema_errors(written):
    with pytest.raises(SpecError) as caught:
        load_spec_text(GOOD + f"train:\n  learning_rate: {written}\n", None, check_files=False)
    assert "not a finite number" in caught.value.lines()[0]
    assert "<spec>:7:18 train.learning_rate" in caught.value.lines()[0]
    with pytest.raises(SpecError) as caught:
        load_spec_text(GOOD, None, overrides=[f"train.epochs={written}"], check_files=False)
    assert caught.value.lines()[0].startswith("error: --set train.epochs: ")


def test_merge_keys_still_work():
    text = GOOD + "train:\n  <<: {epochs: 2}\n  batch_size: 4\n"
    spec = load_spec_text(text, None, check_files=False)
    assert spec["train"]["epochs"] == 2 and spec["train"]["batch_size"] == 4


# ---------------------------------------------------------------------------------------------
# Generated hostile YAML

scalars = st.one_of(
    st.sampled_from(
        [
            ".nan",
            ".inf",
            "-.inf",
            "5e-5",
            "1E-3",
            ".5",
            "+1e3",
            "yes",
            "no",
            "null",
            "~",
            "2024-13-45",
            "0x1F",
            "1_000",
            "'q'",
            '"d"',
            "!!binary aGk=",
            "!!python/object:os.system x",
            "*undefined",
            "&a 1",
            "9" * 50,
        ]
    ),
    st.integers(-(10**6), 10**6).map(str),
    st.text(alphabet="abc:#-[]{},&*!|>'\" \n", max_size=12),
)
keys = st.one_of(
    st.sampled_from(["version", "data", "train", "model", "name", "1", "null", "yes", "? [a]", "? {a: 1}", "<<", "~"]),
    st.text(alphabet="abcxyz_", min_size=1, max_size=6),
)


@st.composite
def hostile_documents(draw) -> str:
    lines = ["version: 1"]
    anchors = []
    for index in range(draw(st.integers(1, 8))):
        kind = draw(st.sampled_from(["scalar", "alias-bomb", "recursive", "deep", "odd-key", "flow", "anchor"]))
        key = draw(keys)
        if kind == "scalar":
            lines.append(f"{key}: {draw(scalars)}")
        elif kind == "anchor":
            lines.append(f"k{index}: &n{index} [{draw(scalars)}, {draw(scalars)}]")
            anchors.append(f"n{index}")
        elif kind == "alias-bomb" and anchors:
            lines.append(
                f"b{index}: &n{index} ["
                + ", ".join(f"*{draw(st.sampled_from(anchors))}" for _ in range(draw(st.integers(1, 12))))
                + "]"
            )
            anchors.append(f"n{index}")
        elif kind == "recursive":
            lines.append(f"r{index}: &r{index} [1, *r{index}]")
        elif kind == "deep":
            depth = draw(st.sampled_from([3, 40, 60, 500, 5000]))
            lines.append(f"d{index}: " + "[" * depth + "]" * depth)
        elif kind == "odd-key":
            lines.append(f"{draw(keys)}: {draw(scalars)}")
        else:
            lines.append(f"f{index}: {{{draw(keys)}: {draw(scalars)}, train: {{learning_rate: {draw(scalars)}}}}}")
    return "\n".join(lines) + "\n"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(text=st.one_of(hostile_documents(), st.text(max_size=200)), override=st.one_of(st.none(), scalars))
def test_generated_hostile_yaml_is_a_spec_error_or_a_spec_fast(text, override):
    overrides = [f"train.learning_rate={override}"] if override is not None else []
    started = time.perf_counter()
    try:
        spec = load_spec_text(text, None, overrides=overrides, check_files=False)
    except SpecError as error:
        lines = error.lines()
        assert lines[0].startswith("error: ") and all("\n" not in line for line in lines)
    else:
        assert isinstance(spec, Spec)
    assert time.perf_counter() - started < 2.0


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(width=st.integers(2, 12), levels=st.integers(2, 12))
def test_generated_alias_bombs_are_bounded(width, levels):
    started = time.perf_counter()
    try:
        parse_yaml(alias_bomb(width, levels), "bomb.yaml")
    except SpecError as error:
        assert width**levels > 10_000 and "aliases expand" in error.message
    else:
        assert width**levels <= 30_000
    assert time.perf_counter() - started < 1.0
