"""TR-BERT's stages on a GLUE task: Google's flags plus the TR-BERT seed's mode flags.

    python -m tr_bert.run_tr_bert --task_name=MRPC --data_dir=glue/MRPC \\
        --init_checkpoint=runs/compress_MRPC/1_fine_tune/model --output_dir=tr_bert_outputs/MRPC \\
        --do_eval_grad
    python -m tr_bert.run_tr_bert ... --do_train --train_rl --alpha=1 --guide_rate=0.5

--init_checkpoint is a model folder (its bert_config.json and vocab are used unless
--bert_config_file / --vocab_file say otherwise) fine-tuned on the task (its classifier head).
Every mode works in its own folder of --output_dir (the stage), and a re-run skips a complete
stage and resumes an interrupted one; every mode of a command is checked (data splits, the
annotations a stage reads, a stage's earlier settings) before the first writes anything:

  eval_grad/    --do_eval_grad: token importance of the init model on the train features
  eval_logits/  --do_eval_logits: its logits on the train features (the joint stage's teacher)
  train_init/   --do_train --train_init: the policy imitates "keep the tokens that receive the
                most attention" (the seed's heuristic initialisation); BERT frozen
  train_rl/     --do_train --train_rl: the policy alone, REINFORCE (reward log p(gold) −
                alpha × kept share) with --guide_rate of the steps imitating eval_grad's guide
  train_both/   --do_train --train_both [--train_teacher]: BERT and policy together, task loss +
                RL objective [+ distillation of eval_logits' logits]
  eval/         --do_eval alone: the init model folder evaluated on dev

A training stage writes <stage>/model (a complete model folder whose config carries the policy
architecture under "tr_bert"), <stage>/eval_results.txt (dev metrics, kept share per reduction
layer, FLOPs share) and <stage>/log_file.txt; TensorBoard events are in <stage>/training/.
"""
import dataclasses
import json
import logging
import os
from typing import Optional

from absl import flags

from bert import checkpoint, cli, distribution, files, model_folder, modeling, stages
from bert import run_classifier as google_flags
from bert.classifier import (EVAL_RESULTS_FILE, Classifier, check_classifier_head,
                             format_eval_results)
from bert.errors import UsageError
from tr_bert import annotations
from tr_bert.method import (BASELINE_SCOPE, BASELINES, CONFIG_KEY, FLOPS_SHARE_METRIC,
                            GUIDE_ATTENTION, GUIDE_IMPORTANCE, IMPORTANCE_FEATURE, JOINT,
                            KEPT_SHARE_METRIC, POLICY_ONLY, TEACHER_LOGITS_FEATURE, TrBertMethod,
                            TrBertSettings, validate_architecture)

FLAGS = flags.FLAGS
PROGRAM = "tr_bert.run_tr_bert"
log = logging.getLogger("tr_bert")

EVAL_GRAD, EVAL_LOGITS = "eval_grad", "eval_logits"
TRAIN_INIT, TRAIN_RL, TRAIN_BOTH, EVAL = "train_init", "train_rl", "train_both", "eval"
FEATURES_DIR = "features"
TRAINING_DIR = "training"
MODEL_DIR = "model"
STAGE_DONE_FILE = "stage.json"
# The imitation stage's guide is followed on every step: it has no reward to learn from.
INIT_GUIDE_RATE = 1.0
# The joint stage learns from its reward alone, and only it distils (with --train_teacher).
JOINT_GUIDE_RATE = 0.0
NO_DISTILLATION = 0.0
SUPPORTED_DISTRIBUTIONS = (distribution.NONE, distribution.MIRRORED)


def tr_bert_default(name):
    """A flag's default: the TrBertSettings field's."""
    return cli.field_default(TrBertSettings, name)


