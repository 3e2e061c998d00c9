"""AdamW with warm-up + linear decay, over several parameter groups with their own schedules.

Fine-tuning uses one group. FLOP uses three (model weights, HardConcrete log_alphas, Lagrange
multipliers that ascend), which is why groups, not a single learning rate, are the unit here.
"""
import dataclasses
import functools
import re
from typing import Callable, Optional

import tensorflow as tf

from bert import distribution

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


def _variable_name(variable):
    """The variable's own name; under a strategy ``op.name`` names a replica's copy."""
    return variable.name.split(":")[0]


def _slots(variable):
    """Adam's first and second moments of ``variable`` (``<name>/adam_m``, ``<name>/adam_v``)."""
    name = _variable_name(variable)
    return [tf1.get_variable(name + suffix, shape=variable.shape, dtype=tf.float32,
                             trainable=False, initializer=tf1.zeros_initializer())
            for suffix in ("/adam_m", "/adam_v")]


def _adamw_update(variable, gradient, learning_rate, m, v, weight_decay, transform=None):
    """One decoupled-weight-decay Adam step (Google's BERT flavour: no bias correction), then
    ``transform`` of the new value. Returns the ops."""
    next_m = ADAM_BETA_1 * m + (1.0 - ADAM_BETA_1) * gradient
    next_v = ADAM_BETA_2 * v + (1.0 - ADAM_BETA_2) * tf.square(gradient)
    update = next_m / (tf.sqrt(next_v) + ADAM_EPSILON)
    if weight_decay and not NO_DECAY.search(_variable_name(variable)):
        update += weight_decay * variable
    ops = [variable.assign_sub(learning_rate * update), m.assign(next_m), v.assign(next_v)]
    if transform is None:
        return ops
    with tf.control_dependencies(ops):
        return [variable.assign(transform(variable))]


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

    Under a tf.distribute strategy (Estimator calls model_fn once per replica), each replica's
    gradients are averaged over all replicas before clipping, and the updates (variables, Adam
    moments, transform, global step) are applied once, in cross-replica context, as
    TensorFlow's own optimizers do.
    """
    global_step = global_step if global_step is not None else tf1.train.get_or_create_global_step()
    groups = [group for group in groups if group.variables]
    gradients = _gradients_by_group(loss, groups, losses_by_group)
    context = distribution.replica_context()
    plan, rates = [], {}
    for group in groups:
        pairs = [(-g if group.ascent else g, v)
                 for g, v in zip(gradients[group.name], group.variables) if g is not None]
        if not pairs:
            continue
        # Dense gradients: the Adam moments are dense anyway.
        grads = [tf.convert_to_tensor(g) for g, _ in pairs]
        grads = distribution.mean_over_replicas(grads)
        if group.clip_norm:
            grads, _ = tf.clip_by_global_norm(grads, clip_norm=group.clip_norm)
        rate = learning_rate_schedule(global_step, group.learning_rate, group.num_train_steps,
                                      group.num_warmup_steps, group.decay_to_zero)
        rates[group.name] = rate
        plan.append((group, [v for _, v in pairs], grads, rate))
    # No variable may change before every gradient is computed: a group following its own loss
    # (FLOP's multipliers) reads variables that no other group's update waits for.
    with tf.control_dependencies([g for _, _, grads, _ in plan for g in grads]):
        plan = [(group, variables, [tf.identity(g) for g in grads], rate)
                for group, variables, grads, rate in plan]
    if context is not None:
        # merge_call runs replica 0's function once, with each replica's tensors gathered.
        apply = functools.partial(_apply_replicated, global_step=global_step,
                                  groups=[(group, variables) for group, variables, _, _ in plan])
        return context.merge_call(apply, args=([grads for _, _, grads, _ in plan],
                                               [rate for *_, rate in plan])), rates
    updates = []
    for group, variables, grads, rate in plan:
        for gradient, variable in zip(grads, variables):
            updates += _adamw_update(variable, gradient, rate, *_slots(variable),
                                     group.weight_decay, group.transform)
    with tf.control_dependencies(updates):
        train_op = global_step.assign_add(1)
    return train_op, rates


def _apply_replicated(strategy, grads_by_group, rates, global_step, groups):
    """Cross-replica: one AdamW update of every (mirrored) variable from its averaged gradient,
    then one global-step increment."""
    updates = []
    for (group, variables), grads, rate in zip(groups, grads_by_group, rates):
        def step(variable, gradient, learning_rate, m, v, group=group):
            return tf.group(_adamw_update(variable, gradient, learning_rate, m, v,
                                          group.weight_decay, group.transform))
        for gradient, variable in zip(grads, variables):
            with strategy.extended.colocate_vars_with(variable):
                m, v = _slots(variable)
            updates.append(strategy.extended.update(variable, step,
                                                    args=(gradient, rate, m, v)))
    with tf.control_dependencies(updates):
        return strategy.extended.update(global_step, lambda step: step.assign_add(1))


def create_optimizer(loss, init_lr, num_train_steps, num_warmup_steps, variables=None):
    """Plain fine-tuning: one AdamW group over all trainable variables (Google's signature)."""
    group = ParamGroup("model", variables or tf1.trainable_variables(), init_lr, num_train_steps,
                       num_warmup_steps)
    train_op, _ = create_train_op(loss, [group])
    return train_op
