"""A frozen fine-tuned model built beside the student in the same graph, and the losses that
distil it: soft logits, hidden states, attention maps.

Several methods distil from the fine-tuned model (FLOP optionally, TR-BERT's joint training,
the distill package always). A graph has one teacher, built on the first request
(``shared_teacher``) and handed to every method that asks for it. It lives under the
``teacher/`` scope with the variable names of its own checkpoint below it; its variables are
LOCAL and untrainable, so they never train and never land in the student's checkpoints, and are
re-read from the teacher checkpoint in every session.
"""
import dataclasses
import math
from typing import List, Optional, Sequence

import tensorflow as tf

from bert import checkpoint, modeling
from bert.errors import UsageError
from bert.model_fn import HEAD_WEIGHTS, classifier_head

tf1 = tf.compat.v1

TEACHER_SCOPE = "teacher"
HALF = 0.5  # round half up: round() would send 4.5 to 4 (banker's rounding)
PROJECTION_SCOPE = "distill"  # learned student→teacher width projections: training state only


@dataclasses.dataclass
class TeacherOutputs:
    """What the teacher computed on the student's batch (no gradient flows into any of it)."""
    logits: tf.Tensor
    model: modeling.BertModel  # all_encoder_layers, all_attention_probs, embedding_output

    @property
    def hidden_states(self) -> List[tf.Tensor]:
        """Embedding output, then every layer's output: [B, S, H] each."""
        return [tf.stop_gradient(self.model.embedding_output)] + [
            tf.stop_gradient(layer) for layer in self.model.all_encoder_layers]

    @property
    def attention_probs(self) -> List[tf.Tensor]:
        return [tf.stop_gradient(probs) for probs in self.model.all_attention_probs]


def _frozen_local_getter(getter, *args, **kwargs):
    kwargs["trainable"] = False
    kwargs["collections"] = [tf1.GraphKeys.LOCAL_VARIABLES]
    return getter(*args, **kwargs)


def load_teacher_variables(teacher_checkpoint, variables, flag="teacher_checkpoint"):
    """Map ``teacher/<name>`` to ``<name>`` of the teacher checkpoint, strictly."""
    prefix = checkpoint.resolve_checkpoint(teacher_checkpoint, flag=flag)
    stored = dict(tf.train.list_variables(prefix))
    assignment, problems = {}, []
    for variable in variables:
        name = variable.op.name[len(TEACHER_SCOPE) + 1:]
        if name not in stored:
            problems.append(f"{name} missing")
        elif list(stored[name]) != variable.shape.as_list():
            problems.append(f"{name}: model {variable.shape.as_list()} vs checkpoint "
                            f"{list(stored[name])}")
        else:
            assignment[name] = variable
    if problems:
        raise checkpoint.CheckpointMismatchError(
            f"--{flag}={teacher_checkpoint} does not match the teacher config: "
            + "; ".join(problems))
    tf1.train.init_from_checkpoint(prefix, assignment)


def build_teacher(teacher_config, teacher_checkpoint, features, num_outputs,
                  flag="teacher_checkpoint", head=True, head_fn=None) -> TeacherOutputs:
    """The frozen teacher (BERT + Google's classifier head) on ``features``.

    ``head=False`` builds the encoder only (pre-training distillation has no task head);
    ``head_fn(model)`` builds another task's head (SQuAD's spans) instead of the classifier's.
    """
    with tf1.variable_scope(TEACHER_SCOPE, custom_getter=_frozen_local_getter):
        model = modeling.BertModel(teacher_config, False, features["input_ids"],
                                   features.get("input_mask"), features.get("segment_ids"))
        logits = None
        if head:
            logits = tf.stop_gradient(head_fn(model) if head_fn else
                                      classifier_head(model.pooled_output, num_outputs, False))
    load_teacher_variables(teacher_checkpoint,
                           [v for v in tf1.local_variables()
                            if v.op.name.startswith(TEACHER_SCOPE + "/")], flag)
    return TeacherOutputs(logits=logits, model=model)


def soft_logit_loss(student_logits, teacher_logits, temperature, is_regression):
    """KL(teacher ‖ student) of the temperature-softened outputs, scaled by T² (Hinton et al.)
    so its gradients keep their size across temperatures; MSE of the scores for regression."""
    if is_regression:
        return tf.reduce_mean(tf.square(student_logits - teacher_logits))
    teacher_log_probs = tf.nn.log_softmax(teacher_logits / temperature)
    student_log_probs = tf.nn.log_softmax(student_logits / temperature)
    kl = tf.reduce_sum(tf.exp(teacher_log_probs) * (teacher_log_probs - student_log_probs),
                       axis=-1)
    return temperature ** 2 * tf.reduce_mean(kl)