def define_flags():
    google_flags.define_flags()
    flags.DEFINE_bool("do_eval_grad", False, "Write the init model's token importance on the "
                      "train features (the residual strategy's guide) into eval_grad/.")
    flags.DEFINE_bool("do_eval_logits", False, "Write the init model's logits on the train "
                      "features (the joint stage's teacher) into eval_logits/.")
    flags.DEFINE_bool("train_init", False, "With --do_train: heuristic initialisation of the "
                      "policy (imitate the tokens that receive the most attention).")
    flags.DEFINE_bool("train_rl", False, "With --do_train: train the policy alone (REINFORCE).")
    flags.DEFINE_bool("train_both", False, "With --do_train: train BERT and the policy together.")
    flags.DEFINE_bool("train_teacher", False, "With --train_both: distil eval_logits' logits.")
    flags.DEFINE_float("alpha", tr_bert_default("alpha"),
                       "Length penalty: reward = log p(gold) − alpha × kept share.")
    flags.DEFINE_float("guide_rate", tr_bert_default("guide_rate"), "Share of --train_rl steps "
                       "that imitate the residual guide instead of following the reward.")
    flags.DEFINE_float("guide_mass", tr_bert_default("guide_mass"), "A guide keeps the fewest "
                       "tokens holding this share of the importance (or attention) mass.")
    flags.DEFINE_list("reduction_layers",
                      [str(layer) for layer in tr_bert_default("reduction_layers")],
                      "0-based encoder layers after whose attention block tokens are dropped.")
    flags.DEFINE_integer("policy_hidden_size", tr_bert_default("policy_hidden_size"),
                         "Width of the policy network's hidden layer.")
    flags.DEFINE_float("policy_learning_rate", tr_bert_default("policy_learning_rate"),
                       "Peak learning rate of the policy.")
    flags.DEFINE_enum("baseline", tr_bert_default("baseline"), BASELINES, "REINFORCE baseline: "
                      "moving average of the batch-mean reward, or the batch mean itself.")
    flags.DEFINE_float("distill_weight", tr_bert_default("distill_weight"),
                       "Weight of the distillation loss (--train_teacher).")
    flags.DEFINE_float("distill_temperature", tr_bert_default("distill_temperature"),
                       "Softmax temperature of distillation.")
    flags.DEFINE_string("guide_dir", None, "Folder with --do_eval_grad's output (default: "
                        "OUTPUT_DIR/eval_grad).")
    flags.DEFINE_string("logits_dir", None, "Folder with --do_eval_logits' output (default: "
                        "OUTPUT_DIR/eval_logits).")


# Validation: everything is checked before anything is written ---------------------------------
def training_stage():
    """The --do_train stage the mode flags name (None without --do_train)."""
    chosen = [name for name in (TRAIN_INIT, TRAIN_RL, TRAIN_BOTH) if FLAGS[name].value]
    if not FLAGS.do_train:
        cli.require(not chosen, f"--{chosen[0] if chosen else ''} needs --do_train")
        return None
    cli.require(len(chosen) == 1, "--do_train needs exactly one of --train_init, --train_rl, "
                                  f"--train_both (got {len(chosen)})")
    return chosen[0]


def reduction_layers(num_layers):
    try:
        layers = [int(value) for value in FLAGS.reduction_layers]
    except ValueError:
        raise UsageError(f"--reduction_layers={','.join(FLAGS.reduction_layers)}: expected "
                         "comma-separated layer indices, e.g. 2,4") from None
    return validate_architecture(layers, FLAGS.policy_hidden_size, num_layers,
                                 "--reduction_layers/--policy_hidden_size")


def validate_flags():
    stage = training_stage()
    cli.require(FLAGS.do_eval_grad or FLAGS.do_eval_logits or stage or FLAGS.do_eval,
                "give a mode: --do_eval_grad, --do_eval_logits, --do_train with --train_init, "
                "--train_rl or --train_both, or --do_eval")
    cli.require(not FLAGS.do_predict, "--do_predict: not a TR-BERT mode (use "
                                      "bert.run_classifier on a stage's model folder)")
    cli.require(not FLAGS.train_teacher or FLAGS.train_both, "--train_teacher needs --train_both")
    cli.require(FLAGS.init_checkpoint, "--init_checkpoint is required (a model folder)")
    cli.require(FLAGS.task_name, "--task_name is required")
    cli.require_output_dir(FLAGS.output_dir, "output_dir")
    cli.require(FLAGS.distribution in SUPPORTED_DISTRIBUTIONS,
                f"--distribution={FLAGS.distribution}: TR-BERT's stages run on one machine "
                f"({', '.join(SUPPORTED_DISTRIBUTIONS)})")
    cli.require_in_range(FLAGS.alpha, "alpha", 0.0)
    cli.require_in_range(FLAGS.guide_rate, "guide_rate", 0.0, 1.0)
    cli.require(0.0 < FLAGS.guide_mass <= 1.0, f"--guide_mass={FLAGS.guide_mass}: must be in "
                                               "(0, 1]")
    cli.require(FLAGS.policy_learning_rate > 0, f"--policy_learning_rate="
                                                f"{FLAGS.policy_learning_rate}: must be > 0")
    cli.require_in_range(FLAGS.distill_weight, "distill_weight", 0.0)
    cli.require(FLAGS.distill_temperature > 0,
                f"--distill_temperature={FLAGS.distill_temperature}: must be > 0")
    return stage


