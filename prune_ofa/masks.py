"""Magnitude masks: the round(s·n) smallest weights (or blocks of weights, by their L1 norm) of
a kernel are zeroed. Ties go to the lower flat index (a stable sort), so a weight that is zero
already is always among the first dropped and the pattern only grows.
"""
import tensorflow as tf

from prune_ofa.schedule import BLOCKS

HALF = 0.5  # round half up: tf.round would send 4.5 to 4 (banker's rounding)


def fits_blocks(shape, block):
    rows, columns = BLOCKS[block]
    return shape[0] % rows == 0 and shape[1] % columns == 0


def block_scores(kernel, block):
    """|w| summed over each block: [in/rows, out/columns]."""
    rows, columns = BLOCKS[block]
    height, width = kernel.shape.as_list()
    blocks = tf.reshape(tf.abs(kernel), [height // rows, rows, width // columns, columns])
    return tf.reduce_sum(blocks, axis=[1, 3])


def expand_blocks(block_mask, block):
    rows, columns = BLOCKS[block]
    return tf.repeat(tf.repeat(block_mask, rows, axis=0), columns, axis=1)


def magnitude_mask(kernel, sparsity, block):
    """1.0 where a weight stays, 0.0 where it is pruned; ``sparsity`` a float scalar tensor."""
    scores = block_scores(kernel, block)
    flat = tf.reshape(scores, [-1])
    count = tf.size(flat)
    dropped = tf.cast(tf.floor(tf.cast(count, tf.float32) * sparsity + HALF), tf.int32)
    order = tf.argsort(flat, stable=True)
    rank = tf.scatter_nd(order[:, None], tf.range(count), [count])  # each entry's position
    keep = tf.cast(rank >= dropped, kernel.dtype)
    return expand_blocks(tf.reshape(keep, tf.shape(scores)), block)


def nonzero_pattern(kernel):
    """The locked pattern: 1.0 where the weight is not zero (no gradient flows through it)."""
    return tf.stop_gradient(tf.cast(tf.not_equal(kernel, 0.0), kernel.dtype))


def sparsity(kernel):
    """Share of zero weights."""
    size = tf.cast(tf.size(kernel), tf.float32)
    return 1.0 - tf.cast(tf.math.count_nonzero(kernel), tf.float32) / size
