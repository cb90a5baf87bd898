"""Test-only (tests/train/test_multinode.py puts this folder on PYTHONPATH for its FSDP2 test, never for runs).

1. RUNNER_TEST_FSDP_ON_CPU=1: accelerate shards with FSDP on the CPU (gloo). accelerate (1.16) sets
   `distributed_type = FSDP` and keeps its FSDP plugin only in the branch of `AcceleratorState.__init__` for
   GPU-like backends (MULTI_GPU, MULTI_XPU, MULTI_NPU, ...); on the CPU the processes stay MULTI_CPU,
   `state.fsdp_plugin` is never set, and the Trainer (whose `is_fsdp_enabled` is `state.fsdp_plugin is not None`)
   trains with DDP. This finishes what that branch does, when `accelerate launch` was given an FSDP configuration
   (it sets ACCELERATE_USE_FSDP for the processes): nothing in FSDP2 itself (fully_shard, DTensor, the
   distributed checkpoint) needs a GPU; gloo does the collectives.
2. RUNNER_TEST_SIGTERM_AT_STEP=N: every process sends itself SIGTERM at the end of optimizer step N, as a
   Ctrl-C would, but at the same step in each (runner's stop saves a checkpoint, a collective under FSDP).
"""

import os


def patch_state(module) -> None:
    from accelerate.utils import DistributedType

    state_class, partial_class = module.AcceleratorState, module.PartialState
    original = state_class.__init__

    def __init__(self, *args, fsdp_plugin=None, **kwargs):
        original(self, *args, fsdp_plugin=fsdp_plugin, **kwargs)
        if self.distributed_type == DistributedType.MULTI_CPU and fsdp_plugin is not None:
            self.distributed_type = DistributedType.FSDP
            self.fsdp_plugin = fsdp_plugin
            partial_class._shared_state["distributed_type"] = DistributedType.FSDP

    state_class.__init__ = __init__


def patch_callbacks(module) -> None:
    import signal

    step = int(os.environ["RUNNER_TEST_SIGTERM_AT_STEP"])
    original = module.CallbackHandler.on_step_end

    def on_step_end(self, args, state, control):
        if state.global_step == step:
            os.kill(os.getpid(), signal.SIGTERM)  # the handler runs here, before runner's callback looks
        return original(self, args, state, control)

    module.CallbackHandler.on_step_end = on_step_end


PATCHES = {}
if os.environ.get("RUNNER_TEST_FSDP_ON_CPU") and os.environ.get("ACCELERATE_USE_FSDP", "").lower() == "true":
    PATCHES["accelerate.state"] = patch_state
if os.environ.get("RUNNER_TEST_SIGTERM_AT_STEP"):
    PATCHES["transformers.trainer_callback"] = patch_callbacks

if PATCHES:
    import importlib.abc
    import importlib.util
    import sys

    class PatchOnImport(importlib.abc.MetaPathFinder):
        """Patch each module of PATCHES once it is imported (importing them here would slow every start)."""

        def find_spec(self, name, path=None, target=None):
            if name not in PATCHES:
                return None
            patch = PATCHES.pop(name)
            if not PATCHES:
                sys.meta_path.remove(self)
            spec = importlib.util.find_spec(name)  # the finders after this one
            run = spec.loader.exec_module

            def exec_module(module):
                run(module)
                patch(module)

            spec.loader.exec_module = exec_module
            return spec

    sys.meta_path.insert(0, PatchOnImport())
