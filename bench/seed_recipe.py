"""The seed's recipe, written out as the seed shows it: pandas -> Dataset.from_pandas ->
tokenizer(..., truncation=True, padding=True) in a batched map (every row of a 1,000-row map batch
padded to that batch's longest row) -> AutoModelForSequenceClassification -> TrainingArguments +
Trainer with its default collator.

Only two things are added, neither changes the training: `include_num_input_tokens_seen="all"`
(counts the padded tokens the model computed) and a JSON summary at the end. The hyperparameters
come from the command line, so bench/speed.py gives both sides the same ones.

    python bench/seed_recipe.py --train T.csv --validation V.csv --model FOLDER --labels a,b --out DIR
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
from datasets import Dataset
from sklearn.metrics import accuracy_score, f1_score
from transformers import AutoModelForSequenceClassification, AutoTokenizer, Trainer, TrainingArguments


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", required=True)
    parser.add_argument("--validation", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--labels", required=True, help="comma-separated, in id order")
    parser.add_argument("--out", required=True)
    parser.add_argument("--epochs", type=float, default=3)
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--warmup-ratio", type=float, default=0.1)
    parser.add_argument("--weight-decay", type=float, default=0.01)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--bf16", action="store_true")
    args = parser.parse_args()
    started = time.perf_counter()
    out = Path(args.out)

    labels = args.labels.split(",")
    label2id = {label: i for i, label in enumerate(labels)}
    train_df = pd.read_csv(args.train)
    val_df = pd.read_csv(args.validation)
    train_df["label"] = train_df["label"].map(label2id)
    val_df["label"] = val_df["label"].map(label2id)

    tokenizer = AutoTokenizer.from_pretrained(args.model)

    def tokenize(batch):
        return tokenizer(batch["text"], truncation=True, padding=True, max_length=args.max_length)

    train_ds = Dataset.from_pandas(train_df).map(tokenize, batched=True)
    val_ds = Dataset.from_pandas(val_df).map(tokenize, batched=True)

    model = AutoModelForSequenceClassification.from_pretrained(
        args.model, num_labels=len(labels), id2label=dict(enumerate(labels)), label2id=label2id
    )

    def compute_metrics(eval_pred):
        logits, label_ids = eval_pred
        predictions = np.argmax(logits, axis=-1)
        return {
            "accuracy": accuracy_score(label_ids, predictions),
            "f1_macro": f1_score(label_ids, predictions, average="macro"),
        }

    training_args = TrainingArguments(
        output_dir=str(out / "checkpoints"),
        num_train_epochs=args.epochs,
        learning_rate=args.learning_rate,
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=args.batch_size,
        weight_decay=args.weight_decay,
        warmup_steps=args.warmup_ratio,
        eval_strategy="epoch",
        save_strategy="epoch",
        save_total_limit=2,
        load_best_model_at_end=True,
        metric_for_best_model="f1_macro",
        seed=args.seed,
        bf16=args.bf16,
        report_to="none",
        include_num_input_tokens_seen="all",
    )
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=train_ds,
        eval_dataset=val_ds,
        processing_class=tokenizer,
        compute_metrics=compute_metrics,
    )
    train_output = trainer.train()
    final = trainer.evaluate()
    trainer.save_model(str(out / "model"))

    summary = {
        "train_runtime": train_output.metrics["train_runtime"],
        "train_samples_per_second": train_output.metrics["train_samples_per_second"],
        "global_step": trainer.state.global_step,
        "padded_tokens": int(trainer.state.num_input_tokens_seen),
        "validation_accuracy": final["eval_accuracy"],
        "validation_f1_macro": final["eval_f1_macro"],
        "optimizer": str(training_args.optim),
        "total_seconds": time.perf_counter() - started,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
