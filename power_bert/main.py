"""PoWER-BERT: progressive word-vector elimination with a learned retention configuration.

Three steps, each --EPOCH epochs, each in its own folder of --OUTPUT_DIR (a re-run skips the
steps already complete and resumes the one that was interrupted):
  1_fine_tune/             fine-tune the pretrained model (best dev epoch kept)
  2_configuration_search/  Soft-Extract from the step-1 model; the retention configuration
                           l_j = max(1, floor(sum r_j)), made non-increasing, is read out
  3_retrain/               Extract with that configuration, starting from the step-2 model
                           (best dev epoch kept)
Each step's <step>/model is a complete model folder (bert_config.json carrying the retention
configuration under "power_bert_retention", vocab, checkpoint, provenance). log_file.txt in
--OUTPUT_DIR records every epoch's dev metric and the configuration. At the end the dev metric
and the inference latency (measured side by side) of the fine-tuned and PoWER models are printed.

    python -m power_bert.main --TASK mrpc --CHECKPOINT_PATH models/pretrained \\
        --DATA_DIR glue/MRPC --OUTPUT_DIR power_bert_outputs/MRPC
    python -m power_bert.main --TASK mrpc --EVAL_ONLY \\
        --CHECKPOINT_PATH power_bert_outputs/MRPC/3_retrain/model \\
        --DATA_DIR glue/MRPC --OUTPUT_DIR power_bert_outputs/MRPC/eval

Per-task defaults (the PoWER-BERT paper's settings for BERT-Base; sequence length from its
code) used when a flag is not given:
  task      LR_BERT  LR_SOFT_EXTRACT  LAMBDA   BATCH_SIZE  MAX_SEQ_LENGTH
{table}
"""
import logging
import os
import shlex
import sys

import tensorflow as tf

from bert import (checkpoint, cli, distribution, methods, model_folder, modeling, stages, tasks,
                  timing, user_task)
from bert.classifier import (HEAD_VARIABLES, TEST_RESULTS_FILE, Classifier, ClassifierSettings,
                             classifier_head)
from bert.errors import UsageError
from power_bert import steps, token_selectors
from power_bert.method import ConfigurationSearch, Extract

tf1 = tf.compat.v1
log = logging.getLogger("power_bert")

PROGRAM = "power_bert.main"
LOG_FILE = stages.LOG_FILE
FEATURES_DIR = "features"
DEFAULT_EPOCHS = 3
DEFAULT_BENCHMARK_ITERATIONS = 20
DEFAULT_BENCHMARK_BATCH_SIZES = "1,32"
MIN_SEQ_LENGTH = 3  # [CLS] x [SEP]
STEP_FOLDERS = ("1_fine_tune", "2_configuration_search", "3_retrain")

# task: (LR_BERT, LR_SOFT_EXTRACT, LAMBDA, BATCH_SIZE, MAX_SEQ_LENGTH)
TASK_DEFAULTS = {
    "cola": (2e-5, 1.5e-3, 7e-3, 32, 64),
    "rte": (3e-5, 3e-3, 1e-3, 16, 256),
    "qqp": (3e-5, 1e-4, 3e-4, 64, 128),
    "mrpc": (6e-5, 3e-3, 3e-3, 64, 128),
    "sst-2": (3e-5, 5e-4, 2e-4, 64, 64),
    "mnli": (3e-5, 2e-4, 1e-4, 64, 128),
    "mnli-mm": (3e-5, 1e-4, 1e-4, 64, 128),
    "qnli": (3e-5, 2e-4, 1.5e-4, 16, 128),
    "sts-b": (3e-5, 3e-3, 1e-3, 64, 64),
}
USER_TASK_DEFAULTS = TASK_DEFAULTS["mrpc"]  # your own data: MRPC's row (128 tokens)
DEFAULTED_FLAGS = ("LR_BERT", "LR_SOFT_EXTRACT", "LAMBDA", "BATCH_SIZE", "MAX_SEQ_LENGTH")
SEED_TASK_NAMES = ("cola", "rte", "sst-2", "qnli", "mrpc", "mnli-m", "mnli-mm", "qqp", "sts-b")


def _defaults_table():
    return "\n".join(f"  {task:<9} {lr:<8g} {soft:<16g} {lam:<8g} {batch:<11d} {seq}"
                     for task, (lr, soft, lam, batch, seq) in TASK_DEFAULTS.items())


