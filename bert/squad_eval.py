"""SQuAD answers from start/end logits, and the official EM / F1 metric.

Decoding reads answer text straight out of the original context through the features'
character spans, so the text scored is a substring of what the reader wrote. The metric follows
the rules of SQuAD's official evaluate-v2.0.py (which on v1.1 data agrees with evaluate-v1.1.py
except for gold answers that normalise to nothing), except that a question without a
prediction counts 0 instead of being left out.
"""
import collections
import dataclasses
import logging
import math
import os
import re
import string

import numpy as np

from bert import files
from bert.errors import InputError, UsageError
from bert.squad import load_json, read_squad

log = logging.getLogger("bert")

PREDICTIONS_FILE = "predictions.json"
NBEST_FILE = "nbest_predictions.json"
NULL_ODDS_FILE = "null_odds.json"
EVAL_RESULTS_FILE = "eval_results.txt"
NULL_POSITION = 0  # [CLS]: the model's "no answer" in every window
PERCENT = 100.0
MISSING_IDS_SHOWN = 5  # the log names this many questions that have no prediction
ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
PUNCTUATION = frozenset(string.punctuation)
HAS_ANSWER_PREFIX = "HasAns"
NO_ANSWER_PREFIX = "NoAns"


# Decoding --------------------------------------------------------------------------------------
@dataclasses.dataclass
class QaDecodeSettings:
    """How candidate spans are chosen, and when v2.0 answers "no answer"."""

    n_best_size: int = 20
    max_answer_length: int = 30
    null_score_diff_threshold: float = 0.0
    version_2_with_negative: bool = False

    def __post_init__(self):
        if self.n_best_size < 1:
            raise UsageError(f"--n_best_size={self.n_best_size} must be at least 1")
        if self.max_answer_length < 1:
            raise UsageError(f"--max_answer_length={self.max_answer_length} must be at least 1")
        if not math.isfinite(self.null_score_diff_threshold):
            raise UsageError("--null_score_diff_threshold="
                             f"{self.null_score_diff_threshold} must be a finite number")


@dataclasses.dataclass
class NbestEntry:
    """One distinct answer text among the best spans."""

    text: str
    start_logit: float
    end_logit: float
    probability: float  # softmax over the n-best scores (start + end logit)


@dataclasses.dataclass
class QaPrediction:
    """The answer to one question and what it was chosen from."""

    text: str  # "" for v2.0's "no answer", or when no span qualified
    score: float  # the best span's start + end logit; -inf when no span qualified
    nbest: list  # NbestEntry, best first, distinct texts
    null_score: float = None  # v2.0: min over windows of the [CLS] start + end logit

    @property
    def null_score_diff(self):
        """How much more the model believes "no answer" than its best span (v2.0's odds)."""
        return self.null_score - self.score


def _top_indices(logits, count):
    """Positions of the ``count`` largest logits; ties go to the earlier position."""
    return np.argsort(-logits, kind="stable")[:count]


def _span_candidates(context, feature, start_logits, end_logits, settings):
    """(score, start logit, end logit, text) of each span this window may answer with."""
    spans, max_context = feature.token_spans, feature.token_is_max_context
    candidates = []
    for start in _top_indices(start_logits, settings.n_best_size):
        if spans[start] is None or not max_context[start]:
            continue
        for end in _top_indices(end_logits, settings.n_best_size):
            if spans[end] is None or end < start or end - start + 1 > settings.max_answer_length:
                continue
            candidates.append((float(start_logits[start] + end_logits[end]),
                               float(start_logits[start]), float(end_logits[end]),
                               context[spans[start][0]:spans[end][1]]))
    return candidates


def _softmax(scores):
    exponentials = np.exp(np.asarray(scores) - max(scores))
    return exponentials / exponentials.sum()


def _decode_example(example, windows, settings):
    candidates, null_score = [], math.inf
    for feature, start_logits, end_logits in windows:
        null_score = min(null_score, float(start_logits[NULL_POSITION]
                                           + end_logits[NULL_POSITION]))
        candidates.extend(_span_candidates(example.context, feature, start_logits, end_logits,
                                           settings))
    best = {}  # text -> its best candidate, in order of score
    for candidate in sorted(candidates, key=lambda entry: entry[0], reverse=True):
        if len(best) == settings.n_best_size:
            break
        best.setdefault(candidate[3], candidate)
    chosen = list(best.values())
    probabilities = _softmax([score for score, _, _, _ in chosen]) if chosen else []
    nbest = [NbestEntry(text, start, end, float(probability))
             for (_, start, end, text), probability in zip(chosen, probabilities)]
    text, score = (chosen[0][3], chosen[0][0]) if chosen else ("", -math.inf)
    if not settings.version_2_with_negative:
        return QaPrediction(text, score, nbest)
    if null_score - score > settings.null_score_diff_threshold:
        text = ""
    return QaPrediction(text, score, nbest, null_score)


def decode(examples, features, start_logits, end_logits, settings):
    """{qas_id: QaPrediction} for every example that has features.

    ``start_logits[i]`` and ``end_logits[i]`` belong to ``features[i]``. A span is a candidate
    when both ends are context tokens of one window, the start is where that window gives the
    token the most context, end >= start and it is at most max_answer_length pieces long.
    """
    windows = collections.defaultdict(list)
    for feature, starts, ends in zip(features, start_logits, end_logits, strict=True):
        windows[feature.example_index].append(
            (feature, np.asarray(starts, dtype=np.float64), np.asarray(ends, dtype=np.float64)))
    return {examples[index].qas_id: _decode_example(examples[index], windows[index], settings)
            for index in sorted(windows)}


