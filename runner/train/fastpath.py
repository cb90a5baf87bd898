"""The training fast path the Trainer gets from the spec: token-budget batches
(`train.max_tokens_per_batch`), padding-free batches (`train.padding_free`), `train.compile`.
Evaluation batches stay padded (runner.train.trainer.PadBatch). bench/gpu.py measures them.
"""

from __future__ import annotations

from types import SimpleNamespace

from runner.spec.sections import TrainSection


def packing_wanted(setting: str, device: str, model) -> tuple[bool, str]:
    """(pack the training batches, why). auto: on CUDA, for a model family runner.train.packing supports,
    with PyTorch's varlen FlashAttention kernel; on the CPU the row-by-row fallback is slower than padding."""
    from runner.train.packing import supports_packing, varlen_kernel

    if setting == "off":
        return False, "train.padding_free: off"
    if not supports_packing(model):
        kind = getattr(model.config, "model_type", "?")
        return False, f"padding-free training is not available for {kind} models: batches are padded"
    if setting == "on":
        return True, "train.padding_free: on"
    if device != "cuda" or varlen_kernel() is None:
        return False, "padding-free training is for CUDA with torch.nn.attention.varlen: batches are padded"
    return True, "padding-free batches (varlen attention) on CUDA"


def prepare_model(model, train: TrainSection, device: str) -> tuple[list[str], bool]:
    """Switch the model to packed attention and/or compile it, as the spec asks; returns what was done, and
    whether training batches are packed."""
    from runner.train.packing import PACKABLE, use_packed_attention

    notes = []
    packed, why = packing_wanted(train.padding_free, device, model)
    if packed:
        use_packed_attention(model)
    if packed or train.padding_free == "on":  # auto on a CPU: nobody asked, nothing to say
        notes.append(why)
    if train.compile:
        keep_compile_cache_out_of_tmpdir()
        # packed batches call the backbone directly, so that is what is compiled; shapes vary: dynamic
        target = getattr(model, PACKABLE[model.config.model_type]) if packed else model
        target.compile(dynamic=True)
        notes.append("torch.compile (dynamic shapes)")
    if train.max_tokens_per_batch:
        notes.append(f"token-budget batches of at most {train.max_tokens_per_batch} tokens")
    return notes, packed


def keep_compile_cache_out_of_tmpdir() -> None:
    """torch.compile's precompiled headers ignore TORCHINDUCTOR_CACHE_DIR (runner.train.hardware sets it): their
    folder is TMPDIR/torchinductor_USER/precompiled_headers, fixed when torch._inductor.codecache is imported,
    where a run, or one stopped by a signal, would leave it. They go beside the rest of the compile cache.
    (torch 2.13's module variables; tests/train/test_fastpath.py checks TMPDIR stays empty.)"""
    import os
    import tempfile

    from torch._inductor import codecache

    cache = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    headers = getattr(codecache, "_HEADER_DIR", None)
    if cache and isinstance(headers, str) and headers.startswith(tempfile.gettempdir() + os.sep):
        codecache._HEADER_DIR = os.path.join(cache, "precompiled_headers")
        codecache._HEADER_LOCK_DIR = os.path.join(codecache._HEADER_DIR, "locks")


def train_dataloader(trainer, max_tokens: int | None, packed: bool):
    """The training DataLoader: token-budget batches (or the Trainer's sampler in batches of batch_size), padded
    by the Trainer's collator or packed."""
    from torch.utils.data import BatchSampler, DataLoader

    from runner.train.batching import TokenBudgetBatchSampler
    from runner.train.model import column_array
    from runner.train.packing import PackedBatch

    args, dataset = trainer.args, trainer.train_dataset
    seed = args.data_seed if args.data_seed is not None else args.seed
    if max_tokens:
        multiple = getattr(trainer.data_collator, "multiple", None)  # the padding the collator adds counts
        batches = TokenBudgetBatchSampler(column_array(dataset, "length"), max_tokens, seed=seed, packed=packed,
                                          multiple=multiple)
    else:
        batches = BatchSampler(trainer._get_train_sampler(dataset), args.per_device_train_batch_size,
                               drop_last=args.dataloader_drop_last)
    collate = PackedBatch() if packed else trainer.data_collator  # PackedBatch reads the model inputs only
    loader = DataLoader(dataset, batch_sampler=batches, collate_fn=collate, num_workers=args.dataloader_num_workers,
                        pin_memory=args.dataloader_pin_memory)
    return trainer.accelerator.prepare(loader)


def packed_loss(trainer, model, inputs: dict, return_outputs: bool, num_items_in_batch=None):
    """The Trainer's loss on a packed batch: the model's own modules (runner.train.packing.packed_logits), and the
    run's loss (class weights) or the model's (cross-entropy, BCE, MSE by problem type)."""
    from transformers.loss.loss_utils import ForSequenceClassificationLoss

    from runner.train.packing import packed_logits

    model = trainer.accelerator.unwrap_model(model, keep_torch_compile=True)
    logits = packed_logits(model, inputs)
    labels = inputs["labels"]
    if trainer.compute_loss_func is not None:
        loss = trainer.compute_loss_func({"logits": logits}, labels, num_items_in_batch=num_items_in_batch)
    else:
        loss = ForSequenceClassificationLoss(labels, logits, model.config)  # by the config's problem_type
    return (loss, SimpleNamespace(logits=logits)) if return_outputs else loss