# Stages -----------------------------------------------------------------------------------------
def format_result(result, metric_name):
    """'eval_accuracy 0.8125, kept_share 0.6120, flops_share 0.7003, ...'."""
    first = [metric_name, KEPT_SHARE_METRIC, FLOPS_SHARE_METRIC]
    keys = [key for key in first if key in result] + sorted(
        key for key in result if key not in first and key != "global_step")
    return ", ".join(f"{key} {result[key]:.4f}" for key in keys)


@dataclasses.dataclass
class Run:
    """What every stage of one command shares."""
    config_file: str
    vocab_file: str
    bert_config: modeling.BertConfig  # the init model's, without a "tr_bert" entry
    init_prefix: str

    def settings(self, output_dir, **overrides):
        values = dict(bert_config_file=self.config_file, vocab_file=self.vocab_file,
                      output_dir=output_dir, init_checkpoint=self.init_prefix,
                      features_dir=os.path.join(FLAGS.output_dir, FEATURES_DIR),
                      do_train=False, do_eval=False, do_predict=False)
        values.update(overrides)
        return google_flags.settings_from_flags(**values)

    def train_records(self, classifier):
        task = classifier.task
        examples = task.examples("train", FLAGS.max_train_examples)
        return task.records("train", examples, FLAGS.max_train_examples)

    def features_key(self, classifier):
        """What the train features are made from (annotations.features_key), known before
        they are written."""
        task = classifier.task
        examples = task.examples("train", FLAGS.max_train_examples)
        return annotations.features_key(
            task.cache_key("train", examples, FLAGS.max_train_examples), self.vocab_file)


def annotation_file(flag_dir, stage, name):
    return os.path.join(flag_dir or os.path.join(FLAGS.output_dir, stage), name)


@dataclasses.dataclass
class Annotations:
    """--do_eval_grad / --do_eval_logits, checked: the pass's classifier, the features' key and
    {annotate()'s argument: file} of what is not up to date."""
    classifier: Classifier
    key: dict
    todo: dict


def prepare_annotations(run):
    classifier = Classifier(run.settings(os.path.join(FLAGS.output_dir, FEATURES_DIR),
                                         do_eval=True), config_methods=False,
                            bert_config=run.bert_config)
    key = run.features_key(classifier)
    wanted = {}
    if FLAGS.do_eval_grad:
        wanted["importance_file"] = annotation_file(None, EVAL_GRAD, annotations.IMPORTANCE_FILE)
    if FLAGS.do_eval_logits:
        wanted["logits_file"] = annotation_file(None, EVAL_LOGITS, annotations.LOGITS_FILE)
    todo = {name: path for name, path in wanted.items()
            if not annotations.is_current(path, key)}
    for path in set(wanted.values()) - set(todo.values()):
        log.info("%s is up to date, skipped", path)
    return Annotations(classifier, key, todo)


def run_annotations(run, job):
    """One pass of the init model over the train features."""
    if job.todo:
        record_file = run.train_records(job.classifier)
        annotations.annotate(run.bert_config, run.init_prefix, job.classifier.task, record_file,
                             job.key, FLAGS.eval_batch_size, **job.todo)


def method_settings(stage, num_layers):
    layers = reduction_layers(num_layers)
    common = dict(reduction_layers=layers, policy_hidden_size=FLAGS.policy_hidden_size,
                  alpha=FLAGS.alpha, baseline=FLAGS.baseline,
                  policy_learning_rate=FLAGS.policy_learning_rate, guide_mass=FLAGS.guide_mass)
    if stage == TRAIN_INIT:
        return TrBertSettings(guide=GUIDE_ATTENTION, guide_rate=INIT_GUIDE_RATE,
                              distill_weight=NO_DISTILLATION, **common)
    if stage == TRAIN_RL:
        return TrBertSettings(guide=GUIDE_IMPORTANCE, guide_rate=FLAGS.guide_rate,
                              distill_weight=NO_DISTILLATION, **common)
    return TrBertSettings(train_mode=JOINT, guide_rate=JOINT_GUIDE_RATE,
                          distill_weight=(FLAGS.distill_weight if FLAGS.train_teacher
                                          else NO_DISTILLATION),
                          distill_temperature=FLAGS.distill_temperature, **common)


