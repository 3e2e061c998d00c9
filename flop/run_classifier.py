"""FLOP pruning of a factorized BERT on a GLUE task (Wang, Wohlwend & Lei, arXiv 1910.04732).

    python -m flop.run_classifier --task_name=MRPC --do_train --do_eval \\
        --data_dir=glue/MRPC --vocab_file=models/factorized/vocab.txt \\
        --bert_config_file=models/factorized/bert_config.json \\
        --init_checkpoint=models/factorized --learning_rate=0 --target_sparsity=0.5 \\
        --target_sparsity_warmup=1000 --output_dir=prune_outputs/MRPC

A HardConcrete gate sits between the factors P·Q of every factorized kernel. Training minimises
task loss + λ1·(ŝ − t) + λ2·(ŝ − t)² over the model and the gates' log_alpha while λ1, λ2 ascend
the same Lagrangian term, which forces the expected sparsity ŝ to the target t (warmed up
linearly from 0). Evaluation uses the deterministic gates, i.e. the model remove_mask will ship,
and reports its sparsity; only checkpoints within SPARSITY_TOLERANCE of the target can become
``<run>/best``. Every run gets a timestamped folder in --output_dir; --resume continues the
newest one.
"""
import dataclasses
import json
import logging
import os
import re
import shutil
import time
from typing import List, Optional

import tensorflow as tf
from absl import app, flags

from bert import checkpoint, glue, modeling, optimization
from bert import run_classifier as base
from flop import factorize
from flop.hardconcrete import HardConcrete

tf1 = tf.compat.v1
FLAGS = flags.FLAGS
log = logging.getLogger("flop")

RUN_DIR_FORMAT = "%Y-%m-%d-%H:%M:%S"  # the seed's run folder names, e.g. 2020-06-02-12:15:59
RUN_DIR_PATTERN = re.compile(r"^\d{4}-\d{2}-\d{2}-\d{2}:\d{2}:\d{2}$")
SPARSITY_TOLERANCE = 0.02  # a "best" checkpoint must be this close to the target sparsity
BEST_DIR = "best"
BEST_EVAL_FILE = "best_eval.json"
TEACHER_SCOPE = "teacher"
LAMBDA_NAMES = ("lambda_1", "lambda_2")
# The multipliers' variables live in this scope so that their summaries can be tagged lambda_1.
LAMBDA_SCOPE = "lagrangian"
GATE_VARIABLE = "log_alpha"

flags.DEFINE_float("target_sparsity", None, "Share of gated parameters to prune, in [0, 1).")
flags.DEFINE_integer("target_sparsity_warmup", 0,
                     "Steps over which the target grows linearly from 0 to --target_sparsity.")
flags.DEFINE_integer("learning_rate_warmup", None, "Warm-up steps of the model learning rate "
                     "(default: --warmup_proportion of the training steps).")
flags.DEFINE_float("lambda_learning_rate", 0.01, "Learning rate of the Lagrange multipliers.")
flags.DEFINE_float("alpha_learning_rate", 0.05, "Learning rate of the gates' log_alpha.")
flags.DEFINE_float("regularization_scale", 0.0, "Weight of the L2 penalty on dense kernels.")
flags.DEFINE_float("hidden_dropout_prob", None, "Override the config's hidden dropout.")
flags.DEFINE_float("attention_probs_dropout_prob", None,
                   "Override the config's attention dropout.")
flags.DEFINE_float("log_alpha_init_mean", 0.5,
                   "Initial drop probability of every rank (log_alpha = log((1-p)/p)).")
flags.DEFINE_string("teacher_checkpoint", None,
                    "Un-pruned fine-tuned model distilled into the pruned one (optional).")
flags.DEFINE_string("teacher_bert_config_file", None, "Teacher's config (default: "
                    "bert_config.json beside the teacher checkpoint, else this model's "
                    "architecture without kernel_ranks).")
