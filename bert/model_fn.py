"""The classifier's graph: BERT + Google's head, the task metrics, and the Estimator model_fn
that runs every method's phases (``bert.methods``) in order."""
import dataclasses
import logging
from typing import Optional

import numpy as np
import tensorflow as tf

from bert import checkpoint, distribution, methods, metrics, modeling, optimization
from bert.training_hooks import ProgressHook

tf1 = tf.compat.v1
log = logging.getLogger("bert")

CLASSIFIER_DROPOUT = 0.1  # Google's head keeps this fixed, whatever the config says.
HEAD_WEIGHTS, HEAD_BIAS = "output_weights", "output_bias"  # Google's classifier head
HEAD_VARIABLES = (rf"^{HEAD_WEIGHTS}$", rf"^{HEAD_BIAS}$")  # fresh at fine-tuning start
TRAINING_LOSS_ALIAS = "loss_1"  # the FLOP seed's TensorBoard name of the training-step loss
# The FLOP seed's TensorBoard names of the binary metrics, beside our eval_* names.
BINARY_METRIC_ALIASES = {"precision": "eval_precision", "recall": "eval_recall",
                         "f1_score": "eval_f1"}


def classifier_head(pooled_output, num_labels, is_training, dropout=CLASSIFIER_DROPOUT):
    """Google's head: ``output_weights`` [num_labels, hidden] and ``output_bias``."""
    hidden = pooled_output.shape[-1]
    weights = tf1.get_variable(HEAD_WEIGHTS, [num_labels, hidden],
                               initializer=tf1.truncated_normal_initializer(stddev=0.02))
    bias = tf1.get_variable(HEAD_BIAS, [num_labels], initializer=tf1.zeros_initializer())
    if is_training and dropout:
        pooled_output = modeling.dropout(pooled_output, dropout)
    return tf.nn.bias_add(tf.matmul(pooled_output, weights, transpose_b=True), bias)


def create_model(bert_config, is_training, features, num_labels, is_regression, hooks,
                 classifier_dropout=CLASSIFIER_DROPOUT):
    """BERT + head. Returns a ``methods.ClassifierGraph``."""
    model = modeling.BertModel(
        bert_config, is_training, features["input_ids"], features.get("input_mask"),
        features.get("segment_ids"), dense_factory=hooks.dense_factory,
        token_selector=hooks.token_selector)
    logits = classifier_head(model.pooled_output, 1 if is_regression else num_labels,
                             is_training, classifier_dropout)
    labels = features.get("label_ids")
    if is_regression:
        predictions = logits[:, 0]
        per_example_loss = None if labels is None else tf.square(predictions - labels)
    else:
        predictions = tf.argmax(logits, axis=-1, output_type=tf.int32)
        per_example_loss = None if labels is None else (
            tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))
    return methods.ClassifierGraph(model=model, logits=logits, predictions=predictions,
                                   per_example_loss=per_example_loss, features=features,
                                   is_training=is_training, is_regression=is_regression)


def _streaming_concat(values, name):
    """Metric accumulating every value of the eval set (full-set ranks need all of them)."""
    store = tf1.Variable(tf.zeros([0], values.dtype), name=name, trainable=False,
                         shape=tf.TensorShape([None]),
                         collections=[tf1.GraphKeys.LOCAL_VARIABLES,
                                      tf1.GraphKeys.METRIC_VARIABLES])
    update = store.assign(tf.concat([store, values], axis=0), read_value=True)
    return store, update


def task_metric_ops(task_name, predictions, labels, per_example_loss):
    """Full-dev-set metrics as Estimator metric ops (computed once, in numpy, at the end)."""
    names = sorted(metrics.compute_task_metrics(task_name, np.array([0.0, 1.0, 0.0]),
                                                np.array([0.0, 1.0, 1.0])))
    all_predictions, update_predictions = _streaming_concat(tf.cast(predictions, tf.float32),
                                                            "all_predictions")
    all_labels, update_labels = _streaming_concat(tf.cast(labels, tf.float32), "all_labels")

    def compute(predicted, gold):
        values = metrics.compute_task_metrics(task_name, predicted, gold)
        return np.array([values[name] for name in names], np.float32)

    values = tf.numpy_function(compute, [all_predictions, all_labels], tf.float32)
    update = tf.group(update_predictions, update_labels)
    ops = {name: (values[i], update) for i, name in enumerate(names)}
    ops.update({alias: ops[name] for alias, name in BINARY_METRIC_ALIASES.items()
                if name in ops})
    ops["eval_loss"] = tf1.metrics.mean(per_example_loss)
    return ops


@dataclasses.dataclass
class ModelFnSettings:
    """What the model_fn needs besides the config and the methods."""
    task_name: str
    num_labels: int
    is_regression: bool
    init_checkpoint: Optional[str]
    num_train_steps: int
    num_warmup_steps: int
    learning_rate: float
    train_batch_size: int = 32
    log_every_n_steps: int = 20
    classifier_dropout: float = CLASSIFIER_DROPOUT
    weight_decay: float = optimization.DEFAULT_WEIGHT_DECAY


