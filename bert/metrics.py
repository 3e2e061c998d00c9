"""GLUE metrics computed in numpy over the whole evaluation set.

F1, MCC and the correlations are not averages of per-example values, so averaging them over
batches (as tf.metrics streaming would for a naive implementation) gives wrong numbers; every
function here takes the complete 1-D prediction and label arrays.

Edge cases (chosen so that a degenerate model scores 0 instead of producing NaN, which would
break "best checkpoint" comparisons):
- precision is 0 when nothing is predicted positive; recall is 0 when no label is positive;
  F1 is 0 when precision + recall is 0 (this includes "no positives predicted and none true").
- MCC is 0 when its denominator is 0 (all predictions or all labels in one class).
- Pearson (and so Spearman) is 0 when either series is constant.
- Empty or mismatched inputs raise ValueError; so do NaN/inf inputs to the correlations.
"""
import numpy as np

from bert import tasks

POSITIVE_CLASS = 1
METRIC_PREFIX = "eval_"
BINARY_CLASSES = 2  # tasks with two labels also report precision, recall and F1 of label id 1
MCC_TASKS = ("cola", "ax")


def _check_pair(first, second):
    first, second = np.asarray(first), np.asarray(second)
    if first.ndim != 1 or second.ndim != 1:
        raise ValueError(f"expected 1-D arrays, got shapes {first.shape} and {second.shape}")
    if first.shape != second.shape:
        raise ValueError(f"length mismatch: {first.shape[0]} vs {second.shape[0]}")
    if first.size == 0:
        raise ValueError("metrics need at least one example")
    return first, second


def accuracy(preds, labels):
    preds, labels = _check_pair(preds, labels)
    return float(np.mean(preds == labels))


def _binary_counts(preds, labels):
    """True positives, predicted positives and actual positives for class POSITIVE_CLASS."""
    preds, labels = _check_pair(preds, labels)
    predicted = preds == POSITIVE_CLASS
    actual = labels == POSITIVE_CLASS
    return int(np.sum(predicted & actual)), int(np.sum(predicted)), int(np.sum(actual))


def precision(preds, labels):
    true_positives, predicted_positives, _ = _binary_counts(preds, labels)
    return true_positives / predicted_positives if predicted_positives else 0.0


def recall(preds, labels):
    true_positives, _, actual_positives = _binary_counts(preds, labels)
    return true_positives / actual_positives if actual_positives else 0.0


def f1(preds, labels):
    """Binary F1 of class 1, the harmonic mean of precision and recall."""
    p, r = precision(preds, labels), recall(preds, labels)
    return 2.0 * p * r / (p + r) if p + r else 0.0


def macro_f1(preds, labels, num_classes):
    """Mean over classes 0..num_classes-1 of each class's one-vs-rest F1: every class counts
    the same, however rare (a class never predicted nor present scores 0)."""
    preds, labels = _check_pair(preds, labels)
    scores = []
    for class_id in range(num_classes):
        true_positives = np.sum((preds == class_id) & (labels == class_id))
        predicted, actual = np.sum(preds == class_id), np.sum(labels == class_id)
        scores.append(2.0 * true_positives / (predicted + actual) if predicted + actual else 0.0)
    return float(np.mean(scores))


def matthews_corrcoef(preds, labels):
    """Multiclass MCC from the confusion matrix C (reduces to the binary formula for 2 classes):
    (correct * total - sum_k predicted_k * true_k)
    / sqrt((total^2 - sum_k predicted_k^2) * (total^2 - sum_k true_k^2)).
    """
    preds, labels = _check_pair(preds, labels)
    classes, codes = np.unique(np.concatenate([preds, labels]), return_inverse=True)
    pred_codes, label_codes = codes[:preds.size], codes[preds.size:]
    confusion = np.zeros((classes.size, classes.size), dtype=np.float64)
    np.add.at(confusion, (label_codes, pred_codes), 1.0)
    true_per_class = confusion.sum(axis=1)
    predicted_per_class = confusion.sum(axis=0)
    correct = np.trace(confusion)
    total = confusion.sum()
    numerator = correct * total - np.dot(predicted_per_class, true_per_class)
    denominator = np.sqrt((total ** 2 - np.dot(predicted_per_class, predicted_per_class))
                          * (total ** 2 - np.dot(true_per_class, true_per_class)))
    return float(numerator / denominator) if denominator else 0.0


def _check_finite_pair(x, y):
    x, y = _check_pair(x, y)
    x, y = x.astype(np.float64), y.astype(np.float64)
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError("correlation inputs contain NaN or infinity")
    return x, y


def pearson(x, y):
    x, y = _check_finite_pair(x, y)
    x_centered, y_centered = x - x.mean(), y - y.mean()
    denominator = np.sqrt(np.dot(x_centered, x_centered) * np.dot(y_centered, y_centered))
    return float(np.dot(x_centered, y_centered) / denominator) if denominator else 0.0


def average_ranks(values):
    """1-based ranks where each group of tied values shares the mean of the ranks it spans."""
    values = np.asarray(values, dtype=np.float64)
    order = np.argsort(values, kind="stable")
    sorted_values = values[order]
    starts_group = np.concatenate([[True], sorted_values[1:] != sorted_values[:-1]])
    group_starts = np.flatnonzero(starts_group)
    group_ends = np.append(group_starts[1:], values.size)
    # A group at sorted positions start..end-1 holds ranks start+1..end, whose mean is:
    group_mean_rank = (group_starts + 1 + group_ends) / 2.0
    ranks = np.empty(values.size, dtype=np.float64)
    ranks[order] = group_mean_rank[np.cumsum(starts_group) - 1]
    return ranks


def spearman(x, y):
    """Spearman's rho as the Pearson correlation of the tie-averaged ranks."""
    x, y = _check_finite_pair(x, y)
    return pearson(average_ranks(x), average_ranks(y))


def compute_task_metrics(task_name, predictions, labels):
    """All GLUE metrics of a task as Python floats keyed "eval_<metric>".

    Classification takes class ids (accuracy; two classes add F1, precision and recall of class
    1, more classes macro-F1); regression (STS-B, a user task's scores) takes real-valued scores.
    """
    task = tasks.canonical_task_name(task_name)
    processor = tasks.get_processor(task)
    if processor.is_regression:
        pearson_value = pearson(predictions, labels)
        spearman_value = spearman(predictions, labels)
        values = {"pearson": pearson_value, "spearman": spearman_value,
                  "corr": (pearson_value + spearman_value) / 2.0}
    else:
        num_classes = len(processor.get_labels())
        values = {"accuracy": accuracy(predictions, labels)}
        if num_classes > BINARY_CLASSES:
            values["macro_f1"] = macro_f1(predictions, labels, num_classes)
        if num_classes == BINARY_CLASSES:
            values.update(f1=f1(predictions, labels), precision=precision(predictions, labels),
                          recall=recall(predictions, labels))
        if task in MCC_TASKS:
            values["mcc"] = matthews_corrcoef(predictions, labels)
    return {METRIC_PREFIX + name: float(value) for name, value in values.items()}
