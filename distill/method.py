"""Task distillation from a fine-tuned teacher as a method of the classifier.

The training graph builds the frozen teacher (``bert.teacher``) on the student's batch and adds
to the task loss: the soft-logit loss (Hinton et al.), a hidden-state MSE between each student
layer and its mapped teacher layer, and an attention-map MSE between the same pairs (TinyBERT's
intermediate-layer losses, Jiao et al. 2020). Student layer i (1-based; 0 is the embedding
output) learns from teacher layer m(i) = round(i·L_t/L_s) unless a map is given. When the widths
differ the student's states pass a learned linear projection; its variables live under
``distill/`` at the graph root, train with the model and are never part of the student's model
folder. Evaluation graphs are the student alone.
"""
import dataclasses
import math
from typing import List, Optional, Sequence

import tensorflow as tf

from bert import methods, model_folder, modeling, teacher
from bert.teacher import attention_map_loss, hidden_state_loss, layer_pairs  # noqa: F401
from bert.errors import UsageError

tf1 = tf.compat.v1

DISTILL_SCOPE = teacher.PROJECTION_SCOPE
DEFAULT_TEMPERATURE = 1.0  # TinyBERT's prediction-layer value: a fine-tuned teacher is sharp
DEFAULT_LOGIT_WEIGHT = 1.0
DEFAULT_HIDDEN_WEIGHT = 1.0
DEFAULT_ATTENTION_WEIGHT = 1.0
DEFAULT_TASK_WEIGHT = 1.0
SUMMARY_PREFIX = "distill_"
LAYER_MAP_HELP = ("Teacher layer (1-based) of each student layer, comma separated, e.g. 2,4,6 "
                  "(default: uniform, round(i*L_t/L_s)).")


def load_teacher(teacher_model_dir, flag="teacher_model_dir"):
    """(config, checkpoint prefix) of a teacher's model folder, its checkpoint read whole (a
    damaged one fails now, not mid-training); an InputError naming ``--flag`` otherwise."""
    teacher_folder = model_folder.load(teacher_model_dir, flag, "the teacher's model folder",
                                       need_vocab=False, verify_weights=True)
    return teacher_folder.bert_config, teacher_folder.checkpoint_prefix


def parse_layer_map(text, flag="layer_map"):
    """[2, 4, 6] from "2,4,6"; anything else is a UsageError naming ``--flag``."""
    try:
        return [int(part) for part in text.split(",")]
    except ValueError:
        raise UsageError(f"--{flag}={text}: expected one teacher layer number per student "
                         "layer, comma separated, e.g. 2,4,6") from None


@dataclasses.dataclass
class DistillSettings:
    """The teacher and the weight of each loss term (the task loss included)."""
    teacher_config: modeling.BertConfig
    teacher_checkpoint: str
    temperature: float = DEFAULT_TEMPERATURE
    logit_weight: float = DEFAULT_LOGIT_WEIGHT
    hidden_weight: float = DEFAULT_HIDDEN_WEIGHT
    attention_weight: float = DEFAULT_ATTENTION_WEIGHT
    task_weight: float = DEFAULT_TASK_WEIGHT
    layer_map: Optional[Sequence[int]] = None  # teacher layer (1-based) per student layer

    def validate(self, student_config):
        """Refuse values no run can use, naming the flag; writes nothing."""
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise UsageError(f"--temperature={self.temperature}: must be a number > 0")
        for name in ("logit_weight", "hidden_weight", "attention_weight", "task_weight"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise UsageError(f"--{name}={value}: must be a number >= 0")
        if not (self.logit_weight or self.hidden_weight or self.attention_weight):
            raise UsageError("--logit_weight, --hidden_weight and --attention_weight are all 0: "
                             "nothing would be distilled")
        if self.teacher_config.vocab_size != student_config.vocab_size:
            raise UsageError(f"--teacher_model_dir: the teacher's vocab_size "
                             f"{self.teacher_config.vocab_size} differs from the student's "
                             f"{student_config.vocab_size}; both must read the same token ids")
        self.pairs(student_config)

    def pairs(self, student_config):
        return layer_pairs(student_config.num_hidden_layers,
                           self.teacher_config.num_hidden_layers, self.layer_map)


class DistillHooks(methods.GraphHooks):
    """One graph's loss terms against the graph's shared teacher (training graphs only)."""

    def __init__(self, settings: DistillSettings, bert_config):
        self.settings = settings
        self.bert_config = bert_config
        self.task_loss_weight = settings.task_weight
        self.terms = {}

    def extra_loss(self, graph):
        if not graph.is_training:
            return tf.constant(0.0)
        s = self.settings
        taught = teacher.shared_teacher(graph, s.teacher_config, s.teacher_checkpoint,
                                        flag="teacher_model_dir")
        pairs = s.pairs(self.bert_config)
        model = graph.model
        mask = teacher.real_token_mask(graph.features, model.embedding_output)
        weighted: List[tf.Tensor] = []
        if s.logit_weight:
            self.terms["logit"] = teacher.soft_logit_loss(graph.logits, taught.logits,
                                                          s.temperature, graph.is_regression)
            weighted.append(s.logit_weight * self.terms["logit"])
        if s.hidden_weight:
            self.terms["hidden"] = hidden_state_loss(
                [model.embedding_output] + model.all_encoder_layers, taught.hidden_states,
                pairs, mask, self.bert_config.initializer_range)
            weighted.append(s.hidden_weight * self.terms["hidden"])
        if s.attention_weight:
            self.terms["attention"] = attention_map_loss(model.all_attention_probs,
                                                         taught.attention_probs, pairs, mask)
            weighted.append(s.attention_weight * self.terms["attention"])
        for name, value in self.terms.items():
            tf1.summary.scalar(f"{SUMMARY_PREFIX}{name}_loss", value)
        return tf.add_n(weighted)


class DistillMethod(methods.Method):
    """Soft logits, hidden states and attention maps of a frozen teacher."""
    name = "distill"
    allow_missing = (rf"^{DISTILL_SCOPE}/",)

    def __init__(self, settings: DistillSettings):
        self.settings = settings

    def build(self, bert_config, is_training):
        return DistillHooks(self.settings, bert_config)

    def hparams(self):
        values = dataclasses.asdict(self.settings)
        values.pop("teacher_config")
        values["layer_map"] = ",".join(map(str, values["layer_map"] or [])) or "uniform"
        return values

