"""HardConcrete gates (Louizos et al. 2018) as FLOP uses them over the ranks of a factorized kernel.

A gate z ∈ [0, 1] per unit: stochastic while training, so that the expected number of open
gates (expected L0) is differentiable in ``log_alpha``; deterministic at evaluation, with
exactly round(E[L0]) units kept, so that evaluation shows the model remove_mask will ship.
"""
import math

import tensorflow as tf

from bert import randomness

tf1 = tf.compat.v1

# The concrete sample s ∈ (0, 1) is stretched to (LIMIT_LEFT, LIMIT_RIGHT) and clamped to
# [0, 1], so that exact 0 and exact 1 have non-zero probability.
LIMIT_LEFT = -0.1
LIMIT_RIGHT = 1.1
DEFAULT_TEMPERATURE = 1.0
# Keeps log(u) and log(1 - u) finite.
UNIFORM_EPSILON = 1e-6
# sigmoid(0.8·log_alpha/β) is within ~0.01 of the mean training gate E[z] over the whole range of
# log_alpha (β = 1), so the kept units see at evaluation about the scale they saw in training.
EVAL_LOGIT_SCALE = 0.8


def expected_l0(log_alpha, temperature=DEFAULT_TEMPERATURE):
    """Σ P(z ≠ 0) = Σ sigmoid(log_alpha − β·log(−l/r))."""
    shift = temperature * math.log(-LIMIT_LEFT / LIMIT_RIGHT)
    return tf.reduce_sum(tf.sigmoid(log_alpha - shift))


def deterministic_mask(log_alpha, temperature=DEFAULT_TEMPERATURE):
    """Soft values sigmoid(0.8·log_alpha/β) with the round(n − E[L0]) smallest set to 0."""
    soft = tf.sigmoid(log_alpha / temperature * EVAL_LOGIT_SCALE)
    num_units = tf.size(log_alpha)
    num_zeros = tf.cast(tf.round(tf.cast(num_units, tf.float32)
                                 - expected_l0(log_alpha, temperature)), tf.int32)
    num_zeros = tf.clip_by_value(num_zeros, 0, num_units)
    _, smallest = tf.nn.top_k(-soft, k=num_zeros)
    return tf.tensor_scatter_nd_update(soft, smallest[:, tf.newaxis],
                                       tf.zeros_like(smallest, dtype=soft.dtype))


class HardConcrete:
    """One gate vector over ``num_units``; its variable is ``<scope>/<name>/log_alpha``."""

    def __init__(self, num_units, name, init_mean=0.5, init_std=0.01,
                 temperature=DEFAULT_TEMPERATURE):
        if not 0.0 < init_mean < 1.0:
            raise ValueError(f"HardConcrete init_mean {init_mean} must be in (0, 1)")
        self.num_units = num_units
        self.temperature = temperature
        # init_mean is the initial drop rate p: log_alpha = log((1-p)/p), sigmoid(log_alpha) = 1-p.
        mean = math.log(1.0 - init_mean) - math.log(init_mean)
        with tf1.variable_scope(name):
            self.log_alpha = tf1.get_variable(
                "log_alpha", [num_units],
                initializer=tf1.random_normal_initializer(mean=mean, stddev=init_std))

    def l0_norm(self):
        return expected_l0(self.log_alpha, self.temperature)

    def training_mask(self):
        """One sample per step, shared by the whole batch (the structure is what is sampled)."""
        u = randomness.uniform([self.num_units], UNIFORM_EPSILON, 1.0 - UNIFORM_EPSILON)
        s = tf.sigmoid((tf.math.log(u) - tf.math.log(1.0 - u) + self.log_alpha)
                       / self.temperature)
        return tf.clip_by_value(s * (LIMIT_RIGHT - LIMIT_LEFT) + LIMIT_LEFT, 0.0, 1.0)

    def eval_mask(self):
        return deterministic_mask(self.log_alpha, self.temperature)

    def mask(self, is_training):
        return self.training_mask() if is_training else self.eval_mask()