flags.DEFINE_float("distill_temperature", 2.0, "Softmax temperature of the distillation loss.")
flags.DEFINE_float("distill_weight", 1.0, "Weight of the distillation loss (with a teacher).")
flags.DEFINE_bool("resume", False, "Continue the newest timestamped run in --output_dir.")
flags.DEFINE_string("resume_dir", None, "Continue this run folder.")


@dataclasses.dataclass
class FlopSettings:
    target_sparsity: float
    target_sparsity_warmup: int = 0
    learning_rate: float = 0.0
    learning_rate_warmup: Optional[int] = None
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


def distillation_loss(student_logits, teacher_logits, temperature, is_regression):
    """KL(teacher ‖ student) of the temperature-softened outputs, scaled by T² (Hinton et al.)
    so its gradients keep their size across temperatures; MSE of the scores for regression."""
    if is_regression:
        return tf.reduce_mean(tf.square(student_logits - teacher_logits))
    teacher_log_probs = tf.nn.log_softmax(teacher_logits / temperature)
    student_log_probs = tf.nn.log_softmax(student_logits / temperature)
    kl = tf.reduce_sum(tf.exp(teacher_log_probs) * (teacher_log_probs - student_log_probs),
                       axis=-1)
    return temperature ** 2 * tf.reduce_mean(kl)


def _frozen_local_getter(getter, *args, **kwargs):
    """Teacher variables: never trained, and kept out of the student's checkpoints (LOCAL
    variables are re-initialised from the teacher checkpoint in every session)."""
    kwargs["trainable"] = False
    kwargs["collections"] = [tf1.GraphKeys.LOCAL_VARIABLES]
    return getter(*args, **kwargs)


def load_teacher_variables(teacher_checkpoint, variables):
    """Map ``teacher/<name>`` to ``<name>`` of the teacher checkpoint, strictly."""
    prefix = checkpoint.resolve_checkpoint(teacher_checkpoint, flag="teacher_checkpoint")
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
            f"--teacher_checkpoint={teacher_checkpoint} does not match the teacher config: "
            + "; ".join(problems))
    tf1.train.init_from_checkpoint(prefix, assignment)


