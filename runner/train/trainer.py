"""Training: device and precision, TrainingArguments, the Trainer with early stopping, and a clean
stop on SIGINT/SIGTERM (a checkpoint is saved, then the run exits 130/143)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from runner.console import emit, warn
from runner.evaluate.strategies import trainer_metrics_function
from runner.record.rundir import LOGS, RunDir
from runner.spec.sections import TrainSection
from runner.spec.tasks import Task, lower_is_better
from runner.train.weights import weighted_loss

MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids", "labels")


def choose_device(preference: str) -> str:
    import torch

    if preference != "auto":
        if preference == "cuda" and not torch.cuda.is_available():
            from runner.errors import RunError

            raise RunError("train.device is cuda but no CUDA GPU is visible",
                           "use device: auto or cpu, or check the GPU driver (nvidia-smi)", "train.device")
        if preference == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            from runner.errors import RunError

            raise RunError("train.device is mps but this machine has no Apple GPU that torch can use (MPS)",
                           "use device: auto (it picks CUDA, MPS or the CPU) or cpu", "train.device")
        return preference
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def choose_precision(preference: str, device: str) -> str:
    """auto: bf16 on GPUs that have it, fp16 on older GPUs; bf16 autocast on a CPU with native bf16 (AMX or
    AVX512-BF16); else fp32. Decided from what the hardware is, never from a timing (runner.train.hardware)."""
    from runner.train.hardware import precision_decision

    return precision_decision(preference, device)[0]


def cpu_bf16_pays(ratio: float = 1.3) -> bool:
    """A probe for `runner doctor` and bench/, not for runs: native bf16 and a bf16 matmul of a training-step
    size (1024x384x1536) at least `ratio` times as fast as fp32. Under load its answer varies."""
    from runner.train.hardware import cpu_info

    if not cpu_info()["flags"] & {"amx_bf16", "avx512_bf16"}:
        return False
    import torch

    def best(dtype) -> float:
        a, b = torch.randn(1024, 384, dtype=dtype), torch.randn(384, 1536, dtype=dtype)
        a @ b  # warm up
        seconds = []
        for _ in range(5):
            started = time.perf_counter()
            a @ b
            seconds.append(time.perf_counter() - started)
        return min(seconds)

    return best(torch.float32) / best(torch.bfloat16) >= ratio


def fused_adamw_available(device: str) -> bool:
    """Fused AdamW updates all parameters in one kernel: on CUDA, and on the CPU from torch 2.4, where
    it takes a sixth of the time of the foreach AdamW (22M parameters: 20-30 ms a step, not 130-200)."""
    import torch
    from packaging.version import Version

    return device == "cuda" or (device == "cpu" and Version(torch.__version__.split("+")[0]) >= Version("2.4"))


def describe_device(device: str) -> str:
    import torch

    from runner.train.sharded import training_setup

    name = f"cuda:0 ({torch.cuda.get_device_name(0)})" if device == "cuda" else device
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        strategy = training_setup()["strategy"]
        sharded = f", {strategy}" if strategy not in ("ddp", "single") else ""  # DDP: the processes' default
        name += f", {torch.distributed.get_world_size()} processes ({torch.distributed.get_backend()}{sharded})"
    return name


def literal_path(path: Path) -> str:
    """The path for Trainer, which expands a leading ~ to the home folder: a folder named ~ is ./~ (one folder)."""
    return f"./{path}" if str(path).startswith("~") else str(path)


def training_arguments(train: TrainSection, seed: int, run_dir: Path, device: str, precision: str):
    from transformers import TrainingArguments

    metric = train.metric_for_best_model
    optimizer = train.optimizer
    if optimizer == "auto":
        optimizer = "adamw_torch_fused" if fused_adamw_available(device) else "adamw_torch"
    return TrainingArguments(
        output_dir=literal_path(RunDir(run_dir).checkpoints),
        num_train_epochs=train.epochs,
        max_steps=train.max_steps or -1,
        learning_rate=train.learning_rate,
        per_device_train_batch_size=train.batch_size,
        per_device_eval_batch_size=train.eval_batch_size,
        gradient_accumulation_steps=train.gradient_accumulation_steps,
        weight_decay=train.weight_decay,
        warmup_steps=train.warmup_ratio,  # a float below 1 is a ratio of the total steps
        lr_scheduler_type=train.lr_scheduler,
        optim=optimizer,
        max_grad_norm=train.max_grad_norm,
        eval_strategy=train.eval_strategy,
        eval_steps=train.eval_steps,
        save_strategy=train.save_strategy,
        save_steps=train.save_steps or 500,
        save_total_limit=train.save_total_limit,
        load_best_model_at_end=train.load_best_model_at_end,
        metric_for_best_model=metric,
        greater_is_better=not lower_is_better(metric),
        logging_steps=train.logging_steps,
        logging_first_step=True,
        report_to=train.report_to or "none",
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        # TF32 stays off: under bf16 autocast it speeds up nothing that matters, and on an H200 every new batch
        # shape then costs a cuBLAS search (MiniLM, batches of 16 padded to their longest: 14 steps/s with
        # TF32, 87 without; bench/README)
        tf32=None,
        use_cpu=device == "cpu",
        seed=seed,
        data_seed=seed,
        train_sampling_strategy="group_by_length" if train.group_by_length else "random",
        length_column_name="length",
        remove_unused_columns=False,  # keep `length` for the sampler; the collator drops it
        include_num_input_tokens_seen="all",  # padded tokens, so the log shows what the hardware computed
        # Classification losses are per-row means; averaging over tokens would multiply them (and the
        # evaluation loss) by the number of processes.
        average_tokens_across_devices=False,
        activation_checkpointing=train.gradient_checkpointing,
        auto_find_batch_size=train.auto_find_batch_size,
        dataloader_num_workers=train.dataloader_num_workers,
        disable_tqdm=False,  # off a terminal its bar gives way to lines (runner.train.progress.lines_for_bars)
        save_only_model=False,
    )


def padding_multiple(device: str, precision: str) -> int | None:
    """8 for bf16/fp16 on a GPU, else None (each batch padded to its own longest row). Measured on an H200
    (bench/README.md, gpu.py): batches of 16 under bf16 autocast padded to their own longest row meet a new
    shape almost every step, and each new shape cost so much that MiniLM trained 6 to 40 steps/s over its
    first 700 steps; padded to a multiple of 8 (16 shapes), 42 steps/s from the first. The CPU pads nothing
    extra: there a padded token costs compute and a new shape costs little."""
    return 8 if device == "cuda" and precision in ("bf16", "fp16") else None


class PadBatch:
    """DataCollatorWithPadding over the model inputs only (rows also carry `length` and stats), each batch
    padded to its longest row, rounded up to `multiple` when one is given (runner.train.trainer.padding_multiple)."""

    def __init__(self, tokenizer, multiple: int | None = None):
        from transformers import DataCollatorWithPadding

        self.multiple = multiple
        self.pad = DataCollatorWithPadding(tokenizer, pad_to_multiple_of=multiple)

    def __call__(self, features):
        return self.pad([{k: v for k, v in row.items() if k in MODEL_INPUTS} for row in features])


class GracefulStop:
    """First SIGINT/SIGTERM: ask the Trainer to save a checkpoint and stop. Second: exit at once."""

    def __init__(self, saves: bool = True):
        self.saves = saves
        self.signal_number: int | None = None
        self._previous = {}

    def __enter__(self):
        from runner.stopping import in_main_thread

        # Ray Train, a notebook's worker, a subinterpreter: Python allows handlers in the main thread of the main
        # interpreter only; elsewhere training runs without (the CLI's stopping.install says so, once).
        if not in_main_thread():
            return self
        try:
            for number in (signal.SIGINT, signal.SIGTERM):
                previous = signal.getsignal(number)
                signal.signal(number, self._handle)
                self._previous[number] = previous
        except ValueError:  # a subinterpreter's main thread
            self.__exit__()
            self._previous = {}
        return self

    def __exit__(self, *exc):
        from runner.stopping import put_back

        put_back(self._previous)

    def _handle(self, number, frame):
        if self.signal_number is not None:
            os._exit(128 + number)
        self.signal_number = number
        doing = "saving a checkpoint and stopping" if self.saves else "stopping"
        emit(f"\n{signal.Signals(number).name}: {doing} (send it again to exit at once)", flush=True)

    @property
    def exit_code(self) -> int:
        return 128 + (self.signal_number or 0)

    def callback(self):
        from transformers import TrainerCallback

        stop = self

        class StopOnSignal(TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                if stop.signal_number is not None:
                    control.should_save = True
                    control.should_training_stop = True
                return control

        return StopOnSignal()


def length_ordered_trainer():
    """transformers' Trainer with two fixes to its length grouping (`train_sampling_strategy`):

    - the sampler gets the `length` column in one read; the Trainer hands it datasets' Column,
      which the sampler reads row by row (minutes per epoch for a million rows);
    - evaluation runs in length order (little padding) and `predict` returns rows in the
      dataset's order; the Trainer's own grouped evaluation order is shuffled, so predictions
      would not line up with their rows.
    """
    import numpy as np
    from torch.utils.data import SequentialSampler
    from transformers import Trainer
    from transformers.trainer_pt_utils import LengthGroupedSampler

    from runner.train.model import column_array

    class EpochSeededSampler(LengthGroupedSampler):
        """Length-grouped batches in an order set by (seed, epoch) alone. The stock sampler draws
        from the global RNG when an epoch starts, so a run resumed mid-epoch got other batches for
        the rest of that epoch than a run that never stopped. The Trainer calls set_epoch."""

        seed, epoch = 0, 0

        def set_epoch(self, epoch):
            self.epoch = epoch

        def __iter__(self):
            import torch

            self.generator = torch.Generator().manual_seed(self.seed + self.epoch)
            return super().__iter__()

    class LengthOrderedTrainer(Trainer):
        def _get_train_sampler(self, train_dataset=None):
            sampler = super()._get_train_sampler(train_dataset)
            if isinstance(sampler, LengthGroupedSampler):
                dataset = train_dataset if train_dataset is not None else self.train_dataset
                lengths = column_array(dataset, self.args.length_column_name).tolist()
                sampler = EpochSeededSampler(sampler.batch_size, lengths=lengths)
                sampler.seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
            return sampler

        def get_train_dataloader(self):
            budget, packed = getattr(self, "max_tokens_per_batch", None), getattr(self, "padding_free", False)
            if (not budget and not packed) or self.args.world_size > 1:
                return super().get_train_dataloader()
            from runner.train.fastpath import train_dataloader

            return train_dataloader(self, budget, packed)

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if "cu_seq_lens_q" in inputs:  # a padding-free batch (runner.train.packing)
                from runner.train.fastpath import packed_loss

                return packed_loss(self, model, inputs, return_outputs, num_items_in_batch)
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)

        def _save_checkpoint(self, model, trial):
            super()._save_checkpoint(model, trial)
            # Which checkpoint is the best, each process decides from what its own disk shows, and only rank 0
            # writes the model: a process training in a folder of its own (a fold's temporary folder) may not
            # see it, and skip loading the best model at the end that the others load (a hang under FSDP, other
            # weights under DDP). Every process takes rank 0's decision.
            if self.args.world_size > 1:
                import torch

                best = [self.state.best_model_checkpoint]
                torch.distributed.broadcast_object_list(best, src=0)
                self.state.best_model_checkpoint = best[0]

        def _get_eval_sampler(self, eval_dataset):
            return SequentialSampler(eval_dataset) if self.args.world_size <= 1 else None

        def predict(self, test_dataset, ignore_keys=None, metric_key_prefix="test"):
            order = np.argsort(column_array(test_dataset, self.args.length_column_name), kind="stable")
            output = super().predict(test_dataset.select(order), ignore_keys, metric_key_prefix)
            inverse = np.argsort(order)

            def unsort(values):
                if isinstance(values, tuple):
                    return tuple(unsort(v) for v in values)
                return values[inverse] if values is not None else None

            return output._replace(predictions=unsort(output.predictions), label_ids=unsort(output.label_ids))

    return LengthOrderedTrainer


def sorted_by_length(dataset):
    """The rows in length order (an index over the same Arrow data, not a copy)."""
    import numpy as np

    from runner.train.model import column_array

    return dataset.select(np.argsort(column_array(dataset, "length"), kind="stable"))


def build_trainer(train: TrainSection, task: Task, threshold: float, seed: int, model, tokenizer, tokenized: dict,
                  labels: list[str], output_dir: Path, device: str, precision: str, class_weights: dict | None = None,
                  model_init=None):
    """The Trainer for `model` (or `model_init`, which a search calls for each trial), its metrics at predict.threshold
    (`threshold`); `class_weights` ({label: weight}, runner.train.weights) weigh the training loss."""
    from transformers import EarlyStoppingCallback

    from runner.console import say
    from runner.train import progress
    from runner.train.fastpath import prepare_model
    from runner.train.hardware import apply_threads

    if device == "cpu":
        say(f"threads: {'; '.join(str(part) for part in apply_threads(train.threads))}")
    notes, packed = prepare_model(model, train, device) if model is not None else ([], False)
    if padding_multiple(device, precision):
        notes.append(f"batches padded to a multiple of {padding_multiple(device, precision)} (fewer shapes on the GPU)")
    if notes:
        say(f"training: {'; '.join(notes)}")
    args = training_arguments(train, seed, output_dir, device, precision)
    callbacks = []
    if train.early_stopping_patience:
        callbacks.append(EarlyStoppingCallback(train.early_stopping_patience, train.early_stopping_threshold))
    evaluated = "validation" in tokenized and (train.eval_strategy != "no" or model_init is not None)
    trainer = length_ordered_trainer()(
        model=model,
        model_init=model_init,
        args=args,
        train_dataset=tokenized["train"],
        eval_dataset=sorted_by_length(tokenized["validation"]) if evaluated else None,
        processing_class=tokenizer,
        data_collator=PadBatch(tokenizer, padding_multiple(device, precision)),
        compute_metrics=trainer_metrics_function(task, labels, threshold),
        callbacks=callbacks,
        compute_loss_func=weighted_loss(class_weights, labels, task) if class_weights else None,
    )
    for callback in trainer.callback_handler.callbacks:  # TensorBoard logs go to the run folder's logs/
        if type(callback).__name__ == "TensorBoardCallback":
            callback.logging_dir = literal_path(output_dir / LOGS)
    progress.lines_for_bars(trainer)  # off a terminal: a line every 10% of the steps, no `\r` frames
    trainer.max_tokens_per_batch = train.max_tokens_per_batch  # read by get_train_dataloader
    trainer.padding_free = packed
    return trainer


def recorded_choices(train: TrainSection, device: str, precision: str) -> dict:
    """What run.json says about the precision and the threads: the choice and why (runner.train.hardware)."""

    import torch

    from runner.train.hardware import precision_decision, thread_decision

    chosen, reason = precision_decision(train.precision, device)
    if chosen != precision:  # a caller that chose otherwise (a test, a flow): say so rather than guess
        reason = f"{precision} as given to the run ({reason} would pick {chosen})"
    why = thread_decision(train.threads)[1]
    policy = os.environ.get("OMP_WAIT_POLICY", "unset")
    choices = {"precision_reason": reason,
               "threads": f"{torch.get_num_threads()} ({why}; OMP_WAIT_POLICY={policy})" if device == "cpu" else ""}
    from runner.train.sharded import training_setup

    choices["distributed"] = training_setup()  # {"strategy": "fsdp2", "world_size": 2}
    return choices


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint (checkpoint_problem); each newer one is skipped with a warning."""
    from runner.train.checkpoints import checkpoint_folders

    for _, path in sorted(checkpoint_folders(RunDir(run_dir).checkpoints).items(), reverse=True):
        problem = checkpoint_problem(path)
        if problem is None:
            return path
        warn(f"skipping {problem}")
    return None


