"""HardConcrete gate: sample statistics, range, gradients and the deterministic eval gate."""
import math

import numpy as np
import tensorflow as tf

from flop import hardconcrete
from flop.hardconcrete import HardConcrete

tf1 = tf.compat.v1

SAMPLES = 4000
# Standard error of a frequency over 4000 samples is at most 0.5/√4000 ≈ 0.008 per unit.
FREQUENCY_TOLERANCE = 0.03
LOG_ALPHAS = np.array([-4.0, -2.0, -1.0, 0.0, 0.5, 1.0, 3.0, 6.0], np.float32)


def _gate_with(log_alpha, temperature=1.0):
    gate = HardConcrete(len(log_alpha), "gate", temperature=temperature)
    assign = gate.log_alpha.assign(log_alpha)
    return gate, assign


def test_sample_frequencies_match_expected_l0():
    with tf.Graph().as_default():
        tf1.set_random_seed(0)
        gate, assign = _gate_with(LOG_ALPHAS)
        sample = gate.training_mask()
        per_unit = tf.sigmoid(gate.log_alpha - math.log(0.1 / 1.1))
        with tf1.Session() as session:
            session.run(assign)
            samples = np.stack([session.run(sample) for _ in range(SAMPLES)])
            expected, l0 = session.run([per_unit, gate.l0_norm()])
    assert samples.min() >= 0.0 and samples.max() <= 1.0
    # Both ends of the clamp are reached: exact zeros and exact ones.
    assert (samples == 0.0).any() and (samples == 1.0).any()
    np.testing.assert_allclose((samples != 0).mean(axis=0), expected, atol=FREQUENCY_TOLERANCE)
    assert abs((samples != 0).sum(axis=1).mean() - l0) < FREQUENCY_TOLERANCE * len(LOG_ALPHAS)


def test_one_sample_per_step_shared_by_the_batch():
    with tf.Graph().as_default():
        gate, assign = _gate_with(np.zeros(5, np.float32))
        hidden = tf.ones([4, 3, 5])
        gated = hidden * gate.training_mask()
        with tf1.Session() as session:
            session.run(assign)
            out = session.run(gated)
    np.testing.assert_array_equal(out, np.broadcast_to(out[0, 0], out.shape))


def test_gradient_reaches_log_alpha():
    with tf.Graph().as_default():
        gate, assign = _gate_with(np.zeros(6, np.float32))
        train_grad = tf.gradients(tf.reduce_sum(gate.training_mask()), gate.log_alpha)[0]
        l0_grad = tf.gradients(gate.l0_norm(), gate.log_alpha)[0]
        with tf1.Session() as session:
            session.run(assign)
            train_values, l0_values = session.run([train_grad, l0_grad])
    assert np.all(l0_values > 0)  # more log_alpha → more open gates
    assert np.any(train_values > 0)  # through every sample that is not clamped


def test_initial_log_alpha_follows_init_mean():
    with tf.Graph().as_default():
        gate = HardConcrete(1000, "gate", init_mean=0.2, init_std=0.01)
        with tf1.Session() as session:
            session.run(tf1.global_variables_initializer())
            values = session.run(gate.log_alpha)
    assert abs(values.mean() - math.log(0.8 / 0.2)) < 0.01 and values.std() < 0.02


def test_eval_mask_zeroes_the_expected_number_of_smallest():
    with tf.Graph().as_default():
        gate, assign = _gate_with(LOG_ALPHAS)
        with tf1.Session() as session:
            session.run(assign)
            mask, l0 = session.run([gate.mask(False), gate.l0_norm()])
    num_zeros = round(len(LOG_ALPHAS) - l0)
    assert 0 < num_zeros < len(LOG_ALPHAS)
    assert np.count_nonzero(mask == 0) == num_zeros
    # LOG_ALPHAS are sorted: the zeros are the first (smallest) units.
    assert np.all(mask[:num_zeros] == 0)
    kept = LOG_ALPHAS[num_zeros:]
    np.testing.assert_allclose(mask[num_zeros:],
                               1 / (1 + np.exp(-kept * hardconcrete.EVAL_LOGIT_SCALE)),
                               rtol=1e-6)


def test_eval_mask_is_deterministic_and_temperature_aware():
    with tf.Graph().as_default():
        gate, assign = _gate_with(LOG_ALPHAS, temperature=2.0)
        mask = gate.eval_mask()
        with tf1.Session() as session:
            session.run(assign)
            first, second = session.run(mask), session.run(mask)
    np.testing.assert_array_equal(first, second)
    kept = first != 0
    np.testing.assert_allclose(first[kept], 1 / (1 + np.exp(-LOG_ALPHAS[kept] / 2.0 * 0.8)),
                               rtol=1e-6)