def stage_annotations(settings, key, written):
    """{feature: file} the stage's training input must carry; each must be up to date for
    these train features (``key``) unless this command writes it first (``written``)."""
    needed = {}
    if settings.guide == GUIDE_IMPORTANCE and settings.guide_rate > 0:
        needed[IMPORTANCE_FEATURE] = (annotation_file(FLAGS.guide_dir, EVAL_GRAD,
                                                      annotations.IMPORTANCE_FILE),
                                      "guide_dir", "--do_eval_grad")
    if settings.distill_weight > 0:
        needed[TEACHER_LOGITS_FEATURE] = (annotation_file(FLAGS.logits_dir, EVAL_LOGITS,
                                                          annotations.LOGITS_FILE),
                                          "logits_dir", "--do_eval_logits")
    for path, flag, stage_flag in needed.values():
        if path not in written:
            annotations.require_current(path, key, flag, stage_flag)
    return {name: path for name, (path, _, _) in needed.items()}


@dataclasses.dataclass
class TrainingStage:
    """A --do_train stage, checked before anything is written: complete (``done``: its
    stage.json) or ready to train (its classifier and the annotation files it reads)."""
    name: str
    folder: str
    settings: TrBertSettings
    stage_settings: dict
    done: Optional[dict] = None
    classifier: Optional[Classifier] = None
    needed: Optional[dict] = None


def prepare_training_stage(run, stage, written):
    """The stage ``stage`` checked: a complete one with these settings is skipped, one
    started with other settings refused; ``written``: the annotation files this command
    writes before it."""
    folder = os.path.join(FLAGS.output_dir, stage)
    settings = method_settings(stage, run.bert_config.num_hidden_layers)
    # Through json, as it is stored: tuples become lists, so a re-run compares equal.
    stage_settings = json.loads(json.dumps({
        "stage": stage, "init_checkpoint": os.path.abspath(run.init_prefix),
        "tr_bert": dataclasses.asdict(settings),
        **{name: FLAGS[name].value for name in (
            "task_name", "max_seq_length", "max_train_examples", "train_batch_size",
            "num_train_epochs", "learning_rate", "seed")}}))
    done = stages.read_json(os.path.join(folder, STAGE_DONE_FILE))
    if done and done["settings"] == stage_settings:
        return TrainingStage(stage, folder, settings, stage_settings, done=done)
    stages.check_settings(folder, stage_settings, "--output_dir")
    training_config = run.bert_config.copy()
    overrides = {}
    if settings.train_mode == POLICY_ONLY:
        # BERT is frozen (learning rate 0) and dropout off: the reward then measures the
        # policy's decisions, not dropout noise.
        training_config.hidden_dropout_prob = 0.0
        training_config.attention_probs_dropout_prob = 0.0
        overrides = dict(learning_rate=0.0, classifier_dropout=0.0)
    classifier = Classifier(run.settings(os.path.join(folder, TRAINING_DIR), do_train=True,
                                         do_eval=True, **overrides),
                            [TrBertMethod(settings)], config_methods=False,
                            bert_config=training_config)
    needed = stage_annotations(settings, run.features_key(classifier), written)
    return TrainingStage(stage, folder, settings, stage_settings, classifier=classifier,
                         needed=needed)


def annotated_input(run, job, record_file):
    """The training input_fn with the stage's annotations zipped in (None without any)."""
    if not job.needed:
        return None
    sizes = {IMPORTANCE_FEATURE: run.bert_config.num_hidden_layers * FLAGS.max_seq_length,
             TEACHER_LOGITS_FEATURE: job.classifier.task.num_labels}
    return annotations.annotated_input_fn(
        record_file, {name: (path, sizes[name]) for name, path in job.needed.items()},
        FLAGS.max_seq_length, FLAGS.train_batch_size, job.classifier.task.is_regression,
        FLAGS.seed)