def checkpoint_problem(path: Path) -> str | None:
    """None for a complete checkpoint, else what is wrong: no readable trainer_state.json (the Trainer writes it last,
    so a save cut short lacks it), or a truncated optimizer or weights file (it would fail mid-resume)."""
    import json

    try:
        json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return f"incomplete checkpoint {path}"
    damaged = damaged_files(path)
    return f"damaged checkpoint {path} ({', '.join(damaged)} truncated or unreadable)" if damaged else None


def damaged_files(checkpoint: Path) -> list[str]:
    """The files of a checkpoint that cannot be whole, found without loading them: a torch file
    (.pt, .pth, .bin: a zip archive) without its central directory, a safetensors file whose size
    is not what its header says."""
    import json
    import struct
    import zipfile

    damaged = []
    for path in sorted(checkpoint.iterdir()):
        try:
            if path.suffix in (".pt", ".pth", ".bin"):
                whole = zipfile.is_zipfile(path)
            elif path.suffix == ".safetensors":
                with open(path, "rb") as stream:
                    (length,) = struct.unpack("<Q", stream.read(8))
                    if length > path.stat().st_size:
                        raise ValueError("header longer than the file")
                    header = json.loads(stream.read(length))
                ends = [entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__"]
                whole = 8 + length + max(ends, default=0) == path.stat().st_size
            else:
                continue
        except (OSError, ValueError, struct.error, KeyError, TypeError, IndexError, MemoryError, OverflowError):
            whole = False
        if not whole:
            damaged.append(path.name)
    return damaged
