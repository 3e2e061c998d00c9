"""AdamW with warm-up + linear decay, over several parameter groups with their own schedules.

Fine-tuning uses one group. FLOP uses three (model weights, HardConcrete log_alphas, Lagrange
multipliers that ascend), which is why groups, not a single learning rate, are the unit here.
"""
import dataclasses
import re
from typing import Callable, Optional

import tensorflow as tf

tf1 = tf.compat.v1

ADAM_BETA_1 = 0.9
ADAM_BETA_2 = 0.999
ADAM_EPSILON = 1e-6  # Google's BERT value (HF uses 1e-8); only matters for tiny second moments.
DEFAULT_WEIGHT_DECAY = 0.01
CLIP_NORM = 1.0  # Global-norm clipping of BERT fine-tuning.
# Weight decay is for kernels and embeddings; LayerNorm parameters and biases are left alone.
NO_DECAY = re.compile(r"(LayerNorm|layer_norm|/bias$|_bias$)")


@dataclasses.dataclass
class ParamGroup:
    """Variables trained together with one learning-rate schedule."""
    name: str
    variables: list
    learning_rate: float
    num_train_steps: int
    num_warmup_steps: int = 0
    weight_decay: float = DEFAULT_WEIGHT_DECAY
    clip_norm: Optional[float] = CLIP_NORM
    decay_to_zero: bool = True  # linear decay after warm-up; False keeps the peak rate
    ascent: bool = False  # maximise the loss (Lagrange multipliers)
    transform: Optional[Callable] = None  # applied to each variable after its update (e.g. clip)


def learning_rate_schedule(global_step, peak, num_train_steps, num_warmup_steps,
                           decay_to_zero=True):
    """Linear warm-up from 0 to ``peak`` over ``num_warmup_steps``, then linear decay to 0."""
    step = tf.cast(global_step, tf.float32)
    rate = tf.constant(peak, tf.float32)
    if decay_to_zero and num_train_steps > 0:
        remaining = tf.maximum(0.0, 1.0 - step / float(num_train_steps))
        rate = rate * remaining
    if num_warmup_steps > 0:
        warm = peak * step / float(num_warmup_steps)
        rate = tf.where(step < num_warmup_steps, warm, rate)
    return rate


def _adamw_update(variable, gradient, learning_rate, weight_decay):
    """One decoupled-weight-decay Adam step (Google's BERT flavour: no bias correction)."""
    name = variable.op.name
    m = tf1.get_variable(name + "/adam_m", shape=variable.shape, dtype=tf.float32,
                         trainable=False, initializer=tf1.zeros_initializer())
    v = tf1.get_variable(name + "/adam_v", shape=variable.shape, dtype=tf.float32,
                         trainable=False, initializer=tf1.zeros_initializer())
    if isinstance(gradient, tf.IndexedSlices):
        gradient = tf.convert_to_tensor(gradient)
    next_m = ADAM_BETA_1 * m + (1.0 - ADAM_BETA_1) * gradient
    next_v = ADAM_BETA_2 * v + (1.0 - ADAM_BETA_2) * tf.square(gradient)
    update = next_m / (tf.sqrt(next_v) + ADAM_EPSILON)
    if weight_decay and not NO_DECAY.search(name):
        update += weight_decay * variable
    return [variable.assign_sub(learning_rate * update), m.assign(next_m), v.assign(next_v)]


def _gradients_by_group(loss, groups, losses_by_group):
    """Gradients for every group, computing one backward pass per distinct loss tensor."""
    followed = {group.name: (losses_by_group or {}).get(group.name, loss) for group in groups}
    gradients = {}
    for target in {id(t): t for t in followed.values()}.values():
        members = [group for group in groups if followed[group.name] is target]
        variables = [variable for group in members for variable in group.variables]
        flat = iter(tf.gradients(target, variables))
        for group in members:
            gradients[group.name] = [next(flat) for _ in group.variables]
    return gradients


def create_train_op(loss, groups, global_step=None, losses_by_group=None):
    """Train op applying every group's AdamW step and incrementing the global step once.

    ``losses_by_group`` optionally maps a group name to the loss that group follows (FLOP's
    multipliers ascend only the constraint terms). Returns (train_op, {group: learning rate}).
    """
    global_step = global_step if global_step is not None else tf1.train.get_or_create_global_step()
    groups = [group for group in groups if group.variables]
    gradients = _gradients_by_group(loss, groups, losses_by_group)
    updates, rates = [], {}
    for group in groups:
        pairs = [(-g if group.ascent else g, v)
                 for g, v in zip(gradients[group.name], group.variables) if g is not None]
        if not pairs:
            continue
        grads = [g for g, _ in pairs]
        if group.clip_norm:
            grads, _ = tf.clip_by_global_norm(grads, clip_norm=group.clip_norm)
        rate = learning_rate_schedule(global_step, group.learning_rate, group.num_train_steps,
                                      group.num_warmup_steps, group.decay_to_zero)
        rates[group.name] = rate
        for gradient, (_, variable) in zip(grads, pairs):
            ops = _adamw_update(variable, gradient, rate, group.weight_decay)
            if group.transform is not None:
                with tf.control_dependencies(ops):
                    ops = [variable.assign(group.transform(variable))]
            updates.extend(ops)
    with tf.control_dependencies(updates):
        train_op = global_step.assign_add(1)
    return train_op, rates


def create_optimizer(loss, init_lr, num_train_steps, num_warmup_steps, variables=None):
    """Plain fine-tuning: one AdamW group over all trainable variables (Google's signature)."""
    group = ParamGroup("model", variables or tf1.trainable_variables(), init_lr, num_train_steps,
                       num_warmup_steps)
    train_op, _ = create_train_op(loss, [group])
    return train_op