def model_fn_builder(bert_config, settings: ModelFnSettings, method_list,
                     extra_training_hooks=()):
    """Estimator model_fn: BERT + head, then every method's phases (``bert.methods.PHASES``).

    Under a strategy Estimator calls it once per replica; the optimizer then averages the
    replicas' gradients and updates once (see ``optimization.create_train_op``)."""
    allow_missing = HEAD_VARIABLES + methods.allow_missing(method_list)

    def model_fn(features, labels, mode, params=None):
        is_training = mode == tf.estimator.ModeKeys.TRAIN
        hooks = methods.build_all(method_list, bert_config, is_training)
        graph = create_model(bert_config, is_training, features, settings.num_labels,
                             settings.is_regression, hooks, settings.classifier_dropout)
        if mode == tf.estimator.ModeKeys.PREDICT:
            outputs = {"predictions": graph.predictions}
            if not settings.is_regression:
                outputs["probabilities"] = tf.nn.softmax(graph.logits)
            return tf.estimator.EstimatorSpec(mode, predictions=outputs)
        hooks.create_variables(graph)
        task_loss = tf.reduce_mean(graph.per_example_loss)
        total_loss = hooks.task_loss_weight * task_loss + hooks.extra_loss(graph)
        if is_training:
            return training_spec(hooks, graph, total_loss, settings, allow_missing,
                                 extra_training_hooks, task_loss)
        ops = task_metric_ops(settings.task_name, graph.predictions, features["label_ids"],
                              graph.per_example_loss)
        ops.update(hooks.eval_metric_ops(graph))
        return tf.estimator.EstimatorSpec(mode, loss=total_loss, eval_metric_ops=ops)

    return model_fn


def training_spec(hooks, graph, total_loss, settings, allow_missing, extra_training_hooks=(),
                  task_loss=None):
    """The training EstimatorSpec of any graph whose methods ran their phases (the classifier,
    pre-training): start from ``settings.init_checkpoint``, phases 3 to 5, progress.

    ``settings`` has ModelFnSettings' training fields (init_checkpoint, learning_rate,
    num_train_steps, num_warmup_steps, weight_decay, train_batch_size, log_every_n_steps).
    ``task_loss``: the classifier's task term, shown in TensorBoard (None: a run without one
    names its own loss terms)."""
    if settings.init_checkpoint:
        # Once for the (mirrored) variables, not once per replica.
        distribution.in_cross_replica_context(
            lambda: _init_from_checkpoint(settings.init_checkpoint, allow_missing))
    # The loss of the whole global batch: what the log and TensorBoard show.
    mean_loss = distribution.mean_over_replicas([total_loss])[0]
    schedule = methods.Schedule(settings.num_train_steps, settings.num_warmup_steps,
                                settings.learning_rate)
    train_op = phases_train_op(hooks, graph, total_loss, schedule, settings.weight_decay)
    if task_loss is not None:
        _loss_summaries(task_loss, mean_loss)
    progress = ProgressHook(mean_loss, settings.num_train_steps, settings.train_batch_size,
                            settings.log_every_n_steps)
    # Estimator sums the replicas' losses to report one, so each reports its share.
    return tf.estimator.EstimatorSpec(
        tf.estimator.ModeKeys.TRAIN, loss=mean_loss / distribution.replicas_here(),
        train_op=train_op,
        training_hooks=[progress] + hooks.session_hooks(graph) + list(extra_training_hooks))


def _init_from_checkpoint(init_checkpoint, allow_missing):
    loaded, unexpected = checkpoint.init_from_checkpoint(init_checkpoint, allow_missing)
    log.info("initialised %d variables from %s", len(loaded), init_checkpoint)
    if unexpected:
        log.warning("checkpoint variables not used by this model: %s", ", ".join(unexpected))


def _train_op(hooks, graph, task_loss, total_loss, learning_rate, num_train_steps,
              num_warmup_steps, mean_loss=None, weight_decay=optimization.DEFAULT_WEIGHT_DECAY):
    """``phases_train_op`` plus the classifier's loss summaries. ``mean_loss``: the loss over
    all replicas, for TensorBoard (default ``total_loss``)."""
    schedule = methods.Schedule(num_train_steps, num_warmup_steps, learning_rate)
    train_op = phases_train_op(hooks, graph, total_loss, schedule, weight_decay)
    _loss_summaries(task_loss, total_loss if mean_loss is None else mean_loss)
    return train_op


def phases_train_op(hooks, graph, total_loss, schedule: methods.Schedule,
                    weight_decay=optimization.DEFAULT_WEIGHT_DECAY):
    """Phases 3 and 4: the methods' own parameter groups plus one "model" group for every other
    variable, then the methods' after-update ops inside the update's control dependencies."""
    groups, losses_by_group = hooks.param_groups(graph, schedule)
    claimed = {variable.op.name for group in groups for variable in group.variables}
    model_variables = ([v for v in tf1.trainable_variables() if v.op.name not in claimed]
                       if schedule.learning_rate > 0 else [])  # rate 0 freezes the model (FLOP)
    groups.insert(0, optimization.ParamGroup("model", model_variables, schedule.learning_rate,
                                             schedule.num_train_steps, schedule.num_warmup_steps,
                                             weight_decay=weight_decay))
    train_op, rates = optimization.create_train_op(total_loss, groups,
                                                   losses_by_group=losses_by_group)
    with tf.control_dependencies([train_op]):
        after_update = hooks.after_update_ops(graph)
        if after_update:
            train_op = tf.group(*after_update)
    for group in groups:
        tf1.summary.scalar(f"{group.name}_lr", rates.get(group.name, tf.constant(0.0)))
    return train_op


def _loss_summaries(task_loss, loss):
    tf1.summary.scalar("task_loss", task_loss)
    tf1.summary.scalar(TRAINING_LOSS_ALIAS, loss)
