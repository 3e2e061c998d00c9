"""Full-set GLUE metrics against values worked out by hand."""
import math

import numpy as np
import pytest


from bert import glue, metrics

# tp = 3 (positions 0, 3, 6), fp = 1 (position 1), fn = 2 (positions 4, 7), tn = 2 (positions 2, 5)
BINARY_PREDS = np.array([1, 1, 0, 1, 0, 0, 1, 0])
BINARY_LABELS = np.array([1, 0, 0, 1, 1, 0, 1, 1])


def test_accuracy():
    assert metrics.accuracy(BINARY_PREDS, BINARY_LABELS) == 5 / 8


def test_precision_recall_f1():
    assert metrics.precision(BINARY_PREDS, BINARY_LABELS) == 3 / 4  # tp / (tp + fp)
    assert metrics.recall(BINARY_PREDS, BINARY_LABELS) == 3 / 5  # tp / (tp + fn)
    # 2 * 0.75 * 0.6 / (0.75 + 0.6) = 0.9 / 1.35 = 2 / 3
    assert metrics.f1(BINARY_PREDS, BINARY_LABELS) == pytest.approx(2 / 3)


def test_f1_edge_cases_are_zero():
    nothing = np.zeros(4, dtype=int)
    assert metrics.f1(nothing, nothing) == 0.0  # no positives predicted and none true
    assert metrics.precision(nothing, np.array([1, 0, 0, 0])) == 0.0  # nothing predicted positive
    assert metrics.recall(np.array([1, 0, 0, 0]), nothing) == 0.0  # no positive labels
    assert metrics.f1(np.array([1, 0, 0, 0]), np.array([0, 1, 0, 0])) == 0.0  # p = r = 0


def test_binary_mcc():
    # (tp*tn - fp*fn) / sqrt((tp+fp)(tp+fn)(tn+fp)(tn+fn)) = (6 - 2) / sqrt(4*5*3*4) = 4 / sqrt(240)
    assert metrics.matthews_corrcoef(BINARY_PREDS, BINARY_LABELS) == pytest.approx(4 / math.sqrt(240))


def test_multiclass_mcc():
    labels = np.array([0, 0, 1, 1, 2, 2])
    preds = np.array([0, 1, 1, 1, 2, 0])
    # true counts t = (2, 2, 2), predicted counts p = (2, 3, 1), correct c = 4, total s = 6:
    # (c*s - p.t) / sqrt((s^2 - p.p)(s^2 - t.t)) = (24 - 12) / sqrt((36 - 14)(36 - 12)) = 12 / sqrt(528)
    assert metrics.matthews_corrcoef(preds, labels) == pytest.approx(12 / math.sqrt(528))


def test_mcc_is_zero_when_one_side_is_constant():
    assert metrics.matthews_corrcoef(np.ones(5, dtype=int), np.array([0, 1, 0, 1, 1])) == 0.0


def test_mcc_is_one_for_perfect_predictions_with_string_labels():
    labels = np.array(["entailment", "neutral", "contradiction", "neutral"])
    assert metrics.matthews_corrcoef(labels, labels) == pytest.approx(1.0)


def test_pearson():
    # dx = (-1.5, -.5, .5, 1.5), dy = (-3, -1, 0, 4): sum dx*dy = 11, sum dx^2 = 5, sum dy^2 = 26
    assert metrics.pearson([1, 2, 3, 4], [2, 4, 5, 9]) == pytest.approx(11 / math.sqrt(130))
    assert metrics.pearson([1, 2, 3], [3, 3, 3]) == 0.0  # constant series


def test_average_ranks_share_the_mean_rank_of_ties():
    assert metrics.average_ranks([10, 30, 20, 30, -5]).tolist() == [2.0, 4.5, 3.0, 4.5, 1.0]
    assert metrics.average_ranks([7, 7, 7]).tolist() == [2.0, 2.0, 2.0]


def test_spearman_with_ties():
    x = [1, 2, 2, 3, 5]  # ranks (1, 2.5, 2.5, 4, 5)
    y = [2, 1, 4, 4, 6]  # ranks (2, 1, 3.5, 3.5, 5)
    # both rank means are 3; deviations (-2, -.5, -.5, 1, 2) and (-1, -2, .5, .5, 2):
    # sum of products 7.25, sums of squares 9.5 and 9.5, so rho = 7.25 / 9.5
    assert metrics.spearman(x, y) == pytest.approx(7.25 / 9.5)