def build_parser():
    parser = cli.ArgumentParser(prog=PROGRAM, description=__doc__.format(table=_defaults_table()))
    parser.add_argument("--TASK", required=True,
                        help=f"GLUE task ({', '.join(SEED_TASK_NAMES)}), a name for your own "
                             "data (with the flags below) or a task .json file")
    parser.add_argument("--BERT_CONFIG_PATH",
                        help="bert_config.json (default: the one in CHECKPOINT_PATH's folder)")
    parser.add_argument("--CHECKPOINT_PATH", required=True,
                        help="training: the pretrained model; --EVAL_ONLY/--PREDICT_ONLY: the "
                             "model to use. A checkpoint prefix (bert_model.ckpt) or a model "
                             "folder")
    parser.add_argument("--VOCAB_PATH",
                        help="vocab.txt or SentencePiece .model (default: the one in "
                             "CHECKPOINT_PATH's folder)")
    parser.add_argument("--CASED", action="store_true", help="the model is cased")
    parser.add_argument("--DATA_DIR", required=True,
                        help="the task's folder with train.tsv, dev.tsv and test.tsv")
    parser.add_argument("--EPOCH", "--EPOCHS", dest="EPOCH", type=int, default=DEFAULT_EPOCHS,
                        help="epochs of each of the three steps (default %(default)s)")
    # No default here: resolve_args fills these from TASK_DEFAULTS.
    for flag, kind, text in (
            ("BATCH_SIZE", int, "batch size of training (the global batch: with N replicas "
                                "each takes BATCH_SIZE / N a step), evaluation and prediction"),
            ("LR_SOFT_EXTRACT", float, "peak learning rate of the retention parameters (step 2)"),
            ("LR_BERT", float, "peak learning rate of the BERT parameters (all steps)"),
            ("LAMBDA", float, "retention regulariser: higher eliminates more word-vectors"),
            ("MAX_SEQ_LENGTH", int, "tokens per example (N, the length of each retention "
                                    "vector)")):
        parser.add_argument(f"--{flag}", type=kind, help=text)
    parser.add_argument("--OUTPUT_DIR", required=True,
                        help="step folders, model folders, features and log_file.txt")
    parser.add_argument("--MAX_TRAIN_EXAMPLES", type=int,
                        default=cli.field_default(ClassifierSettings, "max_train_examples"),
                        help="train on the first N examples only, for demos (0: all)")
    _add_inference_flags(parser)
    user_task.add_arguments(parser)
    parser.add_argument("--SEED", type=int, default=cli.field_default(ClassifierSettings, "seed"),
                        help="random seed of shuffling, dropout and the new head")
    parser.add_argument("--DISTRIBUTION", choices=distribution.DISTRIBUTIONS,
                        default=cli.field_default(ClassifierSettings, "distribution"),
                        help="none (one device) or mirrored (every local GPU, in sync); the "
                             "cluster modes are refused here (see bert.distribution)")
    return parser


def _add_inference_flags(parser):
    """The flags of --EVAL_ONLY / --PREDICT_ONLY and of the final latency comparison."""
    parser.add_argument("--EVAL_ONLY", action="store_true",
                        help="evaluate CHECKPOINT_PATH on dev.tsv with Extract")
    parser.add_argument("--PREDICT_ONLY", action="store_true",
                        help=f"predict test.tsv with Extract into {TEST_RESULTS_FILE}")
    parser.add_argument("--RETENTION_CONFIG",
                        help="with --EVAL_ONLY/--PREDICT_ONLY: one non-increasing value per "
                             "layer, comma separated, each in [1, MAX_SEQ_LENGTH], e.g. "
                             "'128,128,96,64,32,16'. Default: the model config's "
                             f"'{token_selectors.RETENTION_CONFIG_KEY}', else MAX_SEQ_LENGTH for "
                             "every layer (no elimination)")
    parser.add_argument("--PRED_GLUE", action="store_true",
                        help="with --PREDICT_ONLY: also write the GLUE submission file")
    parser.add_argument("--MODEL_FORMAT", default="CKPT",
                        help="CKPT (the only format): a TensorFlow checkpoint or model folder. "
                             "The original's HDF5 (Keras) option has no counterpart here: every "
                             "step writes TF checkpoints in Google's variable names inside "
                             "model folders, which CKPT reads")
    parser.add_argument("--BENCHMARK_ITERATIONS", type=int,
                        default=DEFAULT_BENCHMARK_ITERATIONS,
                        help="timed runs per model and batch size in the final latency "
                             "comparison (0: skip it; default %(default)s)")
    parser.add_argument("--BENCHMARK_BATCH_SIZES", default=DEFAULT_BENCHMARK_BATCH_SIZES,
                        help="batch sizes of the latency comparison (default %(default)s)")


