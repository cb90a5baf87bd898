"""Label issues: rows whose given label looks wrong, most suspect first (label_issues.csv of a
cross-validation run).

Two views of every row, both out of fold: the fine-tuned model's probabilities (from the K folds)
and a cheap second view, TF-IDF word and character n-grams with a logistic regression, fitted out
of fold on the same rows in seconds. They see different things (the model: meaning; the n-grams:
the words themselves), so their errors differ and their average ranks wrong labels better than
either alone (bench/label_issues.py measures it against cleanlab on the TF-IDF view alone). On the
averaged probabilities, cleanlab's confident learning flags rows and its self-confidence score (the
probability given to the given label; low is suspect) ranks them.

When the fine-tuned model is too weak out of fold for its probabilities to mean much (it predicts a
class never, or is barely above always answering the largest class), the result carries a warning.
"""

from __future__ import annotations

import numpy as np

SECOND_VIEW_FOLDS = 5
MODEL_WEIGHT = 0.5  # the fine-tuned model's share of the averaged probabilities


def second_view(texts: list[str], truth, n_classes: int, folds: int = SECOND_VIEW_FOLDS, seed: int = 0) -> np.ndarray:
    """Out-of-fold class probabilities of TF-IDF (word 1-2-grams and character 2-5-grams) + logistic regression."""
    from scipy.sparse import hstack
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import KFold, StratifiedKFold

    truth = np.asarray(truth, dtype=int)
    texts = [str(t) for t in texts]
    out = np.full((len(texts), n_classes), 1.0 / n_classes)
    counts = np.bincount(truth, minlength=n_classes)
    folds = max(2, min(folds, len(texts) // 2))
    stratified = counts[counts > 0].min() >= folds
    splitter = (StratifiedKFold if stratified else KFold)(folds, shuffle=True, random_state=seed)
    for fitted_on, scored_on in splitter.split(np.zeros(len(texts)), truth if stratified else None):
        present = np.unique(truth[fitted_on])
        if len(present) < 2:
            continue
        words = TfidfVectorizer(ngram_range=(1, 2), min_df=1, sublinear_tf=True)
        chars = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), min_df=2, sublinear_tf=True)
        train_texts = [texts[i] for i in fitted_on]
        test_texts = [texts[i] for i in scored_on]
        x_train = hstack([words.fit_transform(train_texts), chars.fit_transform(train_texts)]).tocsr()
        x_test = hstack([words.transform(test_texts), chars.transform(test_texts)]).tocsr()
        model = LogisticRegression(C=10.0, max_iter=2000).fit(x_train, truth[fitted_on])
        probs = np.full((len(scored_on), n_classes), 1e-6)
        probs[:, present] = model.predict_proba(x_test)
        out[scored_on] = probs / probs.sum(axis=1, keepdims=True)
    return out


def combine(model_probs, view_probs, weight: float = MODEL_WEIGHT) -> np.ndarray:
    return weight * np.asarray(model_probs, dtype=float) + (1.0 - weight) * np.asarray(view_probs, dtype=float)


def flagged_and_scores(truth, probabilities) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(confident-learning flags, out-of-fold prediction is another label, self-confidence scores)."""
    from cleanlab.filter import find_label_issues as cleanlab_issues
    from cleanlab.rank import get_label_quality_scores

    truth, probabilities = np.asarray(truth, dtype=int), np.asarray(probabilities, dtype=float)
    confident = cleanlab_issues(truth, probabilities, n_jobs=1)
    return confident, probabilities.argmax(axis=1) != truth, get_label_quality_scores(truth, probabilities)


def ranking_from_probabilities(truth, probabilities) -> list[int]:
    """Every row, most suspect first: the flagged rows (confident learning, or predicted as another label)
    by self-confidence, then the others by self-confidence."""
    confident, other, scores = flagged_and_scores(truth, probabilities)
    flagged = confident | other
    return np.lexsort((scores, ~flagged)).tolist()


def anchor_ranking(truth, view_probs) -> list[int]:
    """The anchor: cleanlab on the TF-IDF view alone, as a practitioner would run it (flagged rows by
    self-confidence, then the rest by self-confidence)."""
    return ranking_from_probabilities(truth, view_probs)


def weak_model_warning(truth, probabilities, labels: list[str]) -> str | None:
    """Why the out-of-fold model is too weak for its ranking to mean much, or None."""
    truth, probabilities = np.asarray(truth, dtype=int), np.asarray(probabilities, dtype=float)
    predicted = probabilities.argmax(axis=1)
    accuracy = float((predicted == truth).mean())
    majority = float(np.bincount(truth, minlength=len(labels)).max() / len(truth))
    never = [labels[c] for c in np.unique(truth) if not (predicted == c).any()]
    if never:
        return (
            f"the out-of-fold model never predicts {', '.join(never)} (highest probability it gives: "
            + ", ".join(f"{labels[c]} {probabilities[:, c].max():.2f}" for c in np.unique(truth) if labels[c] in never)
            + "), so the ranking leans on the TF-IDF view: train longer or with more rows"
        )
    if accuracy < majority + 0.5 * (1.0 - majority) * 0.5:
        return (
            f"the out-of-fold model is weak (accuracy {accuracy:.3f} against {majority:.3f} for always the largest "
            "class), so the ranking leans on the TF-IDF view: train longer or with more rows"
        )
    return None


def find_label_issues(rows, truth, probabilities, labels: list[str], seed: int = 0) -> dict:
    """Rows whose given label the out-of-fold predictions doubt, most suspect first.

    `rows`: the data frame (`text`, optional `text_pair`, `__row__`: the row's line in the CSV file,
    the header being line 1); `probabilities`: the fine-tuned model's out-of-fold probabilities. The
    list holds the rows that cleanlab's confident learning flags on the averaged probabilities
    (`confident`) and those predicted as another label, ranked by self-confidence, with the label
    the two views suggest."""
    truth = np.asarray(truth, dtype=int)
    model_probs = np.asarray(probabilities, dtype=float)
    texts = rows["text"].astype(str).tolist()
    if "text_pair" in rows.columns:
        texts = [f"{a} [SEP] {b}" for a, b in zip(texts, rows["text_pair"].astype(str).tolist())]
    try:
        view = second_view(texts, truth, len(labels), seed=seed)
        combined = combine(model_probs, view)
        confident, other, scores = flagged_and_scores(truth, combined)
    except (ValueError, AssertionError) as exc:  # e.g. a class that no fold predicted at all
        return {"method": "cleanlab", "count": 0, "error": str(exc).splitlines()[0], "rows": []}
    suggested = combined.argmax(axis=1)
    flagged = np.flatnonzero(confident | other)
    listed = []
    for index in flagged[np.argsort(scores[flagged], kind="stable")]:
        source = rows.iloc[int(index)]
        listed.append(
            {
                "row": int(source["__row__"]),
                "text": str(source["text"]),
                "given_label": labels[truth[index]],
                "suggested_label": labels[suggested[index]],
                "score": round(float(scores[index]), 6),
                "confident": bool(confident[index]),
            }
        )
    out = {
        "method": "cleanlab confident learning on the average of the fine-tuned model's out-of-fold probabilities "
        "and a TF-IDF + logistic regression view (out of fold), ranked by self-confidence",
        "count": len(listed),
        "confident_learning": int(confident.sum()),
        "row_column": "the row's line number in the data file (the header is line 1, so the first row is 2)",
        "rows": listed,
    }
    warning = weak_model_warning(truth, model_probs, labels)
    if warning:
        from runner.console import warn

        out["warning"] = warning
        warn(f"label issues: {warning}")
    return out
