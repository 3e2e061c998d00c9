"""Soft-Extract and Extract: PoWER-BERT's token selectors for BertModel's per-layer hook.

Both rank the tokens of a layer by significance (attention received, see significance.py).
* Soft-Extract (configuration search) keeps every token but multiplies the token ranked p-th
  by a learned retention value r_j[p] in [0, 1]; a regulariser pushes the r_j down, harder in
  deeper layers, so the sum of r_j says how many word-vectors layer j needs.
* Extract (re-training, inference) keeps [CLS] and the l_j - 1 most significant other tokens in
  their original order, so the sequence really gets shorter: that is where the speed comes from.
"""
import math
import re

import numpy as np
import tensorflow as tf

from bert.errors import InputError
from power_bert.significance import token_significance

tf1 = tf.compat.v1

RETENTION_SCOPE = "power_bert"
RETENTION_VARIABLE_PATTERN = r"^power_bert/retention_\d+$"
# bert_config.json key holding the per-layer number of kept word-vectors (the model describes
# itself: an Extract model folder is evaluated with the configuration it was trained with).
RETENTION_CONFIG_KEY = "power_bert_retention"
# Padded tokens rank below every real token (real significance is >= 0).
PADDING_SCORE = -1.0
CLS_POSITION = 0


class RetentionConfigError(InputError):
    """A retention configuration that no model could use."""


def retention_variable_name(layer_index):
    """``power_bert/retention_<i>`` with i the 0-based layer index, as in ``layer_<i>``."""
    return f"{RETENTION_SCOPE}/retention_{layer_index}"


def ranking_scores(attention_probs, input_mask):
    """Significance with padded tokens forced last, so they are the first to be dropped."""
    significance = token_significance(attention_probs, input_mask)
    return tf.where(input_mask > 0, significance, PADDING_SCORE * tf.ones_like(significance))


class SoftExtractSelector:
    """Scales the token ranked p-th in layer j by r_j[p]; the sequence length is unchanged.

    The retention variables ([max_seq_length] per layer, initialised to 1) are created here, at
    the caller's variable scope (the model_fn's root), so they are named ``power_bert/...``.
    """

    def __init__(self, num_layers, max_seq_length):
        self.max_seq_length = max_seq_length
        with tf1.variable_scope(RETENTION_SCOPE):
            self.variables = [
                tf1.get_variable(f"retention_{layer_index}", [max_seq_length],
                                 initializer=tf1.ones_initializer())
                for layer_index in range(num_layers)]

    def __call__(self, layer_index, hidden, attention_probs, input_mask):
        length = hidden.shape[1]
        if length is not None and length > self.max_seq_length:
            raise ValueError(f"Soft-Extract was built for {self.max_seq_length} tokens, got "
                             f"{length}")
        scores = ranking_scores(attention_probs, input_mask)
        by_rank = tf.argsort(scores, axis=-1, direction="DESCENDING", stable=True)
        rank_of_token = tf.argsort(by_rank, axis=-1, stable=True)
        scale = tf.gather(self.variables[layer_index], rank_of_token)  # [B, S]
        return hidden * scale[:, :, tf.newaxis], input_mask


class ExtractSelector:
    """Keeps [CLS] plus the top l_j - 1 other tokens by significance, in their original order.

    The mask is gathered with the same indices, so the next layer's attention and the pooler
    (position 0 stays [CLS]) see a consistent, shorter sequence. When l_j is at least the current
    length the layer is left untouched. The length may be dynamic (batches padded only to their
    longest example): then min(l_j, length) tokens are kept, which keeps the same real tokens as
    padding to max_seq_length would, since padding ranks last.
    """

    def __init__(self, retention_config):
        self.retention_config = list(retention_config)

    def __call__(self, layer_index, hidden, attention_probs, input_mask):
        keep = self.retention_config[layer_index]
        length = input_mask.shape[1]
        if length is not None and keep >= length:
            return hidden, input_mask
        if length is None:
            keep = tf.minimum(keep, tf.shape(input_mask)[1])
        others = ranking_scores(attention_probs, input_mask)[:, CLS_POSITION + 1:]
        _, top = tf.math.top_k(others, k=keep - 1, sorted=False)
        kept = tf.sort(top + CLS_POSITION + 1, axis=-1)
        cls = tf.fill([tf.shape(kept)[0], 1], CLS_POSITION)
        indices = tf.concat([cls, kept], axis=1)
        return (tf.gather(hidden, indices, batch_dims=1),
                tf.gather(input_mask, indices, batch_dims=1))


def retention_regularizer(retention_variables, lambda_):
    """LAMBDA * sum_j j * sum_p r_j[p] with 1-based j: deeper layers are pushed harder."""
    return lambda_ * tf.add_n([float(layer_number) * tf.reduce_sum(variable)
                               for layer_number, variable in enumerate(retention_variables, 1)])


def clip_retention(variable):
    """Retention values are fractions of a word-vector: keep them in [0, 1] after each step."""
    return tf.clip_by_value(variable, 0.0, 1.0)


def read_retention_config(retention_values):
    """l_j = max(1, floor(sum_p r_j[p])), then forced non-increasing across layers."""
    config = []
    for values in retention_values:
        length = max(1, math.floor(float(np.sum(values, dtype=np.float64))))
        config.append(min(length, config[-1]) if config else length)
    return config


def validate_retention_config(values, num_layers, max_seq_length, source):
    """Check a list of per-layer lengths; errors name the 1-based position of the bad value."""
    if len(values) != num_layers:
        raise RetentionConfigError(f"{source} has {len(values)} values; the model has "
                                   f"{num_layers} layers (one value per layer)")
    for position, value in enumerate(values, 1):
        if isinstance(value, bool) or not isinstance(value, int):
            raise RetentionConfigError(f"{source}: value {position} ({value!r}) is not an "
                                       "integer")
        if value < 1:
            raise RetentionConfigError(f"{source}: value {position} ({value}) is below 1 "
                                       "(every layer keeps at least [CLS])")
        if value > max_seq_length:
            raise RetentionConfigError(f"{source}: value {position} ({value}) is above "
                                       f"max_seq_length {max_seq_length}")
        if position > 1 and value > values[position - 2]:
            raise RetentionConfigError(
                f"{source}: value {position} ({value}) is larger than value {position - 1} "
                f"({values[position - 2]}); the configuration must be non-increasing")
    return list(values)


def parse_retention_config(text, num_layers, max_seq_length, source="--RETENTION_CONFIG"):
    """'128,128,64,...' -> [128, 128, 64, ...], validated."""
    values = []
    for position, item in enumerate(text.split(","), 1):
        item = item.strip()
        if not re.fullmatch(r"[+-]?\d+", item):
            raise RetentionConfigError(f"{source}: value {position} ({item!r}) is not an "
                                       "integer")
        values.append(int(item))
    return validate_retention_config(values, num_layers, max_seq_length, source)


def format_retention_config(config):
    return ",".join(str(value) for value in config)