def run_training_stage(run, job):
    if job.done:
        log.info("%s is complete (%s), skipped", job.folder, job.done["summary"])
        return job.done
    stages.start_stage(job.folder, job.stage_settings, "--output_dir")
    stage_log = stages.RunLog(job.folder, log)
    classifier = job.classifier
    record_file = run.train_records(classifier)
    stage_log(f"{job.name}: {classifier.num_train_steps} steps from {FLAGS.init_checkpoint}; "
              + ", ".join(f"{key} {value}"
                          for key, value in dataclasses.asdict(job.settings).items()))
    train_seconds = classifier.train(train_input=annotated_input(run, job, record_file))
    result = classifier.evaluate(write=False)
    summary = format_result(result, classifier.task.processor.primary_metric)
    model_dir = export_stage(run, job.folder, os.path.join(job.folder, TRAINING_DIR),
                             job.settings, job.stage_settings)
    files.write_text_atomic(os.path.join(job.folder, EVAL_RESULTS_FILE),
                            format_eval_results(result, train_seconds))
    stage_log(f"{job.name} dev: {summary} -> {model_dir}")
    done = {"settings": job.stage_settings, "summary": summary, "model_dir": model_dir,
            "result": {key: float(value) for key, value in result.items()}}
    stages.write_json(os.path.join(job.folder, STAGE_DONE_FILE), done)
    model_folder.drop_training_checkpoints(os.path.join(job.folder, TRAINING_DIR))
    return done


def export_stage(run, folder, training_dir, settings, stage_settings):
    """<stage>/model: BERT + head + policies; the config carries the policy architecture."""
    values = {name: value for name, value in checkpoint.read_checkpoint(training_dir).items()
              if not name.startswith(BASELINE_SCOPE + "/")}
    config = run.bert_config.copy()
    config.extra[CONFIG_KEY] = settings.config_entry()
    return model_folder.write_model_folder(os.path.join(folder, MODEL_DIR), config,
                                           run.vocab_file, values,
                                           step=f"tr_bert/{stage_settings['stage']}",
                                           source=run.init_prefix, flags=stage_settings)


def run_evaluation(run, classifier):
    """--do_eval alone: the init model folder as its config describes it, on dev."""
    result = classifier.evaluate(checkpoint_path=run.init_prefix)
    stages.RunLog(classifier.settings.output_dir, log)(
        f"eval of {FLAGS.init_checkpoint}: "
        + format_result(result, classifier.task.processor.primary_metric))
    return result


def prepare_run():
    """The init model folder, checked: a model fine-tuned on the task, whose layers the
    reduction layers fit."""
    config_file, vocab_file = model_folder.config_and_vocab(
        FLAGS.init_checkpoint, "init_checkpoint", FLAGS.bert_config_file, FLAGS.vocab_file)
    try:
        init_prefix = checkpoint.resolve_checkpoint(FLAGS.init_checkpoint)
    except FileNotFoundError as error:
        raise UsageError(str(error)) from None
    check_classifier_head(checkpoint.list_checkpoint(init_prefix),
                          google_flags.resolved_task_name(),
                          FLAGS.init_checkpoint, "init_checkpoint")
    config = modeling.BertConfig.from_json_file(config_file)
    reduction_layers(config.num_hidden_layers)  # a bad --reduction_layers fails before any work
    config.extra.pop(CONFIG_KEY, None)  # each training stage writes its own
    return Run(config_file, vocab_file, config, init_prefix)


def run_stages():
    """Every mode the flags ask for is checked (data, annotations, stage settings) before the
    first of them writes anything."""
    stage = validate_flags()
    run = prepare_run()
    annotation_job = (prepare_annotations(run) if FLAGS.do_eval_grad or FLAGS.do_eval_logits
                      else None)
    written = set(annotation_job.todo.values()) if annotation_job else set()
    training_job = prepare_training_stage(run, stage, written) if stage else None
    evaluation = (Classifier(run.settings(os.path.join(FLAGS.output_dir, EVAL), do_eval=True))
                  if FLAGS.do_eval and not stage else None)
    if annotation_job:
        run_annotations(run, annotation_job)
    if training_job:
        run_training_stage(run, training_job)
    if evaluation:
        run_evaluation(run, evaluation)


main = cli.absl_main(PROGRAM, run_stages)  # what app.run calls (tests call it directly)


def console_main():
    cli.run_absl(PROGRAM, define_flags, run_stages)


if __name__ == "__main__":
    console_main()
