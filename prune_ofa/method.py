"""Prune OFA's pruning and distillation as a method of the hook contract (``bert.methods``).

Every encoder linear kernel (not the pooler, not the classifier) passes through the MASK stage
of the kernel chain. The pattern is the weights' own zeros: the forward pass multiplies each
kernel by its non-zero pattern (so a pruned weight gets no gradient) and, after each optimizer
update, the kernel is multiplied by the pattern it had before the update (so Adam's momentum
and weight decay cannot revive it). A zero therefore stays zero — the pattern lock — and a
checkpoint *is* its masks: a killed run resumes with exactly the masks it had. At the
schedule's update steps the round(s_t·n) smallest weights (or blocks) of each kernel are zeroed
(``prune_ofa.masks``, ``prune_ofa.schedule``).

Distillation goes through the graph's shared teacher (``bert.teacher``): (1 − w)·hard loss +
w·KL of the logits at temperature T (×T²), and optionally a hidden-state term; a pre-training
graph has no logits, so there only the hidden states are matched.

A model folder this method wrote records each kernel's sparsity in its config
(``prune_ofa``); ``from_config`` then locks that pattern in every later classifier run on the
folder (fine-tuning, distillation, token reduction), whichever method leads it.
"""
import dataclasses
import re
from typing import List, Optional

import numpy as np
import tensorflow as tf

from bert import methods, modeling, teacher
from bert.errors import UsageError
from prune_ofa import masks
from prune_ofa.schedule import UNSTRUCTURED, PruningSchedule

tf1 = tf.compat.v1

CONFIG_KEY = "prune_ofa"
DEFAULT_TEMPERATURE = 2.0
DEFAULT_DISTILL_WEIGHT = 0.5  # the recipe's 0.5·hard + 0.5·soft
SUMMARY_SCOPE = "sparsity"
ENCODER_KERNEL = re.compile(r"^bert/encoder/(layer_\d+/.+)/kernel$")


@dataclasses.dataclass
class PruneOfaSettings:
    schedule: PruningSchedule = PruningSchedule()
    teacher_checkpoint: Optional[str] = None
    teacher_config: Optional[modeling.BertConfig] = None
    distill_temperature: float = DEFAULT_TEMPERATURE
    distill_weight: float = DEFAULT_DISTILL_WEIGHT  # of the soft term; the hard one gets 1 − it
    hidden_weight: float = 0.0

    def validate(self):
        self.schedule.validate()
        if not self.distill_temperature > 0:
            raise UsageError(f"--distill_temperature={self.distill_temperature}: must be > 0")
        if not 0.0 <= self.distill_weight <= 1.0:
            raise UsageError(f"--distill_weight={self.distill_weight}: must be in [0, 1]")
        if not self.hidden_weight >= 0:
            raise UsageError(f"--hidden_weight={self.hidden_weight}: must be >= 0")
        if self.teacher_checkpoint and not (self.distill_weight or self.hidden_weight):
            raise UsageError("--distill_weight and --hidden_weight are 0 with a teacher: the "
                             "teacher would be ignored")

    @property
    def distils(self):
        return bool(self.teacher_checkpoint)


@dataclasses.dataclass
class LockedKernel:
    """A kernel variable and the non-zero pattern its forward pass used this step."""
    variable: tf.Variable
    pattern: tf.Tensor
    layer_index: int