# Validation: everything is checked before anything is written ---------------------------------
def resolve_args(args):
    """Check every flag and input file; fill the per-task defaults. Writes nothing."""
    user_values = user_task.flag_values(args)
    if user_values or user_task.is_user_task(args.TASK):
        args.TASK = tasks.resolve(args.TASK, args.DATA_DIR, user_values)
        defaults = USER_TASK_DEFAULTS
    else:
        args.TASK = args.TASK.lower()
        if args.TASK not in SEED_TASK_NAMES + tuple(TASK_DEFAULTS):
            raise UsageError(f"--TASK={args.TASK}: expected one of "
                             f"{', '.join(SEED_TASK_NAMES)}, or your own data's flags")
        args.TASK = tasks.canonical_task_name(args.TASK)
        defaults = TASK_DEFAULTS[args.TASK]
    for flag, default in zip(DEFAULTED_FLAGS, defaults):
        if getattr(args, flag) is None:
            setattr(args, flag, default)
    for flag in ("LR_BERT", "LR_SOFT_EXTRACT", "LAMBDA"):
        if getattr(args, flag) < 0:
            raise UsageError(f"--{flag}={getattr(args, flag)}: must be >= 0")
    for flag in ("EPOCH", "BATCH_SIZE"):
        if getattr(args, flag) < 1:
            raise UsageError(f"--{flag}={getattr(args, flag)}: must be at least 1")
    for flag in ("MAX_TRAIN_EXAMPLES", "BENCHMARK_ITERATIONS"):
        if getattr(args, flag) < 0:
            raise UsageError(f"--{flag}={getattr(args, flag)}: must be >= 0")
    args.benchmark_batch_sizes = cli.parse_batch_sizes(args.BENCHMARK_BATCH_SIZES,
                                                      "BENCHMARK_BATCH_SIZES")
    if args.MODEL_FORMAT.upper() == "HDF5":
        raise UsageError("--MODEL_FORMAT=HDF5: Keras HDF5 models are not supported; this port "
                         "writes TF checkpoints/model folders, use --MODEL_FORMAT=CKPT")
    if args.MODEL_FORMAT.upper() != "CKPT":
        raise UsageError(f"--MODEL_FORMAT={args.MODEL_FORMAT}: expected CKPT")
    args.training = not (args.EVAL_ONLY or args.PREDICT_ONLY)
    if args.DISTRIBUTION in distribution.CLUSTER_DISTRIBUTIONS:
        raise UsageError(f"--DISTRIBUTION={args.DISTRIBUTION}: not for PoWER-BERT, whose steps "
                         "hand model folders from one to the next on one machine; use none or "
                         "mirrored")
    if args.training and args.RETENTION_CONFIG:
        raise UsageError("--RETENTION_CONFIG is used with --EVAL_ONLY/--PREDICT_ONLY only "
                         "(training finds the configuration in step 2)")
    if args.PRED_GLUE and not args.PREDICT_ONLY:
        raise UsageError("--PRED_GLUE needs --PREDICT_ONLY")
    if os.path.isfile(args.OUTPUT_DIR):
        raise UsageError(f"--OUTPUT_DIR={args.OUTPUT_DIR} is a file; expected a folder")
    args.checkpoint = checkpoint.resolve_checkpoint(args.CHECKPOINT_PATH, "CHECKPOINT_PATH")
    args.BERT_CONFIG_PATH, args.VOCAB_PATH = model_folder.config_and_vocab(
        args.CHECKPOINT_PATH, "CHECKPOINT_PATH", args.BERT_CONFIG_PATH, args.VOCAB_PATH,
        config_flag="BERT_CONFIG_PATH", vocab_flag="VOCAB_PATH")
    bert_config = modeling.BertConfig.from_json_file(args.BERT_CONFIG_PATH)
    if not MIN_SEQ_LENGTH <= args.MAX_SEQ_LENGTH <= bert_config.max_position_embeddings:
        raise UsageError(f"--MAX_SEQ_LENGTH={args.MAX_SEQ_LENGTH}: must be in "
                         f"[{MIN_SEQ_LENGTH}, max_position_embeddings="
                         f"{bert_config.max_position_embeddings}]")
    _check_data_files(args)
    if not args.training:
        args.retention, args.retention_source = _eval_retention(args, bert_config)
    return bert_config


def _check_data_files(args):
    if not os.path.isdir(args.DATA_DIR):
        raise UsageError(f"--DATA_DIR={args.DATA_DIR}: folder not found")
    processor = tasks.get_processor(args.TASK)
    needed = []
    if args.training:
        needed += [processor.train_file, processor.dev_file]
    if args.EVAL_ONLY:
        needed.append(processor.dev_file)
    if args.PREDICT_ONLY:
        needed.append(processor.test_file)
    for name in needed:
        if name is None or not os.path.exists(os.path.join(args.DATA_DIR, name)):
            raise UsageError(f"--DATA_DIR={args.DATA_DIR}: {name or 'the split file'} not found")