class FlopMethod(base.Method):
    """Gated factorized kernels, the Lagrangian sparsity constraint and three optimizer groups."""

    allow_missing = base.HEAD_VARIABLES + (rf"/{GATE_VARIABLE}$", rf"^{LAMBDA_SCOPE}/")

    def __init__(self, settings: FlopSettings, is_regression=False):
        super().__init__(settings.learning_rate)
        self.settings = settings
        self.is_regression = is_regression
        self.gated_kernels: List[GatedKernel] = []

    def dense_factory(self, bert_config, is_training):
        ranks = bert_config.extra.get("kernel_ranks") or {}
        self.gated_kernels = []  # one list per graph (train and eval graphs are separate)

        def factory(inputs, units, name, layer_index, activation=None):
            key = modeling.kernel_key(name)
            if key not in ranks:
                return modeling.dense(inputs, units, name, activation,
                                      bert_config.initializer_range)
            in_width = int(inputs.shape[-1])

            def rank_gate(hidden, gate_name):
                gate = HardConcrete(ranks[key], gate_name,
                                    init_mean=self.settings.log_alpha_init_mean)
                mask = gate.mask(is_training)
                self.gated_kernels.append(GatedKernel(key, gate, mask, in_width, units))
                return hidden * mask

            return modeling.low_rank_dense(inputs, units, name, ranks[key], activation,
                                           rank_gate=rank_gate,
                                           initializer_range=bert_config.initializer_range)

        return factory

    def extra_loss(self, model, logits, features, is_training):
        if not self.gated_kernels:
            raise base.UsageError("the model has no gated kernels: its config's kernel_ranks "
                                  "are empty or all 0")
        settings = self.settings
        global_step = tf1.train.get_or_create_global_step()
        with tf1.variable_scope(LAMBDA_SCOPE):
            self.lambdas = [tf1.get_variable(name, [], initializer=tf1.zeros_initializer())
                            for name in LAMBDA_NAMES]
        self.expected_sparsity = expected_sparsity(self.gated_kernels)
        target = target_sparsity_schedule(global_step, settings.target_sparsity,
                                          settings.target_sparsity_warmup)
        gap = self.expected_sparsity - target
        self.lagrangian = self.lambdas[0] * gap + self.lambdas[1] * tf.square(gap)
        l2 = tf.constant(0.0)
        if settings.regularization_scale > 0:
            kernels = [v for v in tf1.trainable_variables()
                       if v.op.name.startswith("bert/") and v.op.name.endswith("/kernel")]
            l2 = settings.regularization_scale * tf.add_n([tf.nn.l2_loss(k) for k in kernels])
        extra = self.lagrangian + l2
        if is_training:
            if settings.teacher_checkpoint:
                distill = distillation_loss(logits, self._teacher_logits(features, logits),
                                            settings.distill_temperature, self.is_regression)
                tf1.summary.scalar("distillation_loss", distill)
                extra += settings.distill_weight * distill
            for name, value in zip(LAMBDA_NAMES, self.lambdas):
                tf1.summary.scalar(name, value)
            tf1.summary.scalar("expected_sparsity", self.expected_sparsity)
            tf1.summary.scalar("target_sparsity", target)
            tf1.summary.scalar("l2_regularization_loss", l2)
        return extra

    def _teacher_logits(self, features, student_logits):
        with tf1.variable_scope(TEACHER_SCOPE, custom_getter=_frozen_local_getter):
            teacher = modeling.BertModel(self.settings.teacher_config, False,
                                         features["input_ids"], features["input_mask"],
                                         features["segment_ids"])
            logits = base.classifier_head(teacher.pooled_output, int(student_logits.shape[-1]),
                                          False)
        load_teacher_variables(self.settings.teacher_checkpoint,
                               [v for v in tf1.local_variables()
                                if v.op.name.startswith(TEACHER_SCOPE + "/")])
        return tf.stop_gradient(logits)

    def train_op(self, task_loss, total_loss, num_train_steps, num_warmup_steps):
        settings = self.settings
        alphas = [kernel.gate.log_alpha for kernel in self.gated_kernels]
        special = {v.op.name for v in alphas + self.lambdas}
        model_variables = ([v for v in tf1.trainable_variables() if v.op.name not in special]
                           if settings.learning_rate > 0 else [])
        model_warmup = (num_warmup_steps if settings.learning_rate_warmup is None
                        else settings.learning_rate_warmup)
        groups = [
            optimization.ParamGroup("model", model_variables, settings.learning_rate,
                                    num_train_steps, model_warmup),
            # The gates and multipliers keep their full rate to the end: the constraint must
            # still be enforced when the model's learning rate has decayed.
            optimization.ParamGroup("alpha", alphas, settings.alpha_learning_rate,
                                    num_train_steps, weight_decay=0.0, clip_norm=None,
                                    decay_to_zero=False),
            optimization.ParamGroup("lambda", self.lambdas, settings.lambda_learning_rate,
                                    num_train_steps, weight_decay=0.0, clip_norm=None,
                                    decay_to_zero=False, ascent=True),
        ]
        train_op, rates = optimization.create_train_op(
            total_loss, groups, losses_by_group={"lambda": self.lagrangian})
        for group in ("model", "alpha", "lambda"):
            tf1.summary.scalar(f"{group}_lr", rates.get(group, tf.constant(0.0)))
        tf1.summary.scalar("loss", total_loss)
        tf1.summary.scalar("task_loss", task_loss)
        return train_op

    def eval_metric_ops(self, model, logits, features):
        return {"deterministic_sparsity": tf1.metrics.mean(mask_sparsity(self.gated_kernels)),
                "expected_sparsity": tf1.metrics.mean(self.expected_sparsity)}

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
        checkpoint.write_model_folder(
            self.best_dir, self.bert_config, self.vocab_file,
            checkpoint.read_checkpoint(checkpoint_path), step="flop_prune",
            source=checkpoint_path,
            extra_files={BEST_EVAL_FILE: json.dumps(summary, indent=2, sort_keys=True) + "\n"})
        log.info("new best (%s %.4f at sparsity %.4f): %s", self.metric, score, sparsity,
                 self.best_dir)
        return self.best_dir


