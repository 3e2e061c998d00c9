"""AdamW update, schedule and parameter groups checked against hand computation."""
import numpy as np
import pytest
import tensorflow as tf

from bert import optimization

tf1 = tf.compat.v1


def schedule_values(steps, **kwargs):
    with tf.Graph().as_default():
        step = tf1.placeholder(tf.int64, [])
        rate = optimization.learning_rate_schedule(step, **kwargs)
        with tf1.Session() as session:
            return [session.run(rate, {step: s}) for s in steps]


def test_warmup_then_linear_decay():
    values = schedule_values([0, 5, 10, 55, 100], peak=1.0, num_train_steps=100,
                             num_warmup_steps=10)
    assert values == pytest.approx([0.0, 0.5, 0.9, 0.45, 0.0])


def test_constant_rate_without_decay():
    values = schedule_values([0, 50, 99], peak=0.3, num_train_steps=100, num_warmup_steps=0,
                             decay_to_zero=False)
    assert values == pytest.approx([0.3, 0.3, 0.3])


def one_step(groups_spec, loss_fn, initial):
    """Run one train step; returns {variable name: value after the step}."""
    with tf.Graph().as_default():
        variables = {name: tf1.get_variable(name, initializer=np.array(value, np.float32))
                     for name, value in initial.items()}
        loss = loss_fn(variables)
        groups = [optimization.ParamGroup(variables=[variables[n] for n in names], **spec)
                  for names, spec in groups_spec]
        train_op, _ = optimization.create_train_op(loss, groups)
        with tf1.Session() as session:
            session.run(tf1.global_variables_initializer())
            session.run(train_op)
            return {name: session.run(variable) for name, variable in variables.items()}


def test_adamw_step_and_decoupled_weight_decay():
    """First step: m = 0.1 g, v = 0.001 g², update = m/(√v+ε) + wd·w = ±√10·... by hand."""
    w0 = np.array([1.0, -2.0], np.float32)
    lr, wd = 0.1, 0.01
    result = one_step([(["kernel", "LayerNorm/gamma"],
                        dict(name="model", learning_rate=lr, num_train_steps=0, weight_decay=wd,
                             clip_norm=None, decay_to_zero=False))],
                      lambda v: tf.reduce_sum(3.0 * v["kernel"]) + tf.reduce_sum(
                          3.0 * v["LayerNorm/gamma"]),
                      {"kernel": w0, "LayerNorm/gamma": w0})
    grad = 3.0
    adam = (0.1 * grad) / (np.sqrt(0.001 * grad ** 2) + optimization.ADAM_EPSILON)
    assert result["kernel"] == pytest.approx(w0 - lr * (adam + wd * w0), abs=1e-6)
    assert result["LayerNorm/gamma"] == pytest.approx(w0 - lr * adam, abs=1e-6)  # no decay


def test_ascent_group_moves_up_the_gradient():
    result = one_step([(["weight"], dict(name="model", learning_rate=0.1, num_train_steps=0,
                                         weight_decay=0.0, clip_norm=None)),
                       (["multiplier"], dict(name="lambda", learning_rate=0.1, num_train_steps=0,
                                             weight_decay=0.0, clip_norm=None, ascent=True))],
                      lambda v: v["weight"] * v["multiplier"] + v["multiplier"] + v["weight"],
                      {"weight": 1.0, "multiplier": 0.0})
    assert result["weight"] < 1.0  # d/dw = λ + 1 = 1 > 0: descent decreases w
    assert result["multiplier"] > 0.0  # d/dλ = w + 1 = 2 > 0: ascent increases λ


def test_clipping_is_per_group_global_norm():
    """A huge gradient is clipped to norm 1 before Adam, so a tiny ε makes no difference."""
    with tf.Graph().as_default():
        weight = tf1.get_variable("weight", initializer=np.array([0.0, 0.0], np.float32))
        loss = tf.reduce_sum(weight * tf.constant([3000.0, 4000.0]))
        grads = tf.gradients(loss, [weight])
        clipped, norm = tf.clip_by_global_norm(grads, optimization.CLIP_NORM)
        with tf1.Session() as session:
            session.run(tf1.global_variables_initializer())
            values, total = session.run([clipped[0], norm])
    assert total == pytest.approx(5000.0)
    assert values == pytest.approx([0.6, 0.8])


def test_transform_applies_after_update():
    result = one_step([(["retention"], dict(name="r", learning_rate=1.0, num_train_steps=0,
                                            weight_decay=0.0, clip_norm=None,
                                            transform=lambda v: tf.clip_by_value(v, 0.0, 1.0)))],
                      lambda v: -tf.reduce_sum(v["retention"]),
                      {"retention": np.ones(3, np.float32)})
    assert result["retention"] == pytest.approx([1.0, 1.0, 1.0])


def test_global_step_advances_once_with_several_groups():
    with tf.Graph().as_default():
        a = tf1.get_variable("a", initializer=1.0)
        b = tf1.get_variable("b", initializer=1.0)
        groups = [optimization.ParamGroup("first", [a], 0.1, 10),
                  optimization.ParamGroup("second", [b], 0.2, 10)]
        train_op, rates = optimization.create_train_op(a * b, groups)
        step = tf1.train.get_global_step()
        with tf1.Session() as session:
            session.run(tf1.global_variables_initializer())
            session.run(train_op)
            assert session.run(step) == 1
            assert sorted(rates) == ["first", "second"]