def _eval_retention(args, bert_config):
    """--RETENTION_CONFIG, else the config's own, else no elimination (the seed's default)."""
    layers = bert_config.num_hidden_layers
    if args.RETENTION_CONFIG:
        return (token_selectors.parse_retention_config(args.RETENTION_CONFIG, layers,
                                                 args.MAX_SEQ_LENGTH), "--RETENTION_CONFIG")
    stored = bert_config.extra.get(token_selectors.RETENTION_CONFIG_KEY)
    if stored is not None:
        source = f"{args.BERT_CONFIG_PATH} '{token_selectors.RETENTION_CONFIG_KEY}'"
        return (token_selectors.validate_retention_config(stored, layers, args.MAX_SEQ_LENGTH,
                                                    source), source)
    return [args.MAX_SEQ_LENGTH] * layers, "default (MAX_SEQ_LENGTH in every layer)"


def check_checkpoint_matches(bert_config, checkpoint_prefix, num_labels, max_seq_length,
                             allow_missing):
    """Build the model once in a scratch graph: a wrong config fails before any write."""
    with tf.Graph().as_default():
        input_ids = tf1.placeholder(tf.int32, [None, max_seq_length])
        model = modeling.BertModel(bert_config, False, input_ids)
        classifier_head(model.pooled_output, num_labels, False)
        checkpoint.init_from_checkpoint(checkpoint_prefix, allow_missing)


# The run --------------------------------------------------------------------------------------
def _provenance(args):
    return {key: value for key, value in vars(args).items()
            if key.isupper() or key in ("checkpoint", "retention")}


def classifier_settings(args):
    """The classifier library's settings from the seed's flags."""
    return ClassifierSettings(
        task_name=args.TASK, data_dir=args.DATA_DIR, vocab_file=args.VOCAB_PATH,
        bert_config_file=args.BERT_CONFIG_PATH, output_dir=args.OUTPUT_DIR,
        init_checkpoint=args.checkpoint, do_lower_case=not args.CASED,
        max_seq_length=args.MAX_SEQ_LENGTH, do_train=args.training,
        do_eval=args.training or args.EVAL_ONLY, do_predict=args.PREDICT_ONLY,
        train_batch_size=args.BATCH_SIZE, eval_batch_size=args.BATCH_SIZE,
        predict_batch_size=args.BATCH_SIZE, learning_rate=args.LR_BERT,
        num_train_epochs=args.EPOCH, warmup_proportion=steps.WARMUP_PROPORTION,
        save_checkpoints_steps=steps.SAVE_CHECKPOINTS_STEPS, keep_checkpoint_max=1,
        max_train_examples=args.MAX_TRAIN_EXAMPLES, log_every_n_steps=steps.LOG_EVERY_N_STEPS,
        seed=args.SEED, features_dir=os.path.join(args.OUTPUT_DIR, FEATURES_DIR),
        write_submission=args.PRED_GLUE, distribution=args.DISTRIBUTION)


def run(args, argv):
    bert_config = resolve_args(args)
    method_list = [] if args.training else [Extract(args.retention)]
    classifier = Classifier(classifier_settings(args), method_list, config_methods=False,
                            bert_config=bert_config)
    check_checkpoint_matches(bert_config, args.checkpoint, classifier.task.num_labels,
                             args.MAX_SEQ_LENGTH, HEAD_VARIABLES if args.training else ())
    plan = _step_plan(args, bert_config) if args.training else None
    os.makedirs(args.OUTPUT_DIR, exist_ok=True)
    log_line = stages.RunLog(args.OUTPUT_DIR, log)
    log_line(f"=== {PROGRAM} {shlex.join(argv)}")
    log_line("settings: " + ", ".join(f"{flag}={getattr(args, flag)}" for flag in (
        "TASK", "EPOCH", "BATCH_SIZE", "LR_BERT", "LR_SOFT_EXTRACT", "LAMBDA", "MAX_SEQ_LENGTH",
        "MAX_TRAIN_EXAMPLES", "DISTRIBUTION")))
    if args.training:
        return train(args, classifier, bert_config, plan, log_line)
    log_line(f"retention configuration ({args.retention_source}): "
             f"{token_selectors.format_retention_config(args.retention)}")
    if args.EVAL_ONLY:
        result = classifier.evaluate(checkpoint_path=args.checkpoint)
        log_line(f"evaluation of {args.CHECKPOINT_PATH} on dev: "
                 + ", ".join(f"{key} {value:.4f}" for key, value in sorted(result.items())))
    if args.PREDICT_ONLY:
        outputs = classifier.predict(checkpoint_path=args.checkpoint)
        log_line(f"predicted {len(outputs)} test examples into {args.OUTPUT_DIR}")
    return None


