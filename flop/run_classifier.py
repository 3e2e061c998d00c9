"""FLOP pruning of a factorized BERT on a GLUE task: Google's flags plus the FLOP seed's.

    python ./flop/run_classifier.py --task_name=MRPC --do_train=true --do_eval=true \\
        --data_dir=glue/MRPC --vocab_file=models/minilm_f/vocab.txt \\
        --bert_config_file=models/minilm_f/bert_config.json \\
        --init_checkpoint=models/minilm_f/bert_model_f.ckpt --learning_rate=0 \\
        --target_sparsity=0.5 --target_sparsity_warmup=1000 --output_dir=prune_outputs/minilm_f

Every run gets a timestamped folder in --output_dir (the seed's ``2020-06-02-12:15:59``) holding
its checkpoints, TensorBoard events, config and vocab; --resume continues the newest one.
Checkpoints are evaluated as they are written, and only those within SPARSITY_TOLERANCE of the
target can become ``<run>/best`` (what remove_mask.py takes).
"""
import os
import re
import time

from absl import flags

from bert import checkpoint, cli, modeling
from bert import run_classifier as google_flags
from bert.classifier import Classifier
from bert.errors import UsageError
from flop import factorize
from flop.method import BestSparseExporter, FlopMethod, FlopSettings

FLAGS = flags.FLAGS
PROGRAM = "flop.run_classifier"
RUN_DIR_FORMAT = "%Y-%m-%d-%H:%M:%S"  # the seed's run folder names, e.g. 2020-06-02-12:15:59
RUN_DIR_PATTERN = re.compile(r"^\d{4}-\d{2}-\d{2}-\d{2}:\d{2}:\d{2}$")


def flop_default(name):
    """A flag's default: the FlopSettings field's."""
    return cli.field_default(FlopSettings, name)


def define_flags():
    google_flags.define_flags()
    define_flop_flags()


def define_flop_flags():
    """The FLOP seed's own flags (shared with flop.run_squad)."""
    flags.DEFINE_float("target_sparsity", None, "Share of gated parameters to prune, in [0, 1).")
    flags.DEFINE_integer("target_sparsity_warmup", flop_default("target_sparsity_warmup"),
                         "Steps over which the target grows linearly from 0 to the target.")
    flags.DEFINE_integer("learning_rate_warmup", None, "Warm-up steps of the model learning "
                         "rate (default: --warmup_proportion of the training steps).")
    flags.DEFINE_float("lambda_learning_rate", flop_default("lambda_learning_rate"),
                       "Learning rate of the Lagrange multipliers.")
    flags.DEFINE_float("alpha_learning_rate", flop_default("alpha_learning_rate"),
                       "Learning rate of the gates' log_alpha.")
    flags.DEFINE_float("regularization_scale", flop_default("regularization_scale"),
                       "Weight of the L2 penalty on dense kernels.")
    flags.DEFINE_float("hidden_dropout_prob", None, "Override the config's hidden dropout.")
    flags.DEFINE_float("attention_probs_dropout_prob", None,
                       "Override the config's attention dropout.")
    flags.DEFINE_float("log_alpha_init_mean", flop_default("log_alpha_init_mean"),
                       "Initial drop probability of every rank (log_alpha = log((1-p)/p)).")
    flags.DEFINE_string("teacher_checkpoint", flop_default("teacher_checkpoint"),
                        "Un-pruned fine-tuned model distilled into the pruned one (optional).")
    flags.DEFINE_string("teacher_bert_config_file", None, "Teacher's config (default: "
                        "bert_config.json beside the teacher checkpoint, else this model's "
                        "architecture without kernel_ranks).")
    flags.DEFINE_float("distill_temperature", flop_default("distill_temperature"),
                       "Softmax temperature of distillation.")
    flags.DEFINE_float("distill_weight", flop_default("distill_weight"),
                       "Weight of the distillation loss (with a teacher).")
    flags.DEFINE_bool("resume", False, "Continue the newest timestamped run in --output_dir.")
    flags.DEFINE_string("resume_dir", None, "Continue this run folder.")


def validate_flop_flags():
    """Every FLOP flag, with a message naming it."""
    cli.require(FLAGS.target_sparsity is not None, "--target_sparsity is required")
    cli.require_in_range(FLAGS.target_sparsity, "target_sparsity", 0.0, 1.0,
                         high_inclusive=False)
    for name in ("target_sparsity_warmup", "learning_rate_warmup"):
        if FLAGS[name].value is not None:
            cli.require_in_range(FLAGS[name].value, name, 0)
    for name in ("lambda_learning_rate", "alpha_learning_rate"):
        cli.require(FLAGS[name].value > 0, f"--{name}={FLAGS[name].value}: must be > 0 (else "
                                           "the sparsity target is never enforced)")
    cli.require_in_range(FLAGS.regularization_scale, "regularization_scale", 0.0)
    cli.require_in_range(FLAGS.log_alpha_init_mean, "log_alpha_init_mean", 0.0, 1.0,
                         high_inclusive=False)
    cli.require(FLAGS.log_alpha_init_mean > 0,
                f"--log_alpha_init_mean={FLAGS.log_alpha_init_mean}: must be in (0, 1)")
    cli.require(FLAGS.distill_temperature > 0,
                f"--distill_temperature={FLAGS.distill_temperature}: must be > 0")
    cli.require_in_range(FLAGS.distill_weight, "distill_weight", 0.0)
    if FLAGS.teacher_checkpoint:
        cli.require(FLAGS.distill_weight > 0, "--distill_weight=0 with --teacher_checkpoint: "
                                              "the teacher would be ignored")
        try:
            checkpoint.resolve_checkpoint(FLAGS.teacher_checkpoint, flag="teacher_checkpoint")
        except FileNotFoundError as error:
            raise UsageError(str(error)) from None
        if FLAGS.teacher_bert_config_file:
            cli.require_file(FLAGS.teacher_bert_config_file, "teacher_bert_config_file",
                             "the teacher's bert_config.json")
    else:
        cli.require(not FLAGS.teacher_bert_config_file,
                    "--teacher_bert_config_file needs --teacher_checkpoint")
    cli.require(not (FLAGS.resume and FLAGS.resume_dir), "give --resume or --resume_dir, not both")
    if FLAGS.resume_dir:
        cli.require_dir(FLAGS.resume_dir, "resume_dir", "a run folder of an earlier run")


