"""Measure a model's real speed: fine-tuning examples/s and inference latency.

    python -m bert.benchmark --model_dir models/pretrained [--compare_dir models/compact]

Models given together are timed side by side in one process (``bert.timing``), so their ratio
is not skewed by whatever else the machine does at the time.
"""
import sys
import time

import numpy as np
import tensorflow as tf

from bert import cli, modeling, optimization, timing
from bert.classifier import classifier_head

tf1 = tf.compat.v1

PROGRAM = "bert.benchmark"
TRAINING_LEARNING_RATE = 2e-5  # any small rate: only the time of a step is measured


def training_throughput(bert_config, batch_size, seq_length, steps):
    """Examples/s of full fine-tuning steps (forward, backward, AdamW) at random init."""
    with tf.Graph().as_default():
        input_ids = tf1.placeholder(tf.int32, [batch_size, seq_length])
        labels = tf1.placeholder(tf.int32, [batch_size])
        model = modeling.BertModel(bert_config, True, input_ids)
        logits = classifier_head(model.pooled_output, timing.DEFAULT_LABELS, True)
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels,
                                                                             logits=logits))
        train_op = optimization.create_optimizer(loss, TRAINING_LEARNING_RATE,
                                                 steps + timing.WARMUP_RUNS, 0)
        feed = {input_ids: timing.random_ids(bert_config.vocab_size, batch_size, seq_length),
                labels: np.zeros([batch_size], np.int32)}
        with tf1.Session() as session:
            session.run(tf1.global_variables_initializer())
            for _ in range(timing.WARMUP_RUNS):
                session.run(train_op, feed)
            start = time.perf_counter()
            for _ in range(steps):
                session.run(train_op, feed)
            return batch_size * steps / (time.perf_counter() - start)


def run(args):
    batch_sizes = cli.parse_batch_sizes(args.batch_sizes, "batch_sizes")
    for name in ("iterations", "train_batch_size"):
        cli.require_in_range(getattr(args, name), name, 1)
    cli.require_in_range(args.train_steps, "train_steps", 0)
    models = [timing.load_model_dir(args.model_dir)]
    models += [timing.load_model_dir(path, "compare_dir") for path in args.compare_dir]
    limit = min(model.bert_config.max_position_embeddings for model in models)
    cli.require_in_range(args.seq_length, "seq_length", 1, limit)
    if args.train_steps:
        rate = training_throughput(models[0].bert_config, args.train_batch_size,
                                   args.seq_length, args.train_steps)
        print(f"fine-tuning: {rate:.1f} examples/s  (batch {args.train_batch_size}, "
              f"seq {args.seq_length}, {args.model_dir})")
    latencies = timing.side_by_side(models, batch_sizes, args.seq_length, args.iterations)
    print(timing.format_table(models, latencies, args.seq_length, args.iterations))


def main(argv=None):
    parser = cli.ArgumentParser(prog=PROGRAM, description=__doc__)
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
    cli.configure_logging()
    return cli.run_main(lambda: run(args), PROGRAM)


if __name__ == "__main__":
    sys.exit(main())
