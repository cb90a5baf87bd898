"""Inference with an exported run (RUN_DIR/onnx/): ONNX Runtime and the `tokenizers` library only.

Nothing here imports torch or transformers, so `runner predict RUN_DIR --backend onnx` starts fast and
runs where only `pip install onnxruntime tokenizers` was done. Texts are batched by length, as the
PyTorch path does, and each batch is padded to its own longest row.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from runner.errors import DataError, RunError

FP32, INT8 = "model.onnx", "model_int8.onnx"
PIP_LINE = 'pip install "runner[onnx]"  (or: pip install onnx onnxscript onnxruntime)'


def require(*modules: str) -> None:
    """A clear error and the pip line when an optional ONNX package is missing."""
    from importlib.util import find_spec

    missing = [name for name in modules if find_spec(name) is None]
    if missing:
        raise RunError(f"{', '.join(missing)} not installed (needed for ONNX export and inference)", PIP_LINE)


def import_onnxruntime():
    """onnxruntime, imported so that what it writes as it loads stays under runner's cache: its telemetry keeps a
    device id and a database in $XDG_CACHE_HOME/Microsoft/DeveloperTools (else $HOME/.cache) and a `.ses` file
    in TMPDIR, both read once, at import. Both variables point into <runner cache>/onnxruntime for the import
    only; every other import has read them already or reads them later, restored."""
    import sys

    if "onnxruntime" not in sys.modules:
        from runner.files import cache_root, make_folder

        home = make_folder(cache_root() / "onnxruntime")
        saved = {name: os.environ.get(name) for name in ("XDG_CACHE_HOME", "TMPDIR")}
        os.environ.update(XDG_CACHE_HOME=str(home), TMPDIR=str(home))
        try:
            import onnxruntime  # noqa: F401
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
    return sys.modules["onnxruntime"]


def model_file(folder: Path, prefer_int8: bool = True) -> Path:
    """The int8 model when there is one (and it is wanted), else the fp32 one."""
    for name in (INT8, FP32) if prefer_int8 else (FP32,):
        if (folder / name).is_file():
            return folder / name
    raise DataError(
        f"no exported model in {folder}", "export the run first: runner export RUN_DIR [--int8]", str(folder)
    )


class OnnxClassifier:
    """An exported model with its config (`.config.id2label`, ... as the model's config.json has them)."""

    def __init__(self, path: Path, threads: int | None = None):
        require("onnxruntime")
        ort = import_onnxruntime()

        self.path = Path(path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or int(os.environ.get("RUNNER_ORT_THREADS", "0"))
        if os.environ.get("OMP_WAIT_POLICY", "").upper() != "ACTIVE":
            # waiting threads sleep rather than spin, as OMP_WAIT_POLICY=PASSIVE does for torch (runner.train.hardware):
            # on a shared machine spinning threads take the cores the working ones need
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own classes for a damaged file
            raise RunError(
                f"cannot load the ONNX model: {str(exc).splitlines()[0][:200]}",
                "export it again: runner export RUN_DIR",
                str(self.path),
            ) from None
        self.inputs = [item.name for item in self.session.get_inputs()]
        config = _read_json(self.path.parent / "config.json")
        if isinstance(config.get("id2label"), dict):
            config["id2label"] = {int(k): v for k, v in config["id2label"].items()}
        self.config = SimpleNamespace(**config)

    def logits(self, encoded: dict) -> np.ndarray:
        feed = {name: encoded[name] for name in self.inputs}
        return self.session.run(None, feed)[0].astype(np.float32)


def load_tokenizer(folder: Path, max_length: int):
    """The run's fast tokenizer (tokenizer.json) with the run's truncation and padding side, no padding
    to a fixed length (a saved tokenizer.json may carry one)."""
    require("tokenizers")
    from tokenizers import Tokenizer

    path = Path(folder) / "tokenizer.json"
    if not path.is_file():
        raise DataError("the export has no tokenizer.json", "export the run again: runner export RUN_DIR", str(folder))
    tokenizer = Tokenizer.from_file(str(path))
    settings = _read_json(Path(folder) / "tokenizer_config.json")
    pad_token = settings.get("pad_token")
    pad_token = pad_token.get("content") if isinstance(pad_token, dict) else pad_token
    pad_id = tokenizer.token_to_id(pad_token) if pad_token else None
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length, direction=settings.get("truncation_side", "right"))
    tokenizer.enable_padding(
        pad_id=pad_id or 0, pad_token=pad_token or "[PAD]", direction=settings.get("padding_side", "right")
    )
    return tokenizer


def encode(tokenizer, texts: list[str], pairs: list[str] | None) -> dict:
    batch = tokenizer.encode_batch(list(zip(texts, pairs)) if pairs else texts)
    return {
        "input_ids": np.asarray([e.ids for e in batch], dtype=np.int64),
        "attention_mask": np.asarray([e.attention_mask for e in batch], dtype=np.int64),
        "token_type_ids": np.asarray([e.type_ids for e in batch], dtype=np.int64),
    }


def onnx_logits(
    model: OnnxClassifier, tokenizer, texts: list[str], pairs: list[str] | None, batch_size: int, progress: bool = False
) -> np.ndarray:
    """Logits in input order; batches of texts of similar length, as runner.inference.predict.predict_logits does."""
    order = np.argsort([len(t) + (len(pairs[i]) if pairs else 0) for i, t in enumerate(texts)], kind="stable")
    out = np.zeros((len(texts), 1), dtype=np.float32)
    batches = range(0, len(texts), batch_size)
    if progress and len(texts) > batch_size:
        from runner.train.progress import bar  # a bar on a terminal, else a line every 10%

        batches = bar(batches, "predict (onnx)", "batch")
    for start in batches:
        index = order[start : start + batch_size]
        logits = model.logits(
            encode(tokenizer, [texts[i] for i in index], [pairs[i] for i in index] if pairs else None)
        )
        if out.shape[1] != logits.shape[1]:
            out = np.zeros((len(texts), logits.shape[1]), dtype=np.float32)
        out[index] = logits
    return out


def load_onnx(folder: Path, max_length: int, prefer_int8: bool = True) -> tuple[OnnxClassifier, object]:
    return OnnxClassifier(model_file(Path(folder), prefer_int8)), load_tokenizer(Path(folder), max_length)


def _read_json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise DataError(
            f"cannot read {path.name}: {type(exc).__name__}", "export the run again: runner export RUN_DIR", str(path)
        ) from None
    return value if isinstance(value, dict) else {}
