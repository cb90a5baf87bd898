"""What a run produced, passed from the recipe to the record: one typed value instead of a dict
read back with defensive lookups. run.json keeps it whole, so a record can be written again
(`runner run SPEC --resume` on a run whose record was cut short) without retraining."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields


@dataclass
class RunResult:
    status: str
    """finished, recording (the record is being written), interrupted."""
    task: str
    labels: list[str]
    """Class names in id order; [] for regression."""
    data_summary: dict
    """rows per split, label_distribution, token_lengths, truncated, dropped, split_note, sources."""
    data_files: dict
    """role (train, validation, test) -> resolved path; hub -> {id, config, revision}."""
    log_history: list[dict]
    """The Trainer's log: losses, learning rates and evaluation metrics by step."""
    model: dict
    """Provenance: name, source, revision, weight_files, kind (full or lora), parameter counts, architecture."""
    device: str
    precision: str
    argv: list[str]
    timing: dict
    """started_at, finished_at, train_seconds, train_samples_per_second, total_seconds, global_step."""
    metrics: dict = field(default_factory=dict)
    """{validation: {...}, test: {...}, headline: {split, name, value}}."""
    per_class: dict = field(default_factory=dict)
    confusion_matrix: dict = field(default_factory=dict)
    class_weights: dict = field(default_factory=dict)
    """train.class_weights as applied: {label: weight}; {} without weights."""
    temperature: float | None = None
    """predict.calibration: the temperature fitted on validation (saved in config.json as runner_temperature)."""
    thresholds: dict = field(default_factory=dict)
    """predict.tune_thresholds: {label: threshold} chosen on validation (config.json runner_thresholds)."""
    calibration: dict = field(default_factory=dict)
    """{method, temperature, bins, splits: {split: {ece, ece_calibrated, log_loss, log_loss_calibrated,
    reliability, reliability_calibrated}}}."""
    data_checks: dict = field(default_factory=dict)
    """Duplicates, train/eval overlap, short/long texts, rare classes (runner.data.datachecks)."""
    error_analysis: dict = field(default_factory=dict)
    """{split: {mistakes, length_buckets, costly_pairs}} (runner.evaluate.erroranalysis)."""
    cross_validation: dict = field(default_factory=dict)
    """data.cross_validation: {folds, seed, per_fold: [{fold, rows, metrics}], mean, std, final_model}."""
    label_issues: dict = field(default_factory=dict)
    """From the out-of-fold probabilities: {method, count, rows,
    top: [{row, text, given_label, suggested_label, score}]}."""
    precision_reason: str = ""
    """Why train.precision came out as it did (runner.train.hardware: the spec, or what the hardware is)."""
    threads: str = ""
    """CPU threads and why (train.threads, OMP_NUM_THREADS or the affinity mask), with OMP_WAIT_POLICY."""
    distributed: dict = field(default_factory=dict)
    """How the training ran over processes: {strategy: single, ddp, fsdp, fsdp2 or deepspeed, world_size: N}
    (runner.train.sharded.training_setup); {} in a record written before it was kept."""
    checkpoints: dict = field(default_factory=dict)
    """What RUN/checkpoints kept once the run finished, and its size (runner.train.checkpoints)."""
    search: dict = field(default_factory=dict)
    """search: {metric, direction, sampler, pruner, seconds,
    trials: [{number, state, value, params, seconds}], best}."""

    @property
    def headline(self) -> dict:
        headline = self.metrics.get("headline")
        return headline if isinstance(headline, dict) else {}

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> RunResult:
        """From run.json's copy (or a test's dict); unknown keys are ignored, missing ones empty."""
        known = {f.name: f for f in fields(cls)}
        given = {key: value for key, value in values.items() if key in known}
        for name in ("status", "task", "device", "precision"):
            given.setdefault(name, "")
        for name in ("labels", "log_history", "argv"):
            given.setdefault(name, [])
        for name in ("data_summary", "data_files", "model", "timing"):
            given.setdefault(name, {})
        return cls(**given)