# Flags and run folders ----------------------------------------------------------------------
def _require(condition, message):
    if not condition:
        raise base.UsageError(message)


def validate_flop_flags():
    """Every FLOP flag, with a message naming it."""
    target = FLAGS.target_sparsity
    _require(target is not None, "--target_sparsity is required")
    _require(0.0 <= target < 1.0, f"--target_sparsity={target}: must be in [0, 1)")
    for name in ("target_sparsity_warmup", "learning_rate_warmup"):
        value = FLAGS[name].value
        _require(value is None or value >= 0, f"--{name}={value}: must be >= 0")
    for name in ("lambda_learning_rate", "alpha_learning_rate"):
        value = FLAGS[name].value
        _require(value > 0, f"--{name}={value}: must be > 0 (else the sparsity target is "
                            "never enforced)")
    _require(FLAGS.regularization_scale >= 0,
             f"--regularization_scale={FLAGS.regularization_scale}: must be >= 0")
    for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
        value = FLAGS[name].value
        _require(value is None or 0.0 <= value < 1.0, f"--{name}={value}: must be in [0, 1)")
    _require(0.0 < FLAGS.log_alpha_init_mean < 1.0,
             f"--log_alpha_init_mean={FLAGS.log_alpha_init_mean}: must be in (0, 1)")
    _require(FLAGS.distill_temperature > 0,
             f"--distill_temperature={FLAGS.distill_temperature}: must be > 0")
    _require(FLAGS.distill_weight >= 0, f"--distill_weight={FLAGS.distill_weight}: must be >= 0")
    if FLAGS.teacher_checkpoint:
        _require(FLAGS.distill_weight > 0, "--distill_weight=0 with --teacher_checkpoint: "
                                           "the teacher would be ignored")
        try:
            checkpoint.resolve_checkpoint(FLAGS.teacher_checkpoint, flag="teacher_checkpoint")
        except FileNotFoundError as error:
            raise base.UsageError(str(error)) from None
        if FLAGS.teacher_bert_config_file:
            factorize.require_file(FLAGS.teacher_bert_config_file, "teacher_bert_config_file",
                                   "the teacher's bert_config.json")
    elif FLAGS.teacher_bert_config_file:
        raise base.UsageError("--teacher_bert_config_file needs --teacher_checkpoint")
    _require(not (FLAGS.resume and FLAGS.resume_dir), "give --resume or --resume_dir, not both")
    if FLAGS.resume_dir:
        _require(os.path.isdir(FLAGS.resume_dir),
                 f"--resume_dir={FLAGS.resume_dir}: folder not found")


def check_factorized(bert_config):
    """The model must come from factorize.sh: its checkpoint has factors, its config ranks."""
    if FLAGS.init_checkpoint:
        stored = checkpoint.list_checkpoint(FLAGS.init_checkpoint)
        _require(any(name.endswith(factorize.FACTOR_SUFFIXES[0]) for name in stored),
                 f"--init_checkpoint={FLAGS.init_checkpoint}: checkpoint is not factorized "
                 "(no _p/_q kernels); run factorize.sh on it first")
    ranks = bert_config.extra.get("kernel_ranks")
    _require(isinstance(ranks, dict) and ranks,
             f"--bert_config_file={FLAGS.bert_config_file}: config is not factorized (no "
             "kernel_ranks); use the bert_config.json written by factorize.sh")
    if FLAGS.init_checkpoint:
        missing = [name for key, rank in ranks.items() if rank > 0
                   for name in factorize.factor_names(key) if name not in stored]
        _require(not missing, f"--init_checkpoint={FLAGS.init_checkpoint} does not match "
                              f"--bert_config_file={FLAGS.bert_config_file}: no {missing[:1]}")


