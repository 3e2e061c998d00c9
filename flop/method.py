"""FLOP as a method of the classifier (Wang, Wohlwend & Lei, arXiv 1910.04732).

A HardConcrete gate sits between the factors P·Q of every factorized kernel. Training minimises
task loss + λ1·(ŝ − t) + λ2·(ŝ − t)² over the model and the gates' log_alpha while λ1, λ2 ascend
the same Lagrangian term, which forces the expected sparsity ŝ to the target t (warmed up
linearly from 0). Evaluation uses the deterministic gates, i.e. the model remove_mask ships,
and reports its sparsity. Optionally the un-pruned model is distilled into the pruned one.
"""
import dataclasses
import json
import logging
import os
from typing import List, Optional

import tensorflow as tf

from bert import checkpoint, methods, model_folder, modeling, optimization, teacher
from bert.errors import UsageError
from flop.hardconcrete import HardConcrete

tf1 = tf.compat.v1
log = logging.getLogger("flop")

SPARSITY_TOLERANCE = 0.02  # a "best" checkpoint must be this close to the target sparsity
BEST_DIR = "best"
BEST_EVAL_FILE = "best_eval.json"
LAMBDA_NAMES = ("lambda_1", "lambda_2")
# The seed's TensorBoard tags of the multipliers (its graph named them twice).
LAMBDA_TAG_ALIASES = ("lambda_1_1", "lambda_2_1")
# The multipliers' variables live in this scope; remove_mask drops it from compact models.
LAMBDA_SCOPE = "lagrangian"
GATE_VARIABLE = "log_alpha"


@dataclasses.dataclass
class FlopSettings:
    target_sparsity: float
    target_sparsity_warmup: int = 0
    lambda_learning_rate: float = 0.01
    alpha_learning_rate: float = 0.05
    regularization_scale: float = 0.0
    log_alpha_init_mean: float = 0.5
    teacher_checkpoint: Optional[str] = None
    teacher_config: Optional[modeling.BertConfig] = None
    distill_temperature: float = 2.0
    distill_weight: float = 1.0


@dataclasses.dataclass
class GatedKernel:
    """A factorized kernel [in_width, out_width] whose ranks a HardConcrete gate masks."""
    key: str
    gate: HardConcrete
    mask: tf.Tensor
    in_width: int
    out_width: int

    @property
    def params_per_rank(self):
        return self.in_width + self.out_width  # one column of P and one row of Q

    @property
    def gated_params(self):
        return self.params_per_rank * self.gate.num_units


def expected_sparsity(gated_kernels: List[GatedKernel]):
    """ŝ = 1 − Σ (in+out)·E[L0] / Σ (in+out)·rank."""
    total = float(sum(kernel.gated_params for kernel in gated_kernels))
    kept = tf.add_n([kernel.params_per_rank * kernel.gate.l0_norm() for kernel in gated_kernels])
    return 1.0 - kept / total


def mask_sparsity(gated_kernels: List[GatedKernel]):
    """Share of gated parameters whose rank the (current) masks zero."""
    total = float(sum(kernel.gated_params for kernel in gated_kernels))
    kept = tf.add_n([kernel.params_per_rank * tf.cast(tf.math.count_nonzero(kernel.mask),
                                                      tf.float32)
                     for kernel in gated_kernels])
    return 1.0 - kept / total


def target_sparsity_schedule(global_step, target, warmup_steps):
    """t grows linearly from 0 to ``target`` over ``warmup_steps``, then stays."""
    if warmup_steps <= 0:
        return tf.constant(target, tf.float32)
    progress = tf.minimum(1.0, tf.cast(global_step, tf.float32) / float(warmup_steps))
    return target * progress


