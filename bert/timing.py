"""The one way latency is measured: models side by side in one process, interleaved, warm-up
excluded, so a ratio is never skewed by whatever else the machine did at the time.

A model is timed as its config describes it (compact ranks, and the methods its config asks
for, e.g. a PoWER-BERT retention configuration), plus any methods given explicitly.
"""
import dataclasses
import statistics
import time
from typing import Sequence

import numpy as np
import tensorflow as tf

from bert import checkpoint, distribution, methods, model_folder, modeling
from bert.classifier import classifier_head

tf1 = tf.compat.v1

WARMUP_RUNS = 2  # first runs pay for graph optimisation and allocation
DEFAULT_LABELS = 2
FIRST_WORD_ID = 1000  # ids below are special tokens and [unused] slots in BERT vocabularies
SECONDS_TO_MS = 1000.0


@dataclasses.dataclass
class TimedModel:
    """A model to time: its config, its checkpoint, and the methods beyond its config's own."""
    bert_config: modeling.BertConfig
    checkpoint_prefix: str
    method_list: Sequence = ()
    num_labels: int = DEFAULT_LABELS
    label: str = ""


def load_model_dir(model_dir, flag="model_dir", num_labels=DEFAULT_LABELS):
    """A TimedModel of a model folder (config + checkpoint)."""
    model = model_folder.load(model_dir, flag, need_vocab=False)
    return TimedModel(model.bert_config, model.checkpoint_prefix, num_labels=num_labels,
                      label=model_dir)


def random_ids(vocab_size, batch_size, seq_length, seed=0):
    low = min(FIRST_WORD_ID, vocab_size - 1)
    return np.random.RandomState(seed).randint(low, vocab_size, [batch_size, seq_length],
                                               dtype=np.int32)


class InferenceSession:
    """One model's inference graph (logits), loaded once, ready to time."""

    def __init__(self, model: TimedModel, batch_size, seq_length):
        distribution.log_devices()
        config = model.bert_config
        method_list = list(model.method_list)
        method_list += methods.from_config(config, exclude=method_list)
        self.graph = tf.Graph()
        with self.graph.as_default():
            self.input_ids = tf1.placeholder(tf.int32, [None, seq_length], "input_ids")
            self.input_mask = tf1.placeholder(tf.int32, [None, seq_length], "input_mask")
            hooks = methods.build_all(method_list, config, False)
            bert = modeling.BertModel(config, False, self.input_ids, self.input_mask,
                                      dense_factory=hooks.dense_factory,
                                      token_selector=hooks.token_selector)
            self.logits = classifier_head(bert.pooled_output, model.num_labels, False)
            checkpoint.init_from_checkpoint(model.checkpoint_prefix, allow_missing=(".*",))
            self.session = tf1.Session(graph=self.graph)
            self.session.run(tf1.global_variables_initializer())
        self.feed = {self.input_ids: random_ids(config.vocab_size, batch_size, seq_length),
                     self.input_mask: np.ones([batch_size, seq_length], np.int32)}

    def run_once(self):
        start = time.perf_counter()
        self.session.run(self.logits, self.feed)
        return time.perf_counter() - start

    def close(self):
        self.session.close()


def interleaved_samples(runners, iterations, warmup_runs=WARMUP_RUNS):
    """Seconds of every timed call of each ``run_once`` runner, called round-robin after its
    warm-up; all of them, for percentiles and totals where a median is not enough."""
    for runner in runners:
        for _ in range(warmup_runs):
            runner.run_once()
    timings = [[] for _ in runners]
    for _ in range(iterations):
        for index, runner in enumerate(runners):
            timings[index].append(runner.run_once())
    return timings


def interleaved_medians(runners, iterations, warmup_runs=WARMUP_RUNS):
    """Median seconds per call of each ``run_once`` runner, called round-robin."""
    return [statistics.median(times)
            for times in interleaved_samples(runners, iterations, warmup_runs)]


def side_by_side(models: Sequence[TimedModel], batch_sizes, seq_length, iterations):
    """{batch size: [median seconds per batch of each model]}."""
    latencies = {}
    for batch_size in batch_sizes:
        sessions = [InferenceSession(model, batch_size, seq_length) for model in models]
        try:
            latencies[batch_size] = interleaved_medians(sessions, iterations)
        finally:
            for session in sessions:
                session.close()
    return latencies


def format_table(models, latencies, seq_length, iterations):
    """Lines of ms/batch, examples/s and speed-up against the first model."""
    lines = [f"inference latency, seq {seq_length}, median of {iterations} interleaved runs:"]
    for batch_size, seconds in latencies.items():
        for model, latency in zip(models, seconds):
            lines.append(f"  batch {batch_size:3d}: {latency * SECONDS_TO_MS:8.1f} ms/batch  "
                         f"{batch_size / latency:7.1f} examples/s  x{seconds[0] / latency:.2f}  "
                         f"{model.label}")
    return "\n".join(lines)