def test_full_set_metrics_differ_from_per_batch_averages():
    scores = np.array([1.0, 2.0, 3.0, 4.0])
    gold = np.array([2.0, 1.0, 4.0, 3.0])
    # Full set: ranks equal the values; dx = (-1.5, -.5, .5, 1.5), dy = (-.5, -1.5, 1.5, .5):
    # sum of products 3, sums of squares 5 and 5, so rho = 3 / 5.
    assert metrics.spearman(scores, gold) == pytest.approx(0.6)
    # Two batches of two are each perfectly anti-correlated, so their average would be -1.
    per_batch = [metrics.spearman(scores[i:i + 2], gold[i:i + 2]) for i in (0, 2)]
    assert np.mean(per_batch) == pytest.approx(-1.0)
    assert metrics.compute_task_metrics("sts-b", scores, gold)["eval_spearman"] == pytest.approx(0.6)

    preds, labels = np.array([1, 0, 0, 0]), np.array([1, 1, 1, 1])
    # Full set: p = 1, r = 1/4, F1 = 0.4; per batch F1 would be (2/3 + 0) / 2 = 1/3.
    assert metrics.f1(preds, labels) == pytest.approx(0.4)
    assert np.mean([metrics.f1(preds[i:i + 2], labels[i:i + 2]) for i in (0, 2)]) == pytest.approx(1 / 3)


def test_compute_task_metrics_keys_per_task():
    expected_keys = {
        "cola": {"eval_accuracy", "eval_mcc", "eval_f1", "eval_precision", "eval_recall"},
        "sst-2": {"eval_accuracy", "eval_f1", "eval_precision", "eval_recall"},
        "mrpc": {"eval_accuracy", "eval_f1", "eval_precision", "eval_recall"},
        "qqp": {"eval_accuracy", "eval_f1", "eval_precision", "eval_recall"},
        "mnli": {"eval_accuracy", "eval_macro_f1"},
        "mnli-mm": {"eval_accuracy", "eval_macro_f1"},
        "qnli": {"eval_accuracy", "eval_f1", "eval_precision", "eval_recall"},
        "rte": {"eval_accuracy", "eval_f1", "eval_precision", "eval_recall"},
        "wnli": {"eval_accuracy", "eval_f1", "eval_precision", "eval_recall"},
        "ax": {"eval_accuracy", "eval_mcc", "eval_macro_f1"},
        "sts-b": {"eval_pearson", "eval_spearman", "eval_corr"},
    }
    assert set(expected_keys) == set(glue.TASK_NAMES)
    for task, keys in expected_keys.items():
        result = metrics.compute_task_metrics(task, BINARY_PREDS, BINARY_LABELS)
        assert set(result) == keys
        assert glue.METRIC_FOR_TASK[task] in result
        assert all(type(value) is float for value in result.values())


def test_compute_task_metrics_values():
    mrpc = metrics.compute_task_metrics("MRPC", BINARY_PREDS, BINARY_LABELS)
    assert mrpc == pytest.approx({"eval_accuracy": 0.625, "eval_f1": 2 / 3,
                                  "eval_precision": 0.75, "eval_recall": 0.6})
    cola = metrics.compute_task_metrics("cola", BINARY_PREDS, BINARY_LABELS)
    assert cola["eval_mcc"] == pytest.approx(4 / math.sqrt(240))
    stsb = metrics.compute_task_metrics("stsb", np.array([1.0, 2, 2, 3, 5]), np.array([2.0, 1, 4, 4, 6]))
    assert stsb["eval_corr"] == pytest.approx((stsb["eval_pearson"] + stsb["eval_spearman"]) / 2)
    assert stsb["eval_spearman"] == pytest.approx(7.25 / 9.5)


def test_invalid_inputs_raise():
    with pytest.raises(ValueError, match="length mismatch"):
        metrics.accuracy([1, 0], [1])
    with pytest.raises(ValueError, match="at least one"):
        metrics.f1([], [])
    with pytest.raises(ValueError, match="1-D"):
        metrics.accuracy(np.zeros((2, 2)), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="NaN"):
        metrics.spearman([1.0, float("nan")], [1.0, 2.0])
    with pytest.raises(ValueError, match="unknown task 'squad': not a GLUE task"):
        metrics.compute_task_metrics("squad", [1], [1])