class FlopHooks(methods.GraphHooks):
    """One graph's gates, multipliers and losses: the gate sits between the factors of every
    factorized kernel (the first stage of the kernel-transform chain)."""
    transform_stage = methods.GATE

    def __init__(self, settings: FlopSettings, bert_config, is_training):
        self.settings = settings
        self.bert_config = bert_config
        self.is_training = is_training
        self.gated_kernels: List[GatedKernel] = []
        self.lambdas = None
        self.lagrangian = None
        self.expected_sparsity = None
        self.target_sparsity = None

    def transform_rank(self, hidden, site):
        gate = HardConcrete(site.rank, site.name, init_mean=self.settings.log_alpha_init_mean)
        mask = gate.mask(self.is_training)
        self.gated_kernels.append(GatedKernel(site.key, gate, mask, site.in_width,
                                              site.out_width))
        return hidden * mask

    def create_variables(self, graph):
        if not self.gated_kernels:
            raise UsageError("the model has no gated kernels: its config's kernel_ranks are "
                             "empty or all 0")
        global_step = tf1.train.get_or_create_global_step()
        with tf1.variable_scope(LAMBDA_SCOPE):
            self.lambdas = [tf1.get_variable(name, [], initializer=tf1.zeros_initializer())
                            for name in LAMBDA_NAMES]
        self.expected_sparsity = expected_sparsity(self.gated_kernels)
        self.target_sparsity = target_sparsity_schedule(
            global_step, self.settings.target_sparsity, self.settings.target_sparsity_warmup)
        gap = self.expected_sparsity - self.target_sparsity
        self.lagrangian = self.lambdas[0] * gap + self.lambdas[1] * tf.square(gap)

    def extra_loss(self, graph):
        settings = self.settings
        l2 = tf.constant(0.0)
        if settings.regularization_scale > 0:
            kernels = [v for v in tf1.trainable_variables()
                       if v.op.name.startswith("bert/") and v.op.name.endswith("/kernel")]
            l2 = settings.regularization_scale * tf.add_n([tf.nn.l2_loss(k) for k in kernels])
        extra = self.lagrangian + l2
        if graph.is_training:
            if settings.teacher_checkpoint:
                taught = teacher.shared_teacher(graph, settings.teacher_config,
                                                settings.teacher_checkpoint)
                distill = teacher.soft_logit_loss(graph.logits, taught.logits,
                                                  settings.distill_temperature,
                                                  graph.is_regression)
                tf1.summary.scalar("distillation_loss", distill)
                extra += settings.distill_weight * distill
            for names in (LAMBDA_NAMES, LAMBDA_TAG_ALIASES):
                for name, value in zip(names, self.lambdas):
                    tf1.summary.scalar(name, value)
            tf1.summary.scalar("expected_sparsity", self.expected_sparsity)
            tf1.summary.scalar("target_sparsity", self.target_sparsity)
            tf1.summary.scalar("l2_regularization_loss", l2)
        return extra

    def param_groups(self, graph, schedule):
        settings = self.settings
        alphas = [kernel.gate.log_alpha for kernel in self.gated_kernels]
        # The gates and multipliers keep their full rate to the end: the constraint must still
        # be enforced when the model's learning rate has decayed.
        groups = [
            optimization.ParamGroup("alpha", alphas, settings.alpha_learning_rate,
                                    schedule.num_train_steps, weight_decay=0.0, clip_norm=None,
                                    decay_to_zero=False),
            optimization.ParamGroup("lambda", self.lambdas, settings.lambda_learning_rate,
                                    schedule.num_train_steps, weight_decay=0.0, clip_norm=None,
                                    decay_to_zero=False, ascent=True)]
        return groups, {"lambda": self.lagrangian}

    def eval_metric_ops(self, graph):
        return {"deterministic_sparsity": tf1.metrics.mean(mask_sparsity(self.gated_kernels)),
                "expected_sparsity": tf1.metrics.mean(self.expected_sparsity)}


class FlopMethod(methods.Method):
    """Gated factorized kernels, the Lagrangian sparsity constraint, two optimizer groups."""
    name = "flop"
    allow_missing = (rf"/{GATE_VARIABLE}$", rf"^{LAMBDA_SCOPE}/")

    def __init__(self, settings: FlopSettings):
        self.settings = settings

    def build(self, bert_config, is_training):
        return FlopHooks(self.settings, bert_config, is_training)

    def hparams(self):
        values = dataclasses.asdict(self.settings)
        values.pop("teacher_config")
        return values


class BestSparseExporter(tf.estimator.Exporter):
    """Keeps in ``<run>/best`` the evaluated checkpoint with the best task metric among those
    whose deterministic sparsity is within SPARSITY_TOLERANCE of the target."""

    def __init__(self, run_dir, bert_config, vocab_file, metric, target_sparsity):
        self.best_dir = os.path.join(run_dir, BEST_DIR)
        self.bert_config = bert_config
        self.vocab_file = vocab_file
        self.metric = metric
        self.target_sparsity = target_sparsity

    @property
    def name(self):
        return BEST_DIR

    def best_score(self):
        path = os.path.join(self.best_dir, BEST_EVAL_FILE)
        if not os.path.isfile(path):
            return None
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)[self.metric]

    def export(self, estimator, export_path, checkpoint_path, eval_result,
               is_the_final_export):
        sparsity = float(eval_result["deterministic_sparsity"])
        score = float(eval_result[self.metric])
        if abs(sparsity - self.target_sparsity) > SPARSITY_TOLERANCE:
            log.info("not kept as best: sparsity %.4f is not within %.2f of target %.4f",
                     sparsity, SPARSITY_TOLERANCE, self.target_sparsity)
            return None
        best = self.best_score()
        if best is not None and score <= best:
            return None
        summary = {key: float(value) for key, value in eval_result.items()}
        summary["checkpoint"] = checkpoint_path
        model_folder.write_model_folder(
            self.best_dir, self.bert_config, self.vocab_file,
            checkpoint.read_checkpoint(checkpoint_path), step="flop_prune",
            source=checkpoint_path,
            extra_files={BEST_EVAL_FILE: json.dumps(summary, indent=2, sort_keys=True) + "\n"})
        log.info("new best (%s %.4f at sparsity %.4f): %s", self.metric, score, sparsity,
                 self.best_dir)
        return self.best_dir
