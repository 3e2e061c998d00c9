"""TR-BERT's dynamic token selector for BertModel's per-layer hook.

At each reduction layer the layer's policy gives every token a keep probability p; the tokens
kept leave the others behind for good: they are gathered to the front of the sequence in their
original order and the batch is cut to its largest kept count, so the following layers really
run on fewer tokens, and each example keeps as many as its own decisions say. [CLS] is always
kept (the classifier reads it) and padding never is.

Modes: ``sample`` (training: Bernoulli(p) actions, the policy's exploration), ``deterministic``
(inference: keep where p > 0.5), and for tests ``keep_all`` and ``keep_top_k``.
What the losses and metrics need is recorded per reduction layer in ``records``.
"""
import dataclasses

import tensorflow as tf

from bert import randomness

tf1 = tf.compat.v1

SAMPLE = "sample"
DETERMINISTIC = "deterministic"
KEEP_ALL = "keep_all"
KEEP_TOP_K = "keep_top_k"
MODES = (SAMPLE, DETERMINISTIC, KEEP_ALL, KEEP_TOP_K)
KEEP_THRESHOLD = 0.5
CLS_POSITION = 0


@dataclasses.dataclass
class LayerRecord:
    """One reduction layer's decisions in one graph (S: tokens entering the layer)."""
    keep_logits: tf.Tensor  # [B, S] log-odds of keeping
    keep_probability: tf.Tensor  # [B, S]
    real: tf.Tensor  # [B, S] float: real tokens (not padding)
    decidable: tf.Tensor  # [B, S] float: real tokens other than [CLS], where the policy acts
    actions: tf.Tensor  # [B, S] float 1 = kept (padding 0, [CLS] 1)
    log_prob: tf.Tensor  # [B] Σ log π(action) over the decidable tokens
    kept_count: tf.Tensor  # [B] float, [CLS] included
    real_count: tf.Tensor  # [B] float, real tokens entering the layer, [CLS] included
    positions: tf.Tensor  # [B, S] int32: each entering token's position in the input
    attention_probs: tf.Tensor  # [B, heads, S, S] of the layer (the attention guide reads it)


def gather_kept(tensors, keep):
    """Each [B, S, ...] tensor with the kept tokens moved to the front in their original order
    and cut to the batch's largest kept count; also returns the [B, S'] mask of kept slots.

    The order comes from unique sort keys (position, plus S for tokens not kept), so no tie
    rule of the sort matters and exported graphs select the same tokens as TensorFlow.
    """
    keep = tf.cast(keep, tf.int32)
    length = tf.shape(keep)[1]
    new_length = tf.reduce_max(tf.reduce_sum(keep, axis=1))
    keys = tf.range(length)[tf.newaxis, :] + length * (1 - keep)
    _, order = tf.math.top_k(-tf.cast(keys, tf.float32), k=new_length, sorted=True)
    gathered = [tf.gather(tensor, order, batch_dims=1) for tensor in tensors]
    return gathered, tf.gather(keep, order, batch_dims=1)


class DynamicSelector:
    """The token selector of one graph: ``policies`` maps a reduction layer to its Policy."""

    def __init__(self, policies, mode, stop_gradient=False, top_k=None):
        if mode not in MODES:
            raise ValueError(f"selector mode {mode!r} is not one of {MODES}")
        if (mode == KEEP_TOP_K) != (top_k is not None):
            raise ValueError("top_k goes with the keep_top_k mode only")
        self.policies = dict(policies)
        self.mode = mode
        self.stop_gradient = stop_gradient
        self.top_k = top_k
        self.records = {}
        self._positions = None

    def __call__(self, layer_index, hidden, attention_probs, input_mask):
        if self._positions is None:  # the first layer: every token is where the input had it
            self._positions = tf.broadcast_to(tf.range(tf.shape(input_mask)[1])[tf.newaxis, :],
                                              tf.shape(input_mask))
        if layer_index not in self.policies:
            return hidden, input_mask
        policy_input = tf.stop_gradient(hidden) if self.stop_gradient else hidden
        logits = self.policies[layer_index].keep_logits(policy_input)
        probability = tf.sigmoid(logits)
        real = input_mask > 0
        is_cls = tf.equal(tf.range(tf.shape(input_mask)[1]), CLS_POSITION)[tf.newaxis, :]
        decidable = real & ~is_cls
        keep = (self._decide(probability, decidable) & decidable) | (real & is_cls)
        real_float = tf.cast(real, tf.float32)
        decidable_float = tf.cast(decidable, tf.float32)
        keep_float = tf.cast(keep, tf.float32)
        # log π(a) = log σ(z) for a kept token, log σ(−z) for a dropped one.
        log_prob = tf.where(keep, tf.math.log_sigmoid(logits), tf.math.log_sigmoid(-logits))
        self.records[layer_index] = LayerRecord(
            keep_logits=logits, keep_probability=probability, real=real_float,
            decidable=decidable_float,
            actions=keep_float,
            log_prob=tf.reduce_sum(log_prob * decidable_float, axis=1),
            kept_count=tf.reduce_sum(keep_float, axis=1),
            real_count=tf.reduce_sum(real_float, axis=1),
            positions=self._positions, attention_probs=attention_probs)
        (hidden, self._positions), kept_mask = gather_kept([hidden, self._positions], keep)
        return hidden, tf.cast(kept_mask, input_mask.dtype)

    def _decide(self, probability, decidable):
        if self.mode == SAMPLE:
            return randomness.uniform(tf.shape(probability)) < probability
        if self.mode == DETERMINISTIC:
            return probability > KEEP_THRESHOLD
        if self.mode == KEEP_ALL:
            return tf.ones_like(decidable)
        # KEEP_TOP_K: the k most probable decidable tokens (fewer in a shorter example).
        scores = tf.where(decidable, probability, -tf.ones_like(probability))
        k = tf.minimum(self.top_k, tf.shape(scores)[1])
        _, top = tf.math.top_k(scores, k=k)
        return tf.reduce_any(tf.one_hot(top, tf.shape(scores)[1], on_value=True,
                                        off_value=False, dtype=tf.bool), axis=1)