class PruneOfaHooks(methods.GraphHooks):
    """One graph's locked kernels, mask updates, distillation and sparsity summaries."""
    transform_stage = methods.MASK

    def __init__(self, settings: PruneOfaSettings, bert_config, is_training):
        self.settings = settings
        self.bert_config = bert_config
        self.is_training = is_training
        self.kernels: List[LockedKernel] = []
        self.sparsities = []  # (layer index, kernel size, its sparsity), every graph
        if is_training and settings.distils:
            self.task_loss_weight = 1.0 - settings.distill_weight

    def transform_kernel(self, kernel, site, part):
        if site.layer_index is None:
            return kernel
        if not isinstance(kernel, tf.Variable):
            raise UsageError(f"prune_ofa must see the kernel variable of {site.key}: list it "
                             "before any other method that changes kernels at the mask stage")
        size = int(np.prod(kernel.shape.as_list()))
        if self.settings.schedule.prunes and not masks.fits_blocks(kernel.shape.as_list(),
                                                                   self.settings.schedule.block):
            raise UsageError(f"--block={self.settings.schedule.block}: kernel {site.key} of shape "
                             f"{kernel.shape.as_list()} does not split into such blocks")
        self.sparsities.append((site.layer_index, size, masks.sparsity(kernel)))
        if not self.is_training:
            return kernel
        value = tf.identity(kernel)
        pattern = masks.nonzero_pattern(value)
        self.kernels.append(LockedKernel(kernel, pattern, site.layer_index))
        return value * pattern

    def extra_loss(self, graph):
        terms = []
        s = self.settings
        if self.is_training and s.distils:
            taught = teacher.shared_teacher(graph, s.teacher_config, s.teacher_checkpoint)
            if graph.logits is not None and taught.logits is not None and s.distill_weight:
                soft = teacher.soft_logit_loss(graph.logits, taught.logits,
                                               s.distill_temperature, graph.is_regression)
                tf1.summary.scalar("distill_logit_loss", soft)
                terms.append(s.distill_weight * soft)
            if s.hidden_weight:
                model = graph.model
                layers = self.bert_config.num_hidden_layers
                hidden = teacher.hidden_state_loss(
                    [model.embedding_output] + model.all_encoder_layers, taught.hidden_states,
                    teacher.layer_pairs(layers, s.teacher_config.num_hidden_layers),
                    teacher.real_token_mask(graph.features, model.embedding_output),
                    self.bert_config.initializer_range)
                tf1.summary.scalar("distill_hidden_loss", hidden)
                terms.append(s.hidden_weight * hidden)
        if self.is_training:
            self._sparsity_summaries()
        return tf.add_n(terms) if terms else tf.constant(0.0)

    def _sparsity_summaries(self):
        for layer in sorted({layer for layer, _, _ in self.sparsities}):
            tf1.summary.scalar(f"{SUMMARY_SCOPE}/layer_{layer}", weighted_sparsity(
                [(size, value) for index, size, value in self.sparsities if index == layer]))
        tf1.summary.scalar(f"{SUMMARY_SCOPE}/encoder", self.encoder_sparsity())
        step = tf1.train.get_or_create_global_step()
        tf1.summary.scalar(f"{SUMMARY_SCOPE}/target",
                           self.settings.schedule.target_tensor(step))

    def encoder_sparsity(self):
        return weighted_sparsity([(size, value) for _, size, value in self.sparsities])

    def after_update_ops(self, graph):
        """Lock (every kernel times its pre-update pattern), then prune at the update steps."""
        if not self.kernels:
            return []
        schedule = self.settings.schedule
        step = tf1.train.get_global_step()
        target = schedule.target_tensor(step)
        update = schedule.update_step_tensor(step) if schedule.prunes else tf.constant(False)
        ops = []
        for kernel in self.kernels:
            locked = tf.identity(kernel.variable) * kernel.pattern
            pruned = tf.cond(update,
                             lambda locked=locked: locked * masks.magnitude_mask(
                                 locked, target, schedule.block),
                             lambda locked=locked: locked)
            ops.append(kernel.variable.assign(pruned, read_value=False))
        return ops

    def eval_metric_ops(self, graph):
        return {"encoder_sparsity": tf1.metrics.mean(self.encoder_sparsity())} \
            if self.sparsities else {}


def weighted_sparsity(sized):
    """Share of zeros over several kernels: [(size, sparsity tensor)]."""
    total = float(sum(size for size, _ in sized))
    return tf.add_n([value * (size / total) for size, value in sized])


class PruneOfaMethod(methods.Method):
    """Gradual magnitude pruning, the pattern lock and distillation."""
    name = "prune_ofa"

    def __init__(self, settings: PruneOfaSettings = PruneOfaSettings()):
        self.settings = settings

    def build(self, bert_config, is_training):
        return PruneOfaHooks(self.settings, bert_config, is_training)

    def hparams(self):
        values = dataclasses.asdict(self.settings)
        values.pop("teacher_config")
        values.update(values.pop("schedule"))
        return values


def kernel_sparsity(values):
    """{kernel key: share of zeros} of the encoder kernels in a checkpoint's ``values``."""
    found = {}
    for name, value in sorted(values.items()):
        match = ENCODER_KERNEL.match(name)
        if match:
            found[match.group(1)] = float(np.mean(np.asarray(value) == 0.0))
    return found


def overall_sparsity(values):
    sizes = {ENCODER_KERNEL.match(name).group(1): np.asarray(value).size
             for name, value in values.items() if ENCODER_KERNEL.match(name)}
    shares = kernel_sparsity(values)
    total = sum(sizes.values())
    return sum(shares[key] * sizes[key] for key in sizes) / total if total else 0.0


def mark_config(config, values, block=UNSTRUCTURED):
    """Record in ``config`` each encoder kernel's sparsity, measured from ``values``."""
    config.extra[CONFIG_KEY] = {"block": block, "sparsity": round(overall_sparsity(values), 6),
                                "kernel_sparsity": {key: round(share, 6) for key, share
                                                    in kernel_sparsity(values).items()}}
    return config


def from_config(bert_config):
    """The pattern lock for a sparse model folder (its config says it is one)."""
    if not bert_config.extra.get(CONFIG_KEY):
        return None
    return PruneOfaMethod()