def _step_plan(args, bert_config):
    """[(folder, settings)] of the three steps, checked against folders of an earlier run."""
    base = {"task": args.TASK, "data_dir": os.path.abspath(args.DATA_DIR),
            "init_checkpoint": os.path.abspath(args.checkpoint),
            "bert_config": bert_config.to_dict(), "do_lower_case": not args.CASED,
            "max_seq_length": args.MAX_SEQ_LENGTH, "batch_size": args.BATCH_SIZE,
            "epochs": args.EPOCH, "max_train_examples": args.MAX_TRAIN_EXAMPLES,
            "seed": args.SEED, "lr_bert": args.LR_BERT}
    search = dict(base, lr_soft_extract=args.LR_SOFT_EXTRACT, **{"lambda": args.LAMBDA})
    # Step 3 follows from step 2's outcome and the same flags.
    plan = list(zip((os.path.join(args.OUTPUT_DIR, name) for name in STEP_FOLDERS),
                    (base, search, search)))
    for folder, settings in plan:
        stages.check_settings(folder, settings, "--OUTPUT_DIR")
    return plan


def train(args, classifier, bert_config, plan, log_line):
    """The three steps; returns {'fine_tuned': step.json, 'power': step.json, 'latency': ...}."""
    training_run = steps.TrainingRun(
        settings=classifier.settings, bert_config=bert_config,
        metric_name=classifier.task.processor.primary_metric,
        num_train_examples=len(classifier.train_examples), epochs=args.EPOCH,
        provenance=_provenance(args), log_line=log_line)
    folders, settings = zip(*plan)
    fine_tune = steps.Step("step 1 fine-tune", folders[0], methods.Method(), args.checkpoint,
                           settings[0], keep_best=True)
    fine_tuned = steps.run_step(training_run, fine_tune)
    search = steps.Step("step 2 configuration search", folders[1],
                        ConfigurationSearch(args.LR_SOFT_EXTRACT, args.LAMBDA,
                                            args.MAX_SEQ_LENGTH),
                        fine_tuned["model_dir"], settings[1], keep_best=False,
                        export=steps.export_searched_config)
    searched = steps.run_step(training_run, search)
    retention = searched["retention"]
    log_line(f"retention configuration: {token_selectors.format_retention_config(retention)}")
    retrain = steps.Step("step 3 re-train", folders[2], Extract(retention),
                         searched["model_dir"], settings[2], keep_best=True,
                         export=steps.export_with_retention(retention))
    power = steps.run_step(training_run, retrain)
    latency = None
    if args.BENCHMARK_ITERATIONS:
        num_labels = classifier.task.num_labels
        models = [timing.load_model_dir(fine_tuned["model_dir"], num_labels=num_labels),
                  timing.load_model_dir(power["model_dir"], num_labels=num_labels)]
        latency = timing.side_by_side(models, args.benchmark_batch_sizes, args.MAX_SEQ_LENGTH,
                                      args.BENCHMARK_ITERATIONS)
    report = summary(classifier.task, fine_tuned, power, retention, latency, args)
    for line in report.splitlines():
        log_line(line)
    print(report)
    return {"fine_tuned": fine_tuned, "power": power, "latency": latency}


def summary(task, fine_tuned, power, retention, latency, args):
    metric = task.processor.primary_metric
    lines = [f"PoWER-BERT on {task.processor.name}, dev {metric}:",
             f"  fine-tuned  {fine_tuned['best_metric']:.4f}",
             f"  PoWER-BERT  {power['best_metric']:.4f}   retention "
             f"{token_selectors.format_retention_config(retention)}"]
    if latency:
        lines.append(f"inference latency, seq {args.MAX_SEQ_LENGTH}, median of "
                     f"{args.BENCHMARK_ITERATIONS} interleaved runs:")
        for batch_size, (base, pruned) in latency.items():
            lines.append(f"  batch {batch_size:3d}: fine-tuned {base * 1000:8.1f} ms  "
                         f"PoWER {pruned * 1000:8.1f} ms  speed-up x{base / pruned:.2f}")
    return "\n".join(lines)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    cli.configure_logging()
    return cli.run_main(lambda: run(args, argv), PROGRAM)


if __name__ == "__main__":
    sys.exit(main())
