"""Training with the model sharded over the processes: FSDP2 under `accelerate launch`
(examples/accelerate/fsdp2.yaml; FSDP version 1 takes the same path, untested). Each process holds a
shard of every parameter, so the whole model exists on none of them until it is gathered, and
gathering is a collective: every process takes part.

The Trainer's checkpoints do that themselves (Trainer.save_model runs on every rank). runner saves the
final model later, on rank 0 alone, after the evaluation, when the other ranks have returned: its
save_pretrained handed the parameters as they are, DTensor shards (transformers gathers only a model
it sharded itself), to safetensors, whose shared-storage check failed on them ("Attempted to access
the data pointer on an invalid python storage"); and gathering them there would wait forever for the
others. So `keep_full_weights`, called on every rank right after training (when
load_best_model_at_end has loaded the best checkpoint), gathers the full state dict to rank 0's CPU
memory and makes it what rank 0's model saves, and what a copy of it (lora.merge) is built from.
"""

from __future__ import annotations

import re

STRATEGIES = ("single", "ddp", "fsdp", "fsdp2", "deepspeed")
# what FSDP 1, activation checkpointing and torch.compile put in a module's name (a state dict's names have none)
WRAPPERS = re.compile(r"(_fsdp_wrapped_module|_checkpoint_wrapped_module|_orig_mod)\.")


def training_setup() -> dict:
    """{"strategy": one of STRATEGIES, "world_size": processes} of the training in this process, for run.json:
    read from torch.distributed and the accelerate state the Trainer made (nothing is initialised here)."""
    import torch

    world = torch.distributed.get_world_size() if torch.distributed.is_available() and \
        torch.distributed.is_initialized() else 1
    strategy = "ddp" if world > 1 else "single"
    try:
        from accelerate.state import AcceleratorState
        from accelerate.utils import DistributedType
    except ImportError:  # pragma: no cover - accelerate comes with transformers' Trainer
        return {"strategy": strategy, "world_size": world}
    shared = AcceleratorState._shared_state
    kind = shared.get("distributed_type") if shared else None
    if kind == DistributedType.FSDP:
        plugin = shared.get("fsdp_plugin")
        strategy = "fsdp2" if getattr(plugin, "fsdp_version", 1) == 2 else "fsdp"
    elif kind == DistributedType.DEEPSPEED:
        strategy = "deepspeed"
    return {"strategy": strategy, "world_size": world}


def unsharded_class(model) -> type:
    """The model's own class: FSDP2's fully_shard gives a model a class of its own, FSDP<name>, a subclass of
    FSDPModule and of the model's class."""
    cls = type(model)
    try:
        from torch.distributed.fsdp import FSDPModule
    except ImportError:  # pragma: no cover - a torch without distributed support
        return cls
    return next(c for c in cls.__mro__ if not issubclass(c, FSDPModule)) if issubclass(cls, FSDPModule) else cls


def is_sharded(trainer) -> bool:
    """True when the Trainer's model is sharded over the processes with FSDP (1 or 2)."""
    return bool(getattr(trainer, "is_fsdp_enabled", False))


def keep_full_weights(trainer) -> None:
    """On EVERY rank, after training: gather the sharded model's full state dict (a collective; it lands on
    rank 0's CPU, the other ranks get nothing) and make it the weights that rank 0's `model.save_pretrained`
    writes. Nothing to do for a model that is not sharded."""
    if not is_sharded(trainer):
        return
    state = trainer.accelerator.get_state_dict(trainer.model)  # every rank calls it
    if not trainer.accelerator.is_main_process:
        return
    model = trainer.model  # what runner saves; FSDP 1 wraps the model, FSDP2 (fully_shard) changes it in place
    inner = trainer.accelerator.unwrap_model(model)
    save = type(inner).save_pretrained

    def save_pretrained(save_directory, *args, state_dict=None, **kwargs):
        """The model's save_pretrained with the gathered weights (the model itself holds shards)."""
        return save(inner, save_directory, *args, state_dict=state if state_dict is None else state_dict, **kwargs)

    model.save_pretrained = save_pretrained
    # lora.merge saves copy.deepcopy(model).merge_and_unload(); FSDP2 refuses to copy a sharded model
    model.__deepcopy__ = lambda memo: unsharded_copy(inner, state)


def unsharded_copy(model, state: dict):
    """A copy of `model` (a transformers model, or a PEFT model around one) that is not sharded: the same
    classes built on the meta device from its config (and adapter settings), given a copy of `state`, its
    gathered weights, on the CPU, and the buffers that no state dict holds (a rotary embedding's frequencies)."""
    import copy

    import torch

    adapters = getattr(model, "peft_config", None)
    base = model.get_base_model() if adapters else model
    with torch.device("meta"):
        twin = unsharded_class(base)(base.config)
    if adapters:
        from peft import get_peft_model

        twin = get_peft_model(twin, copy.deepcopy(adapters[model.active_adapter]))
    twin.load_state_dict({name: tensor.clone() for name, tensor in state.items()}, strict=True, assign=True)
    for name, buffer in model.named_buffers():
        owner, _, leaf = WRAPPERS.sub("", name).rpartition(".")
        setattr(twin.get_submodule(owner), leaf, buffer.detach().to("cpu", copy=True))
    left = [name for name, tensor in [*twin.named_parameters(), *twin.named_buffers()] if tensor.is_meta]
    if left:
        raise RuntimeError(f"the unsharded copy of the model lacks {', '.join(left[:3])}")
    return twin.train(model.training)
