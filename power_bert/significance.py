"""Significance of a word-vector: how much attention the other tokens of its sequence pay to it.

PoWER-BERT eliminates the word-vectors that the rest of the sequence attends to least: a token
nobody looks at contributes little to the next layers. The score of token k in a layer is

    significance[k] = sum over real queries q != k of  A[q, k]

where A is the post-softmax attention averaged (or summed) over heads. Padded query rows are left
out: their softmax rows are an artefact of padding (nothing ever reads them), and counting them
would add mass that depends on how much padding an example has. The token's attention to itself
(the diagonal) is left out too, as in the paper: it says nothing about the token's use to others.
"""
import tensorflow as tf


def token_significance(attention_probs, input_mask, sum_heads=False):
    """[B, heads, S, S] attention (query, key) and [B, S] mask -> [B, S] significance.

    Any number of heads; ``sum_heads`` sums over heads instead of averaging (same ranking, the
    values differ by the head count).
    """
    reduce_heads = tf.reduce_sum if sum_heads else tf.reduce_mean
    probs = reduce_heads(attention_probs, axis=1)  # [B, query, key]
    real_queries = tf.cast(input_mask, probs.dtype)[:, :, tf.newaxis]
    probs = probs * real_queries
    return tf.reduce_sum(probs, axis=1) - tf.linalg.diag_part(probs)
