"""Measure a model's real speed: fine-tuning examples/s and inference latency.

    python -m bert.benchmark --model_dir models/pretrained [--compare_dir models/compact]

Models given together are measured side by side in one process, alternating, so their ratio is
not skewed by whatever else the machine does at the time.
"""
import argparse
import os
import statistics
import time

import numpy as np
import tensorflow as tf

from bert import checkpoint, modeling, optimization
from bert.run_classifier import UsageError, classifier_head

tf1 = tf.compat.v1

WARMUP_RUNS = 2  # first runs pay for graph optimisation and allocation
DEFAULT_LABELS = 2
FIRST_WORD_ID = 1000  # ids below are special tokens and [unused] slots in BERT vocabularies


class InferenceSession:
    """One model's inference graph (pooled logits), loaded once, ready to time."""

    def __init__(self, bert_config, checkpoint_prefix, batch_size, seq_length,
                 dense_factory=None, token_selector=None, num_labels=DEFAULT_LABELS):
        self.graph = tf.Graph()
        with self.graph.as_default():
            self.input_ids = tf1.placeholder(tf.int32, [None, seq_length], "input_ids")
            self.input_mask = tf1.placeholder(tf.int32, [None, seq_length], "input_mask")
            model = modeling.BertModel(bert_config, False, self.input_ids, self.input_mask,
                                       dense_factory=dense_factory,
                                       token_selector=token_selector)
            self.logits = classifier_head(model.pooled_output, num_labels, False)
            checkpoint.init_from_checkpoint(checkpoint_prefix, allow_missing=(".*",))
            self.session = tf1.Session(graph=self.graph)
            self.session.run(tf1.global_variables_initializer())
        self.feed = {self.input_ids: random_ids(bert_config.vocab_size, batch_size, seq_length),
                     self.input_mask: np.ones([batch_size, seq_length], np.int32)}

    def run_once(self):
        start = time.perf_counter()
        self.session.run(self.logits, self.feed)
        return time.perf_counter() - start

    def close(self):
        self.session.close()


def random_ids(vocab_size, batch_size, seq_length, seed=0):
    low = min(FIRST_WORD_ID, vocab_size - 1)
    return np.random.RandomState(seed).randint(low, vocab_size, [batch_size, seq_length],
                                               dtype=np.int32)


def parse_batch_sizes(text, flag):
    """[1, 32] from "1,32"; anything else is a UsageError naming ``--flag``."""
    try:
        sizes = [int(part) for part in text.split(",")]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) < 1:
        raise UsageError(f"--{flag}={text}: expected positive integers separated by commas, "
                         "e.g. 1,32")
    return sizes


def compare_latency(sessions, iterations):
    """Median seconds per batch for each session, runs interleaved round-robin."""
    for session in sessions:
        for _ in range(WARMUP_RUNS):
            session.run_once()
    timings = [[] for _ in sessions]
    for _ in range(iterations):
        for index, session in enumerate(sessions):
            timings[index].append(session.run_once())
    return [statistics.median(times) for times in timings]


def training_throughput(bert_config, batch_size, seq_length, steps):
    """Examples/s of full fine-tuning steps (forward, backward, AdamW) at random init."""
    with tf.Graph().as_default():
        input_ids = tf1.placeholder(tf.int32, [batch_size, seq_length])
        labels = tf1.placeholder(tf.int32, [batch_size])
        model = modeling.BertModel(bert_config, True, input_ids)
        logits = classifier_head(model.pooled_output, DEFAULT_LABELS, True)
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels,
                                                                             logits=logits))
        train_op = optimization.create_optimizer(loss, 2e-5, steps + WARMUP_RUNS, 0)
        feed = {input_ids: random_ids(bert_config.vocab_size, batch_size, seq_length),
                labels: np.zeros([batch_size], np.int32)}
        with tf1.Session() as session:
            session.run(tf1.global_variables_initializer())
            for _ in range(WARMUP_RUNS):
                session.run(train_op, feed)
            start = time.perf_counter()
            for _ in range(steps):
                session.run(train_op, feed)
            return batch_size * steps / (time.perf_counter() - start)


def load_model_dir(model_dir):
    config = modeling.BertConfig.from_json_file(os.path.join(model_dir, "bert_config.json"))
    return config, checkpoint.resolve_checkpoint(model_dir)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_dir", required=True, help="model folder (config + checkpoint)")
    parser.add_argument("--compare_dir", action="append", default=[],
                        help="other model folders timed side by side (repeatable)")
    parser.add_argument("--seq_length", type=int, default=128)
    parser.add_argument("--batch_sizes", default="1,32")
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--train_steps", type=int, default=10,
                        help="fine-tuning steps timed for examples/s (0: skip)")
    parser.add_argument("--train_batch_size", type=int, default=32)
    args = parser.parse_args(argv)
    try:
        batch_sizes = parse_batch_sizes(args.batch_sizes, "batch_sizes")
    except ValueError as error:
        parser.error(str(error))
    model_dirs = [args.model_dir] + args.compare_dir
    models = [load_model_dir(path) for path in model_dirs]
    if args.train_steps:
        rate = training_throughput(models[0][0], args.train_batch_size, args.seq_length,
                                   args.train_steps)
        print(f"fine-tuning: {rate:.1f} examples/s  (batch {args.train_batch_size}, "
              f"seq {args.seq_length}, {args.model_dir})")
    for batch_size in batch_sizes:
        sessions = [InferenceSession(config, prefix, batch_size, args.seq_length)
                    for config, prefix in models]
        latencies = compare_latency(sessions, args.iterations)
        for session in sessions:
            session.close()
        for path, latency in zip(model_dirs, latencies):
            print(f"inference batch {batch_size:3d} seq {args.seq_length}: "
                  f"{latency * 1000:8.1f} ms/batch  {batch_size / latency:7.1f} examples/s  "
                  f"x{latencies[0] / latency:.2f} vs first  ({path})")


if __name__ == "__main__":
    main()
