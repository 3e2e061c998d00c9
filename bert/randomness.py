"""Random draws of training that a resumed run repeats exactly.

A stateful random op (``tf.random.uniform``, ``tf.nn.dropout``) restarts its stream whenever a
run resumes from a checkpoint, so a resumed run drew other dropout masks than the uninterrupted
one and ended elsewhere. The draws here are stateless: keyed by the graph's seed, the op's
place in the graph and the global step, so step k draws the same numbers however often the run
was stopped. A graph without a global step (no training loop to key on) draws statefully.
"""
import zlib

import tensorflow as tf

tf1 = tf.compat.v1

SALT_MASK = 0x7FFFFFFF  # stateless seeds are two int64s; keep the salt a positive int32


def step_seed(name):
    """A stateless op's seed for this training step, or None without a global step."""
    graph = tf1.get_default_graph()
    global_step = tf1.train.get_global_step(graph)
    if global_step is None:
        return None
    place = graph.unique_name(name)  # the same in every build of the same graph
    salt = zlib.crc32(f"{graph.seed}:{place}".encode()) & SALT_MASK
    return tf.stack([tf.constant(salt, tf.int64), tf.cast(global_step, tf.int64)])


def dropout(inputs, rate):
    seed = step_seed("dropout")
    if seed is None:
        return tf.nn.dropout(inputs, rate=rate)
    return tf.nn.experimental.stateless_dropout(inputs, rate=rate, seed=seed)


def uniform(shape, minval=0.0, maxval=1.0):
    seed = step_seed("uniform")
    if seed is None:
        return tf.random.uniform(shape, minval, maxval)
    return tf.random.stateless_uniform(shape, seed, minval, maxval)