def shared_teacher(graph, teacher_config, teacher_checkpoint, flag="teacher_checkpoint"):
    """The graph's one teacher: built on the first request, the same object after that.

    ``graph`` is the ``methods.ClassifierGraph``; the teacher sees its features and has a head
    when its checkpoint has one (and the graph has logits to match). Two methods that ask for
    different teachers in one graph are refused: there is one ``teacher/`` scope.
    """
    prefix = checkpoint.resolve_checkpoint(teacher_checkpoint, flag=flag)
    if graph.teachers and prefix not in graph.teachers:
        raise UsageError(f"--{flag}={teacher_checkpoint}: this run already distils from "
                         f"{next(iter(graph.teachers))}; every method of a run shares one teacher")
    if prefix not in graph.teachers:
        stored = dict(tf.train.list_variables(prefix))
        head = graph.logits is not None and (graph.head_weights or HEAD_WEIGHTS) in stored
        num_outputs = int(graph.logits.shape[-1]) if head else None
        graph.teachers[prefix] = build_teacher(teacher_config, prefix, graph.features,
                                               num_outputs, flag, head=head,
                                               head_fn=graph.teacher_head)
    return graph.teachers[prefix]


# Losses -----------------------------------------------------------------------------------------
def uniform_layer_map(student_layers, teacher_layers):
    """Teacher layer (1-based) of each student layer: m(i) = round(i·L_t/L_s), at least 1."""
    return [max(1, int(math.floor(i * teacher_layers / student_layers + HALF)))
            for i in range(1, student_layers + 1)]


def layer_pairs(student_layers, teacher_layers, layer_map: Optional[Sequence[int]] = None):
    """(student layer, teacher layer) pairs, 1-based; the embeddings (0, 0) come first.
    ``layer_map``: the teacher layer of each student layer (default: uniform)."""
    mapped = (list(layer_map) if layer_map is not None
              else uniform_layer_map(student_layers, teacher_layers))
    if len(mapped) != student_layers or not all(1 <= m <= teacher_layers for m in mapped):
        raise UsageError(f"--layer_map={','.join(map(str, mapped))}: expected "
                         f"{student_layers} teacher layer numbers (one per student layer), "
                         f"each in [1, {teacher_layers}]")
    return [(0, 0)] + list(zip(range(1, student_layers + 1), mapped))


def real_token_mask(features, like):
    """[B, S] floats: 1 on real tokens (all ones when the features carry no mask)."""
    mask = features.get("input_mask")
    if mask is None:
        mask = tf.ones(tf.shape(like)[:2], tf.int32)
    return tf.cast(mask, tf.float32)


def hidden_state_loss(student_states, teacher_states, pairs, mask, initializer_range):
    """Mean over the pairs of the per-element MSE on real tokens between the (projected)
    student state and the teacher state. ``*_states``: embeddings, then every layer.

    When the widths differ the student's state passes a learned linear projection under
    ``distill/`` at the graph root: it trains with the model and never ships."""
    tokens = tf.maximum(tf.reduce_sum(mask), 1.0)
    losses = []
    for student_index, teacher_index in pairs:
        student, target = student_states[student_index], teacher_states[teacher_index]
        width = int(target.shape[-1])
        if int(student.shape[-1]) != width:
            with tf1.variable_scope(PROJECTION_SCOPE, reuse=tf1.AUTO_REUSE):
                student = modeling.dense(student, width, f"hidden_projection_{student_index}",
                                         initializer_range=initializer_range)
        squared = tf.reduce_sum(tf.square(student - target), axis=-1) * mask
        losses.append(tf.reduce_sum(squared) / (tokens * width))
    return tf.add_n(losses) / len(losses)


def attention_map_loss(student_probs, teacher_probs, pairs, mask):
    """Mean over the layer pairs of ‖A_s − A_t‖² per real query row (summed over real keys, so
    the term does not shrink with the sequence length), averaged over rows and heads; maps are
    head-averaged when the head counts differ. ``*_probs``: [B, heads, S, S] per layer."""
    query = mask[:, tf.newaxis, :, tf.newaxis]
    key = mask[:, tf.newaxis, tf.newaxis, :]
    rows = tf.maximum(tf.reduce_sum(mask), 1.0)
    losses = []
    for student_index, teacher_index in pairs:
        if student_index == 0:
            continue  # the embeddings have no attention
        student = student_probs[student_index - 1]
        target = teacher_probs[teacher_index - 1]
        if student.shape[1] != target.shape[1]:
            student = tf.reduce_mean(student, axis=1, keepdims=True)
            target = tf.reduce_mean(target, axis=1, keepdims=True)
        heads = int(student.shape[1])
        squared = tf.reduce_sum(tf.square(student - target) * key * query)
        losses.append(squared / (rows * heads))
    return tf.add_n(losses) / len(losses) if losses else tf.constant(0.0)
