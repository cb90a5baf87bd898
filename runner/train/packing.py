"""Padding-free training for encoder classifiers: a batch's rows are laid end to end in one row
(`[1, total tokens]`, position ids restarting at every row), attention stays inside each row
through variable-length attention, and the classifier reads each row's first token.

- `PackedBatch`: the collator (what transformers' `DataCollatorWithFlattening` does for language
  models, with one label per row instead of one per token, and the FlashAttention boundary kwargs).
- `varlen_attention`: registered with transformers as the attention `runner_varlen`. On CUDA it is
  PyTorch's FlashAttention varlen kernel (`torch.nn.attention.varlen.varlen_attn`); elsewhere, and
  for tests, SDPA row by row (the same result, slower). Attention dropout is not applied.
- `packed_logits`: the model's own backbone, pooler/head and classifier on the packed batch, for
  the families whose head reads the first token (BERT and its kin such as MiniLM, ModernBERT).
Models outside those families train with padding as before (`supports_packing`).
"""

from __future__ import annotations

ATTENTION = "runner_varlen"
PACKABLE = {"bert": "bert", "modernbert": "model"}  # model_type -> backbone attribute


def supports_packing(model) -> bool:
    config = getattr(model, "config", None)
    kind = getattr(config, "model_type", None)
    if kind not in PACKABLE or not hasattr(model, "classifier") or not hasattr(model, PACKABLE[kind]):
        return False
    return kind != "modernbert" or getattr(config, "classifier_pooling", "cls") in ("cls", "mean")


def varlen_kernel():
    """PyTorch's FlashAttention varlen function (torch >= 2.10 with CUDA), or None."""
    try:
        from torch.nn.attention.varlen import varlen_attn
    except ImportError:
        return None
    return varlen_attn


def varlen_attention(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None,
                     sliding_window=None, **kwargs):
    """transformers' attention interface: query/key/value (1, heads, tokens, dim) -> ((1, tokens, heads, dim), None).
    Rows are given by `cu_seq_lens_q` (cumulative lengths, int32) and `max_length_q`."""
    import torch

    cu = kwargs.get("cu_seq_lens_q")
    if cu is None:  # an unpacked batch (evaluation): plain SDPA with its mask
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      is_causal=False)
    # ModernBERT passes its half-window + 1 (FlashAttention's inclusive bound): keys within sliding_window - 1
    window = (-1, -1) if sliding_window is None else (sliding_window - 1, sliding_window - 1)
    q, k, v = (t[0].transpose(0, 1) for t in (query, key, value))  # (tokens, heads, dim)
    kernel = varlen_kernel()
    if kernel is not None and q.is_cuda and q.dtype in (torch.bfloat16, torch.float16):
        length = int(kwargs.get("max_length_q") or int((cu[1:] - cu[:-1]).max()))
        try:
            out = kernel(q, k, v, cu, cu, length, length, scale=scaling, window_size=window)
            return out.unsqueeze(0), None
        except TypeError:  # an older torch without window_size: only full attention goes to the kernel
            if window == (-1, -1):
                return kernel(q, k, v, cu, cu, length, length, scale=scaling).unsqueeze(0), None
    out = torch.empty_like(q)
    bounds = cu.tolist()
    for start, end in zip(bounds[:-1], bounds[1:]):
        mask = None
        if window[0] >= 0:
            position = torch.arange(end - start, device=q.device)
            mask = (position[:, None] - position[None, :]).abs() <= window[0]
        qs, ks, vs = (t[start:end].transpose(0, 1) for t in (q, k, v))  # (heads, n, dim)
        out[start:end] = torch.nn.functional.scaled_dot_product_attention(
            qs, ks, vs, attn_mask=mask, scale=scaling).transpose(0, 1)
    return out.unsqueeze(0), None


def register() -> str:
    """Register `runner_varlen` (attention, and its mask function) with transformers."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(ATTENTION, varlen_attention)
    AttentionMaskInterface.register(ATTENTION, _mask)
    return ATTENTION


def _mask(*args, **kwargs):
    """No mask for a packed batch (no attention_mask: the rows' bounds say it all); SDPA's for a padded one."""
    from transformers.masking_utils import sdpa_mask

    return None if kwargs.get("attention_mask") is None else sdpa_mask(*args, **kwargs)


def use_packed_attention(model) -> None:
    """Switch a supported model to `runner_varlen` (packed training batches; padded evaluation batches
    keep SDPA with their mask, through the same function)."""
    register()
    model.config._attn_implementation = ATTENTION
    for module in model.modules():
        config = getattr(module, "config", None)
        if config is not None and config is not model.config and hasattr(config, "_attn_implementation"):
            config._attn_implementation = ATTENTION


class PackedBatch:
    """Rows (dicts with input_ids, optional token_type_ids, labels) -> one packed row."""

    def __init__(self, position_start: int = 0):
        self.position_start = position_start

    def __call__(self, features):
        import numpy as np
        import torch

        lengths = np.asarray([len(row["input_ids"]) for row in features], dtype=np.int64)
        ends = np.cumsum(lengths)
        positions = np.arange(ends[-1]) - np.repeat(ends - lengths, lengths) + self.position_start

        def flat(key):
            return torch.from_numpy(np.concatenate([np.asarray(row[key], dtype=np.int64) for row in features]))[None]

        batch = {"input_ids": flat("input_ids"), "position_ids": torch.from_numpy(positions)[None]}
        if all("token_type_ids" in row for row in features):
            batch["token_type_ids"] = flat("token_type_ids")
        cu = torch.from_numpy(np.concatenate([[0], ends]).astype(np.int32))
        lengths = lengths.tolist()
        batch.update(cu_seq_lens_q=cu, cu_seq_lens_k=cu, max_length_q=max(lengths), max_length_k=max(lengths))
        if all("labels" in row for row in features):
            labels = [row["labels"] for row in features]
            kind = torch.float if isinstance(labels[0], (float, list)) else torch.long
            batch["labels"] = torch.tensor(labels, dtype=kind)
        return batch


def packed_logits(model, batch: dict):
    """Logits (rows, classes) of a packed batch through the model's own modules."""
    import torch

    kind = model.config.model_type
    backbone = getattr(model, PACKABLE[kind])
    cu = batch["cu_seq_lens_q"].to(batch["input_ids"].device)
    boundaries = {k: batch[k] for k in ("cu_seq_lens_q", "cu_seq_lens_k", "max_length_q", "max_length_k")}
    extra = {"token_type_ids": batch["token_type_ids"]} if "token_type_ids" in batch and kind == "bert" else {}
    hidden = backbone(input_ids=batch["input_ids"], position_ids=batch["position_ids"], **extra,
                      **boundaries).last_hidden_state[0]
    starts = cu[:-1].long()
    if kind == "bert":
        first = hidden[starts].unsqueeze(1)  # (rows, 1, hidden): the pooler reads [:, 0]
        pooled = backbone.pooler(first) if backbone.pooler is not None else first[:, 0]
        return model.classifier(model.dropout(pooled))
    if model.config.classifier_pooling == "cls":
        pooled = hidden[starts]
    else:  # mean over each row's tokens
        rows = torch.repeat_interleave(torch.arange(len(starts), device=hidden.device), (cu[1:] - cu[:-1]).long())
        pooled = torch.zeros(len(starts), hidden.shape[-1], dtype=hidden.dtype, device=hidden.device)
        pooled = pooled.index_add(0, rows, hidden) / (cu[1:] - cu[:-1]).unsqueeze(1).to(hidden.dtype)
    return model.classifier(model.drop(model.head(pooled)))