def teacher_config(student_config):
    path = FLAGS.teacher_bert_config_file
    if not path:
        folder = os.path.dirname(checkpoint.resolve_checkpoint(FLAGS.teacher_checkpoint,
                                                               flag="teacher_checkpoint"))
        path = os.path.join(folder, "bert_config.json")
        if not os.path.isfile(path):
            config = student_config.copy()
            for key in ("kernel_ranks", "factorized"):
                config.extra.pop(key, None)
            return config
    return modeling.BertConfig.from_json_file(path)


def newest_run_dir(output_dir):
    runs = sorted(name for name in (os.listdir(output_dir) if os.path.isdir(output_dir) else [])
                  if RUN_DIR_PATTERN.match(name) and os.path.isdir(os.path.join(output_dir, name)))
    _require(runs, f"--resume: {output_dir} has no timestamped run folder to resume")
    return os.path.join(output_dir, runs[-1])


def select_run_dir():
    if FLAGS.resume_dir:
        return FLAGS.resume_dir
    if FLAGS.resume:
        return newest_run_dir(FLAGS.output_dir)
    run_dir = os.path.join(FLAGS.output_dir, time.strftime(RUN_DIR_FORMAT))
    os.makedirs(run_dir)
    return run_dir


def run_config(bert_config):
    """The source config with the dropout overrides: what this run trains and ships."""
    config = bert_config.copy()
    for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
        if FLAGS[name].value is not None:
            setattr(config, name, FLAGS[name].value)
    return config


def copy_atomic(source, destination):
    """The run folder holds config + vocab beside its checkpoints, so remove_mask needs no more."""
    temp = f"{destination}.tmp-{os.getpid()}"
    shutil.copyfile(source, temp)
    os.replace(temp, destination)


def settings_from_flags(student_config):
    return FlopSettings(
        target_sparsity=FLAGS.target_sparsity,
        target_sparsity_warmup=FLAGS.target_sparsity_warmup,
        learning_rate=FLAGS.learning_rate,
        learning_rate_warmup=FLAGS.learning_rate_warmup,
        lambda_learning_rate=FLAGS.lambda_learning_rate,
        alpha_learning_rate=FLAGS.alpha_learning_rate,
        regularization_scale=FLAGS.regularization_scale,
        log_alpha_init_mean=FLAGS.log_alpha_init_mean,
        teacher_checkpoint=FLAGS.teacher_checkpoint,
        teacher_config=teacher_config(student_config) if FLAGS.teacher_checkpoint else None,
        distill_temperature=FLAGS.distill_temperature,
        distill_weight=FLAGS.distill_weight)


def run_pruning():
    _require(FLAGS.bert_config_file and os.path.isfile(FLAGS.bert_config_file),
             f"--bert_config_file={FLAGS.bert_config_file}: file not found")
    source_config = modeling.BertConfig.from_json_file(FLAGS.bert_config_file)
    base.validate_flags(source_config)
    validate_flop_flags()
    check_factorized(source_config)
    config = run_config(source_config)
    settings = settings_from_flags(config)
    task_name = glue.canonical_task_name(FLAGS.task_name)
    method = FlopMethod(settings, glue.get_processor(task_name).is_regression)

    run_dir = select_run_dir()
    log.info("run folder: %s", run_dir)
    run_config_file = os.path.join(run_dir, "bert_config.json")
    config.to_json_file(run_config_file)
    copy_atomic(FLAGS.vocab_file, os.path.join(run_dir, os.path.basename(FLAGS.vocab_file)))
    FLAGS.bert_config_file = run_config_file  # run_classifier.run builds the model from FLAGS
    exporter = BestSparseExporter(run_dir, config, FLAGS.vocab_file,
                                  glue.get_processor(task_name).primary_metric,
                                  settings.target_sparsity)
    return base.run(method, output_dir=run_dir, evaluate_every_checkpoint=True,
                    exporters=[exporter])


def main(_):
    base.configure_logging()
    base.main_with_errors(run_pruning, "flop.run_classifier")


if __name__ == "__main__":
    app.run(main)
