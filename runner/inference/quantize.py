"""int8 for `runner export --int8`: several ways of quantising the fp32 ONNX model, each measured
against PyTorch on the run's validation texts; the one that agrees most is kept.

All are onnxruntime's dynamic quantisation (int8 weights per output channel, activations quantised
per tensor at run time); the classification head (Gemm nodes) is not quantised by it and stays fp32:
- `per-channel-7bit` / `per-channel-8bit`: every weight matrix and the embeddings; 7-bit weights
  (`reduce_range`) avoid overflow in the VNNI int8 kernels;
- `...-ffn-out-fp32`: the same with the feed-forward down-projections (intermediate -> hidden) left in
  fp32. Their input comes out of GELU with a wide range, which one scale per tensor rounds coarsely.
  On a 3-class MiniLM model: 100% of 90 validation labels and 99.05% of 2,000 other texts, against
  97.8% and 97.9% with all of them in int8 (bench/README.md); the file is 34 MB instead of 24.
Choosing on the same texts the figures are reported on favours the chosen one a little; the texts
are the run's validation rows, never its training rows.
"""

from __future__ import annotations

import logging
from pathlib import Path

from runner.files import move, remove

CANDIDATES = {
    "per-channel-7bit": {"reduce_range": True, "ffn_out_fp32": False},
    "per-channel-8bit": {"reduce_range": False, "ffn_out_fp32": False},
    "per-channel-7bit-ffn-out-fp32": {"reduce_range": True, "ffn_out_fp32": True},
    "per-channel-8bit-ffn-out-fp32": {"reduce_range": False, "ffn_out_fp32": True},
}


def down_projections(model_path: Path) -> list[str]:
    """The names of the weight matmuls that project down (weight rows > columns: the feed-forward output)."""
    import onnx

    model = onnx.load(str(model_path), load_external_data=False)
    weights = {init.name: tuple(init.dims) for init in model.graph.initializer}
    found = []
    for node in model.graph.node:
        shapes = [weights[name] for name in node.input if name in weights and len(weights[name]) == 2]
        if node.op_type == "MatMul" and shapes and shapes[0][0] > shapes[0][1]:
            found.append(node.name)
    return found


def quantize_variant(source: Path, target: Path, reduce_range: bool, ffn_out_fp32: bool) -> None:
    from runner.inference.ort import import_onnxruntime

    import_onnxruntime()  # first: what it writes as it loads goes under runner's cache
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level, root.level = root.level, logging.ERROR  # its advice to pre-process is for static quantisation
    try:
        quantize_dynamic(
            str(source), str(target), weight_type=QuantType.QInt8, per_channel=True, reduce_range=reduce_range,
            nodes_to_exclude=down_projections(source) if ffn_out_fp32 else None,
        )
    finally:
        root.setLevel(level)


def best_int8(source: Path, target: Path, score, candidates: dict | None = None) -> tuple[str, dict]:
    """Quantise `source` every way in `candidates`, score each (`score(path) -> {agreement,
    max_probability_difference}`), keep the best at `target`; returns (its name, every candidate's figures)."""
    candidates = candidates or CANDIDATES
    figures, best = {}, None
    for name, options in candidates.items():
        path = target.with_name(f".{name}.onnx")
        quantize_variant(source, path, **options)
        figures[name] = {**score(path), "bytes": path.stat().st_size}
        rank = (figures[name]["agreement"], -figures[name]["max_probability_difference"], -figures[name]["bytes"])
        if best is None or rank > best[0]:
            best = (rank, name)
    chosen = best[1]
    for name in candidates:
        path = target.with_name(f".{name}.onnx")
        if name == chosen:
            move(path, target)
        else:
            remove(path)
    return chosen, figures
