"""A frozen fine-tuned model built beside the student in the same graph, for distillation.

Several methods distil from the fine-tuned model (FLOP optionally, TR-BERT's joint training,
the distill package always). The teacher lives under the ``teacher/`` scope with the variable
names of its own checkpoint below it; its variables are LOCAL and untrainable, so they never
train and never land in the student's checkpoints, and are re-read from the teacher checkpoint
in every session.
"""
import dataclasses
from typing import List

import tensorflow as tf

from bert import checkpoint, modeling
from bert.classifier import classifier_head

tf1 = tf.compat.v1

TEACHER_SCOPE = "teacher"


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
                  flag="teacher_checkpoint", head=True) -> TeacherOutputs:
    """The frozen teacher (BERT + Google's classifier head) on ``features``.

    ``head=False`` builds the encoder only (pre-training distillation has no task head).
    """
    with tf1.variable_scope(TEACHER_SCOPE, custom_getter=_frozen_local_getter):
        model = modeling.BertModel(teacher_config, False, features["input_ids"],
                                   features.get("input_mask"), features.get("segment_ids"))
        logits = None
        if head:
            logits = tf.stop_gradient(classifier_head(model.pooled_output, num_outputs, False))
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
