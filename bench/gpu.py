"""Training throughput on one GPU: the seed recipe against the runner's fast path, same GPU, same data.

    python bench/gpu.py                      # MiniLM, BERT-base, ModernBERT-base; about 5 minutes on an H100/H200
    python bench/gpu.py --smoke              # tiny models and sizes, on the CPU too (checks the script)
    python bench/gpu.py --models bert-base --seconds 20 --out results.json

Models are built from their configurations with random weights (throughput does not depend on the
weights; no download): MiniLM-L6 (all-MiniLM-L6-v2's shape: 6 layers, 384 hidden), BERT-base
(12 x 768) and ModernBERT-base (22 x 768, local/global attention). 6 labels.

Data: 20,000 rows of random token ids whose lengths follow a long tail like short real text
(log-normal, median 32 tokens, clipped to 8..128), max_length 128.

Sides, each a plain training loop that does what the Trainer does per step (forward, backward, clip
the gradient norm at 1.0, AdamW, linear schedule, zero the gradients), timed after warm-up steps:
- seed: the seed recipe (bench/seed_recipe.py) as it runs on a GPU: fp32 (no TF32), fused AdamW
  (transformers' default), batches of 16 drawn at random, each row padded to the longest row of its
  1,000-row `map` chunk (padding=True in a batched map), SDPA attention.
- runner b16: `precision: auto` on a GPU (bf16 autocast; TF32 stays off), fused AdamW, batches of 16
  grouped by length and padded to their own longest row rounded up to a multiple of 8 (as the runner
  pads on a GPU: runner.train.trainer.padding_multiple).
- runner tokens: the same with `train.max_tokens_per_batch` (padded rows x longest, rounded up to 8, <= budget).
- runner packed: `max_tokens_per_batch` with padding-free batches (runner/train/packing.py: one packed
  row, FlashAttention varlen through torch.nn.attention.varlen).
- runner packed+compile: the same with `train.compile` (torch.compile of the backbone, dynamic shapes).

Figures: samples/s, real tokens/s (non-padding), padded tokens/s (what was computed), MFU = training
FLOPs on real tokens / time / the GPU's dense bf16 peak (989 TFLOP/s for H100/H200 SXM; also against
a measured 8192^3 bf16 matmul). Training FLOPs = 6 x non-embedding parameters x tokens + the attention
products (12 x layers x hidden x sum of squared row lengths).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12, "L4": 121e12}


def model_config(name: str, smoke: bool, labels: int = 6):
    from transformers import BertConfig, ModernBertConfig

    if smoke:
        shapes = {"minilm": (2, 64, 4, 128), "bert-base": (2, 96, 4, 192), "modernbert-base": (3, 96, 4, 192)}
        layers, hidden, heads, ffn = shapes[name]
    if name == "minilm":
        return BertConfig(num_labels=labels, **({"hidden_size": hidden, "num_hidden_layers": layers,
                          "num_attention_heads": heads, "intermediate_size": ffn} if smoke else
                          {"hidden_size": 384, "num_hidden_layers": 6, "num_attention_heads": 12,
                           "intermediate_size": 1536}))
    if name == "bert-base":
        return BertConfig(num_labels=labels, **({"hidden_size": hidden, "num_hidden_layers": layers,
                          "num_attention_heads": heads, "intermediate_size": ffn} if smoke else {}))
    if name == "modernbert-base":
        extra = {"hidden_size": hidden, "num_hidden_layers": layers, "num_attention_heads": heads,
                 "intermediate_size": ffn, "vocab_size": 1000, "pad_token_id": 0, "bos_token_id": 1,
                 "eos_token_id": 2, "cls_token_id": 1, "sep_token_id": 2, "global_attn_every_n_layers": 2,
                 "local_attention": 8} if smoke else {}
        return ModernBertConfig(num_labels=labels, **extra)
    raise SystemExit(f"unknown model {name}")


def make_lengths(rows: int, seed: int = 0, max_length: int = 128):
    import numpy as np

    rng = np.random.default_rng(seed)
    return np.clip(np.round(rng.lognormal(math.log(32), 0.7, rows)), 8, max_length).astype(int)


def make_rows(lengths, vocab: int, seed: int = 1) -> list[dict]:
    import numpy as np

    rng = np.random.default_rng(seed)
    return [{"input_ids": [1, *rng.integers(5, vocab, n - 2).tolist(), 2], "labels": int(rng.integers(0, 6))}
            for n in lengths]


def padded(rows: list[dict], length: int | None = None, multiple: int = 1) -> dict:
    import numpy as np
    import torch

    length = length or -(-max(len(r["input_ids"]) for r in rows) // multiple) * multiple
    ids = np.zeros((len(rows), length), dtype=np.int64)
    mask = np.zeros((len(rows), length), dtype=np.int64)
    for i, r in enumerate(rows):
        ids[i, : len(r["input_ids"])] = r["input_ids"]
        mask[i, : len(r["input_ids"])] = 1
    return {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask),
            "labels": torch.tensor([r["labels"] for r in rows])}


def seed_batches(rows, lengths, rng):
    """Random batches of 16; every row padded to the longest of its 1,000-row map chunk."""
    chunk_max = [max(lengths[i - i % 1000: i - i % 1000 + 1000]) for i in range(len(rows))]
    order = rng.permutation(len(rows))
    for start in range(0, len(order) - 15, 16):
        index = order[start:start + 16]
        yield padded([rows[i] for i in index], max(chunk_max[i] for i in index)), index


def grouped_batches(rows, lengths, rng, size: int = 16):
    """Batches of `size` in length order within 50-batch mega-chunks (the Trainer's group_by_length), shuffled."""
    order = rng.permutation(len(rows))
    mega = size * 50
    batches = []
    for start in range(0, len(order), mega):
        part = sorted(order[start:start + mega], key=lambda i: -lengths[i])
        batches += [part[i:i + size] for i in range(0, len(part) - size + 1, size)]
    for b in rng.permutation(len(batches)):
        yield padded([rows[i] for i in batches[b]], multiple=8), batches[b]  # the runner's padding on a GPU


def budget_batches(rows, lengths, seed, budget: int, packed: bool):
    from runner.train.batching import TokenBudgetBatchSampler
    from runner.train.packing import PackedBatch

    sampler = TokenBudgetBatchSampler(lengths, budget, seed=seed, packed=packed, multiple=None if packed else 8)
    collate = PackedBatch() if packed else (lambda batch: padded(batch, multiple=8))
    epoch = 0
    while True:
        sampler.set_epoch(epoch)
        for index in sampler:
            yield collate([rows[i] for i in index]), index
        epoch += 1


def count_flops(config, model, lengths_in_step) -> float:
    embed = sum(p.numel() for n, p in model.named_parameters() if "embeddings" in n)
    nonembed = sum(p.numel() for p in model.parameters()) - embed
    tokens = sum(lengths_in_step)
    attention = 12 * config.num_hidden_layers * config.hidden_size * sum(n * n for n in lengths_in_step)
    return 6 * nonembed * tokens + attention


def run_side(name: str, side: str, args, device: str, rows, lengths) -> dict:
    import numpy as np
    import torch
    from transformers import AutoModelForSequenceClassification, get_linear_schedule_with_warmup

    from runner.train.packing import packed_logits, supports_packing, use_packed_attention

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    fast = side != "seed"
    torch.backends.cuda.matmul.allow_tf32 = args.tf32 and fast  # the runner leaves TF32 off (runner/train/trainer.py)
    torch.backends.cudnn.allow_tf32 = args.tf32 and fast
    config = model_config(name, args.smoke)
    model = AutoModelForSequenceClassification.from_config(config, attn_implementation="sdpa").to(device).train()
    packed = "packed" in side
    if packed:
        if not supports_packing(model):
            return {"skipped": "model family not supported for packing"}
        use_packed_attention(model)
    compile_seconds = None
    if "compile" in side:
        backbone = model.bert if hasattr(model, "bert") else model.model
        backbone.compile(dynamic=True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01, fused=device == "cuda")
    schedule = get_linear_schedule_with_warmup(optimizer, 10, 100_000)
    if side == "seed":
        batches = seed_batches(rows, lengths, rng)
    elif side == "runner b16":
        batches = grouped_batches(rows, lengths, rng)
    else:
        batches = budget_batches(rows, lengths, 0, args.max_tokens, packed)
    autocast = torch.autocast(device, dtype=torch.bfloat16, enabled=fast)

    def step(batch):
        batch = {k: v.to(device, non_blocking=True) if hasattr(v, "to") else v for k, v in batch.items()}
        with autocast:
            if packed:
                loss = torch.nn.functional.cross_entropy(packed_logits(model, batch), batch["labels"])
            else:
                loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        return batch

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    started = time.perf_counter()
    for _ in range(args.warmup if "compile" not in side else args.warmup * 4):
        step(next(batches)[0])
    sync()
    if "compile" in side:
        compile_seconds = round(time.perf_counter() - started, 1)
    samples = real = computed = steps = 0
    flops = 0.0
    started = time.perf_counter()
    while time.perf_counter() - started < args.seconds or steps < 3:
        batch, index = next(batches)
        step_lengths = [int(lengths[i]) for i in index]
        step(batch)
        steps += 1
        samples += len(index)
        real += sum(step_lengths)
        computed += int(batch["input_ids"].numel())
        flops += count_flops(config, model, step_lengths)
    sync()
    seconds = time.perf_counter() - started
    memory = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    return {
        "steps": steps, "seconds": round(seconds, 2), "samples_per_second": samples / seconds,
        "real_tokens_per_second": real / seconds, "padded_tokens_per_second": computed / seconds,
        "padded_per_real": computed / real, "rows_per_batch": samples / steps,
        "training_flops_per_second": flops / seconds,
        "compile_seconds": compile_seconds, "peak_memory_gib": round(memory, 1) if memory else None,
    }


def matmul_peak(device: str, smoke: bool) -> float | None:
    import torch

    if device != "cuda":
        return None
    n = 8192
    a, b = (torch.randn(n, n, device=device, dtype=torch.bfloat16) for _ in range(2))
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(10):
        a @ b
    torch.cuda.synchronize()
    return 2 * n**3 * 10 / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="minilm,bert-base,modernbert-base")
    parser.add_argument("--sides", default="seed,runner b16,runner tokens,runner packed,runner packed+compile")
    parser.add_argument("--compile-models", default="bert-base",
                        help="models that also get the packed+compile side (compiling takes a minute or more each)")
    parser.add_argument("--seconds", type=float, default=8.0, help="timed seconds per side, after the warm-up")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--max-tokens", type=int, default=16_384, help="train.max_tokens_per_batch for the runner")
    parser.add_argument("--tf32", action="store_true", help="TF32 matmuls on the runner's sides (the runner: off)")
    parser.add_argument("--smoke", action="store_true", help="tiny models, few rows, 1 s a side (CPU is fine)")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args()
    if args.smoke:
        args.seconds, args.warmup, args.rows, args.max_tokens = min(args.seconds, 1.0), 1, 600, 1024

    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    gpu = torch.cuda.get_device_name(0) if device == "cuda" else "cpu"
    peak = next((v for k, v in PEAK_BF16.items() if k in gpu), None)
    measured = matmul_peak(device, args.smoke)
    import transformers

    from runner.train.packing import varlen_kernel

    header = {"gpu": gpu, "torch": torch.__version__, "transformers": transformers.__version__,
              "datasheet_bf16_peak": peak, "measured_bf16_matmul": measured,
              "varlen_kernel": varlen_kernel() is not None, "rows": args.rows, "max_tokens": args.max_tokens}
    print(json.dumps(header), flush=True)
    lengths = make_lengths(args.rows)
    print(f"data: {args.rows} rows, mean {lengths.mean():.1f} tokens, median {int(sorted(lengths)[len(lengths) // 2])},"
          f" max {lengths.max()}", flush=True)
    results = {"header": header, "models": {}}
    for name in args.models.split(","):
        vocab = model_config(name, args.smoke).vocab_size
        rows = make_rows(lengths, vocab)
        results["models"][name] = {}
        for side in args.sides.split(","):
            if "compile" in side and (name not in args.compile_models.split(",") or device != "cuda"):
                continue  # on the CPU, inductor takes many minutes to compile
            try:
                figures = run_side(name, side, args, device, rows, lengths)
            except Exception as exc:  # noqa: BLE001 - one side failing must not lose the others' figures
                figures = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"}
            if "training_flops_per_second" in figures:
                figures["mfu_datasheet"] = figures["training_flops_per_second"] / peak if peak else None
                figures["mfu_measured"] = figures["training_flops_per_second"] / measured if measured else None
            results["models"][name][side] = figures
            print(name, side, json.dumps(figures), flush=True)
            if args.out:
                args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
            if device == "cuda":
                torch.cuda.empty_cache()
    print(render(results))


def render(results: dict) -> str:
    lines = [f"GPU {results['header']['gpu']}, torch {results['header']['torch']}, bf16 matmul measured "
             f"{(results['header']['measured_bf16_matmul'] or 0) / 1e12:.0f} TFLOP/s", "",
             f"{'model':<16}{'side':<24}{'samples/s':>11}{'real tok/s':>12}{'pad/real':>9}{'rows/batch':>11}"
             f"{'MFU':>7}{'x seed':>8}"]
    for name, sides in results["models"].items():
        base = sides.get("seed", {}).get("samples_per_second")
        for side, f in sides.items():
            if "samples_per_second" not in f:
                lines.append(f"{name:<16}{side:<24}  {f.get('error') or f.get('skipped')}")
                continue
            mfu = f.get("mfu_datasheet")
            ratio = f"{f['samples_per_second'] / base:.2f}" if base else "-"
            lines.append(
                f"{name:<16}{side:<24}{f['samples_per_second']:>11,.0f}{f['real_tokens_per_second']:>12,.0f}"
                f"{f['padded_per_real']:>9.2f}{f['rows_per_batch']:>11.1f}"
                f"{(f'{100 * mfu:.1f}%' if mfu else '-'):>7}"
                f"{ratio:>8}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