def check_factorized(bert_config):
    """The model must come from factorize: its checkpoint has factors, its config ranks."""
    if FLAGS.init_checkpoint:
        stored = checkpoint.list_checkpoint(FLAGS.init_checkpoint)
        cli.require(any(name.endswith(factorize.FACTOR_SUFFIXES[0]) for name in stored),
                    f"--init_checkpoint={FLAGS.init_checkpoint}: checkpoint is not factorized "
                    "(no _p/_q kernels); run factorize.py on it first")
    ranks = bert_config.extra.get("kernel_ranks")
    cli.require(isinstance(ranks, dict) and ranks,
                f"--bert_config_file={FLAGS.bert_config_file}: config is not factorized (no "
                "kernel_ranks); use the bert_config.json written by factorize.py")
    if FLAGS.init_checkpoint:
        missing = [name for key, rank in ranks.items() if rank > 0
                   for name in factorize.factor_names(key) if name not in stored]
        cli.require(not missing, f"--init_checkpoint={FLAGS.init_checkpoint} is not the "
                                 f"factorized model of --bert_config_file="
                                 f"{FLAGS.bert_config_file}: it has no {missing[:1]}")


def teacher_config(student_config):
    path = FLAGS.teacher_bert_config_file
    if not path:
        folder = os.path.dirname(checkpoint.resolve_checkpoint(FLAGS.teacher_checkpoint,
                                                               flag="teacher_checkpoint"))
        path = os.path.join(folder, "bert_config.json")
        if not os.path.isfile(path):
            return factorize.dense_config(student_config)
    return modeling.BertConfig.from_json_file(path)


def newest_run_dir(output_dir):
    runs = sorted(name for name in (os.listdir(output_dir) if os.path.isdir(output_dir) else [])
                  if RUN_DIR_PATTERN.match(name) and os.path.isdir(os.path.join(output_dir, name)))
    cli.require(runs, f"--resume: {output_dir} has no timestamped run folder to resume")
    return os.path.join(output_dir, runs[-1])


def select_run_dir():
    if FLAGS.resume_dir:
        return FLAGS.resume_dir
    if FLAGS.resume:
        return newest_run_dir(FLAGS.output_dir)
    run_dir = os.path.join(FLAGS.output_dir, time.strftime(RUN_DIR_FORMAT))
    os.makedirs(run_dir)
    return run_dir


def flop_settings(student_config):
    return FlopSettings(
        target_sparsity=FLAGS.target_sparsity,
        target_sparsity_warmup=FLAGS.target_sparsity_warmup,
        lambda_learning_rate=FLAGS.lambda_learning_rate,
        alpha_learning_rate=FLAGS.alpha_learning_rate,
        regularization_scale=FLAGS.regularization_scale,
        log_alpha_init_mean=FLAGS.log_alpha_init_mean,
        teacher_checkpoint=FLAGS.teacher_checkpoint,
        teacher_config=teacher_config(student_config) if FLAGS.teacher_checkpoint else None,
        distill_temperature=FLAGS.distill_temperature,
        distill_weight=FLAGS.distill_weight)


def run_pruning():
    validate_flop_flags()
    settings = google_flags.settings_from_flags(
        num_warmup_steps=FLAGS.learning_rate_warmup, evaluate_every_checkpoint=True,
        hidden_dropout_prob=FLAGS.hidden_dropout_prob,
        attention_probs_dropout_prob=FLAGS.attention_probs_dropout_prob)
    cli.require_file(settings.bert_config_file, "bert_config_file",
                     "the factorized model's bert_config.json")
    config = settings.model_config()
    settings.validate(config)
    check_factorized(config)
    method = FlopMethod(flop_settings(config))

    run_dir = select_run_dir()
    run_config_file = os.path.join(run_dir, "bert_config.json")
    config.to_json_file(run_config_file)
    settings.bert_config_file = run_config_file
    settings.output_dir = run_dir
    classifier = Classifier(settings, [method])
    exporter = BestSparseExporter(run_dir, config, settings.vocab_file,
                                  classifier.task.processor.primary_metric,
                                  method.settings.target_sparsity)
    print(f"run folder: {run_dir}", flush=True)
    classifier.run(exporters=[exporter])


main = cli.absl_main(PROGRAM, run_pruning)  # what app.run calls (tests call it directly)


def console_main():
    cli.run_absl(PROGRAM, define_flags, run_pruning)


if __name__ == "__main__":
    console_main()
