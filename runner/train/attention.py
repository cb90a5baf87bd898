"""Attention in fp32 under the CPU's bf16 autocast (`runner_sdpa_fp32`).

PyTorch's bf16 flash-attention backward on the CPU is much slower than its fp32 one: profiled on a
Xeon with AMX (bench/step.py --profile, MiniLM, 16 rows x 22 tokens), it took 6.6 ms a call against
0.57 ms in fp32, a third of the bf16 step. So on the CPU under bf16, the runner registers an attention
function with transformers' AttentionInterface that runs SDPA on fp32 copies of q, k and v (autocast
off inside) and hands back bf16; the matrix products around it stay bf16. `python bench/step.py --attn
sdpa-fp32` measures it against plain SDPA (figures in bench/README.md). The saved model is unchanged:
`_attn_implementation` is not written to config.json, and a reloaded model uses SDPA.

Only for model families whose attention goes through transformers' attention interface and that the
tests train this way (`FAMILIES`); others keep SDPA.
"""

from __future__ import annotations

NAME = "runner_sdpa_fp32"
FAMILIES = ("bert", "distilbert", "modernbert", "llama", "qwen2", "gpt2")


def sdpa_fp32(module, query, key, value, attention_mask, **kwargs):
    """transformers' SDPA attention on fp32 copies of its inputs, with autocast off; the output in the
    inputs' dtype."""
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    dtype = query.dtype
    if attention_mask is not None and attention_mask.is_floating_point():
        attention_mask = attention_mask.float()
    with torch.autocast(query.device.type, enabled=False):
        output, weights = sdpa_attention_forward(module, query.float(), key.float(), value.float(), attention_mask,
                                                 **kwargs)
    return output.to(dtype), weights


def wanted(model, device: str, precision: str) -> bool:
    config = getattr(model, "config", None)
    return (device == "cpu" and precision == "bf16" and getattr(config, "model_type", None) in FAMILIES
            and getattr(config, "_attn_implementation", None) == "sdpa")


def use_fp32_attention(model) -> None:
    """Register `runner_sdpa_fp32` (and SDPA's mask for it) and switch the model and its sub-configs to it."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(NAME, sdpa_fp32)
    AttentionMaskInterface.register(NAME, sdpa_mask)
    for module in model.modules():
        config = getattr(module, "config", None)
        if config is not None and getattr(config, "_attn_implementation", None) == "sdpa":
            config._attn_implementation = NAME