def write_predictions(output_dir, predictions, metrics=None):
    """predictions.json, nbest_predictions.json, for v2.0 null_odds.json, and eval_results.txt
    (``key = value`` lines, as the classifier writes them) when ``metrics`` is given.

    A v2.0 question with no qualifying span has infinite null odds, written as ``Infinity``
    (which Python's json, and so the official script, reads).
    """
    os.makedirs(output_dir, exist_ok=True)
    files.write_json_atomic(os.path.join(output_dir, PREDICTIONS_FILE),
                            {qas_id: prediction.text for qas_id, prediction in predictions.items()})
    files.write_json_atomic(os.path.join(output_dir, NBEST_FILE), {
        qas_id: [dataclasses.asdict(entry) for entry in prediction.nbest]
        for qas_id, prediction in predictions.items()})
    if any(prediction.null_score is not None for prediction in predictions.values()):
        files.write_json_atomic(os.path.join(output_dir, NULL_ODDS_FILE), {
            qas_id: prediction.null_score_diff for qas_id, prediction in predictions.items()})
    if metrics is not None:
        files.write_text_atomic(os.path.join(output_dir, EVAL_RESULTS_FILE),
                                "".join(f"{key} = {metrics[key]}\n" for key in sorted(metrics)))


# The official metric ---------------------------------------------------------------------------
def normalize_answer(text):
    """Lower case, no punctuation, no articles, single spaces: the official comparison form."""
    text = "".join(char for char in text.lower() if char not in PUNCTUATION)
    return " ".join(ARTICLES.sub(" ", text).split())


def exact_match(prediction, gold):
    return int(normalize_answer(prediction) == normalize_answer(gold))


def f1(prediction, gold):
    """Token-overlap F1 of the normalised texts; an empty side scores 1 only against empty."""
    predicted, expected = normalize_answer(prediction).split(), normalize_answer(gold).split()
    if not predicted or not expected:
        return float(predicted == expected)
    shared = sum((collections.Counter(predicted) & collections.Counter(expected)).values())
    if not shared:
        return 0.0
    precision, recall = shared / len(predicted), shared / len(expected)
    return 2 * precision * recall / (precision + recall)


def gold_answers(example):
    """The answers that say something; [""] for a question without one (v2.0's no-answer)."""
    return [text for text in example.answer_texts if normalize_answer(text)] or [""]


def _percentages(prefix, exact_scores, f1_scores):
    return {f"{prefix}exact": PERCENT * sum(exact_scores) / len(exact_scores),
            f"{prefix}f1": PERCENT * sum(f1_scores) / len(f1_scores),
            f"{prefix}total": len(exact_scores)}


def score_predictions(examples, predictions, version_2_with_negative):
    """exact_match and f1 in percent over every question, plus total and missing; v2.0 also
    splits them into HasAns_* / NoAns_* (with counts) for each kind present.

    ``predictions`` maps qas_id to answer text; a question without one scores 0.
    """
    exact_scores, f1_scores, has_answer, missing = [], [], [], []
    for example in examples:
        golds = gold_answers(example)
        has_answer.append(bool(example.answer_texts))
        if example.qas_id not in predictions:
            missing.append(example.qas_id)
            exact_scores.append(0)
            f1_scores.append(0.0)
            continue
        prediction = predictions[example.qas_id]
        exact_scores.append(max(exact_match(prediction, gold) for gold in golds))
        f1_scores.append(max(f1(prediction, gold) for gold in golds))
    if missing:
        log.warning("%d of %d questions have no prediction and count 0 (first: %s)",
                    len(missing), len(examples), ", ".join(missing[:MISSING_IDS_SHOWN]))
    overall = _percentages("", exact_scores, f1_scores)
    result = {"exact_match": overall["exact"], "f1": overall["f1"], "total": overall["total"],
              "missing": len(missing)}
    if version_2_with_negative:
        for prefix, wanted in ((HAS_ANSWER_PREFIX, True), (NO_ANSWER_PREFIX, False)):
            kept = [index for index, has in enumerate(has_answer) if has == wanted]
            if kept:
                result.update(_percentages(f"{prefix}_", [exact_scores[i] for i in kept],
                                           [f1_scores[i] for i in kept]))
    return result


def read_predictions(path):
    """{qas_id: text} of a predictions.json, checked to be exactly that."""
    path = str(path)
    predictions = load_json(path)
    if not isinstance(predictions, dict):
        raise InputError(f"{path}: expected an object of question id to answer text")
    for qas_id, text in predictions.items():
        if not isinstance(text, str):
            raise InputError(f"{path}: the answer of {qas_id!r} is not a string")
    return predictions


def evaluate_file(dataset_path, predictions_path):
    """The official script's scores of a predictions.json against a SQuAD dataset file; v2.0
    scoring when the dataset has impossible questions."""
    examples = read_squad(dataset_path, is_training=False)
    return score_predictions(examples, read_predictions(predictions_path),
                             any(example.is_impossible for example in examples))
