"""Distil a fine-tuned teacher into a student on a GLUE task: Google's flags plus the losses'.

    python -m distill.run_distill --task_name=MRPC --do_train --do_eval \\
        --data_dir=glue/MRPC --init_checkpoint=students/MRPC_3x \\
        --teacher_model_dir=runs/compress_MRPC/1_fine_tune/model \\
        --learning_rate=1e-4 --num_train_epochs=3 --output_dir=distill_outputs/MRPC_3x

--init_checkpoint is the student's model folder (e.g. what distill.extract wrote); its
bert_config.json and vocab are used unless --bert_config_file / --vocab_file say otherwise.
--output_dir keeps the Estimator's checkpoints (re-running the same command resumes) and
TensorBoard events (one scalar per loss term: distill_logit_loss, distill_hidden_loss,
distill_attention_loss, task_loss); at the end --output_dir/model is a plain model folder of the
student (no teacher, no projections) and eval_results.txt holds its dev metrics. Without
--do_train the given model is evaluated (and predicted) as it is: the dev metric of an extracted
student before any distillation.

A training run records its settings (settings.json) when it starts and run.json when it is
complete, as TR-BERT's stages and PoWER-BERT's steps do: re-running a complete run with the same
settings changes nothing, and a re-run with other settings is refused, naming what changed.
"""
import logging
import os

import tensorflow as tf
from absl import flags

from bert import checkpoint, cli, model_folder
from bert import run_classifier as google_flags
from bert.classifier import (HEAD_VARIABLES, Classifier, check_classifier_head,
                             write_hparams_summary)
from bert import run_record
from distill.method import (LAYER_MAP_HELP, DistillMethod, DistillSettings, load_teacher,
                            parse_layer_map)

FLAGS = flags.FLAGS
PROGRAM = "distill.run_distill"
log = logging.getLogger("distill")

MODEL_DIR = "model"
STUDENT_VARIABLES = (r"^bert/",) + HEAD_VARIABLES  # what the student's model folder holds
LOSS_FLAGS = ("temperature", "logit_weight", "hidden_weight", "attention_weight", "task_weight",
              "layer_map")


def distill_default(name):
    """A flag's default: the DistillSettings field's."""
    return cli.field_default(DistillSettings, name)


def define_distill_flags():
    """The teacher and the loss weights (shared with distill.sweep)."""
    flags.DEFINE_string("teacher_model_dir", None, "Model folder of the fine-tuned teacher "
                        "(bert_config.json, checkpoint with its classifier head).")
    flags.DEFINE_float("temperature", distill_default("temperature"), "Softmax temperature of "
                       "the soft-logit loss (regression tasks use the MSE of the scores).")
    flags.DEFINE_float("logit_weight", distill_default("logit_weight"),
                       "Weight of the soft-logit loss.")
    flags.DEFINE_float("hidden_weight", distill_default("hidden_weight"),
                       "Weight of the hidden-state MSE (embeddings and every mapped layer).")
    flags.DEFINE_float("attention_weight", distill_default("attention_weight"),
                       "Weight of the attention-map MSE of the mapped layers.")
    flags.DEFINE_float("task_weight", distill_default("task_weight"), "Weight of the task loss.")
    flags.DEFINE_string("layer_map", None, LAYER_MAP_HELP)


def define_flags():
    google_flags.define_flags()
    define_distill_flags()


def distill_method(settings, student_config, teacher_model_dir, **loss_values):
    """The DistillMethod of a classifier run, checked against the student and the task.
    ``loss_values``: the LOSS_FLAGS by name."""
    settings.validate(student_config)
    cli.require(teacher_model_dir, "--teacher_model_dir is required with --do_train")
    teacher_config, teacher_prefix = load_teacher(teacher_model_dir)
    layer_map = loss_values.pop("layer_map")
    distill_settings = DistillSettings(
        teacher_config=teacher_config, teacher_checkpoint=teacher_prefix,
        layer_map=parse_layer_map(layer_map) if layer_map else None, **loss_values)
    distill_settings.validate(student_config)
    check_classifier_head(checkpoint.list_checkpoint(teacher_prefix), settings.task_name,
                          teacher_model_dir, "teacher_model_dir")
    return DistillMethod(distill_settings)


def train_to_model_folder(classifier, step, keep_checkpoints=True):
    """Train (resuming from output_dir), write output_dir/model, evaluate and predict with it.

    The folder is evaluated as any later user reads it: from its own config and checkpoint.
    ``keep_checkpoints=False`` then removes the Estimator checkpoints (a sweep keeps only the
    model folders). Returns the eval result (None without do_eval).
    """
    s = classifier.settings
    write_hparams_summary(s.output_dir, classifier.hparams())
    seconds = classifier.train()
    model_dir = os.path.join(s.output_dir, MODEL_DIR)
    model_folder.write_from_training_checkpoint(
        tf.train.latest_checkpoint(s.output_dir), model_dir, classifier.bert_config,
        s.vocab_file, STUDENT_VARIABLES, step=step, source=s.init_checkpoint,
        flags=classifier.hparams())
    prefix = checkpoint.resolve_checkpoint(model_dir)
    result = (classifier.evaluate(checkpoint_path=prefix, train_seconds=seconds)
              if s.do_eval else None)
    if s.do_predict:
        classifier.predict(checkpoint_path=prefix)
    if not keep_checkpoints:
        model_folder.drop_training_checkpoints(s.output_dir)
    return result


def train_once(classifier):
    """Train into output_dir unless a complete run with these settings is there already
    (``bert.run_record``)."""
    output_dir = classifier.settings.output_dir
    model_dir = os.path.join(output_dir, MODEL_DIR)
    settings = run_record.recorded(classifier.hparams(), run_record.CLASSIFIER_PROCEDURE,
                                   run_record.CLASSIFIER_PATHS)
    done = run_record.completed(output_dir, settings, model_dir)
    if done:
        log.info("%s is already done (%s); nothing to do", output_dir, done["summary"])
        return
    run_record.start(output_dir, settings)
    result = train_to_model_folder(classifier, step="distill/run_distill")
    metric = classifier.task.processor.primary_metric
    summary = f"{metric} {result[metric]:.4f}" if result else "trained, not evaluated"
    run_record.finish(output_dir, settings, summary, model_dir)


def run_distillation():
    config_file, vocab_file = model_folder.config_and_vocab(
        FLAGS.init_checkpoint, "init_checkpoint", FLAGS.bert_config_file, FLAGS.vocab_file)
    settings = google_flags.settings_from_flags(bert_config_file=config_file,
                                                vocab_file=vocab_file)
    if not settings.do_train:
        Classifier(settings).run()  # the given model as it is
        return
    method = distill_method(settings, settings.model_config(), FLAGS.teacher_model_dir,
                            **{name: FLAGS[name].value for name in LOSS_FLAGS})
    train_once(Classifier(settings, [method]))


main = cli.absl_main(PROGRAM, run_distillation)  # what app.run calls (tests call it directly)


def console_main():
    cli.run_absl(PROGRAM, define_flags, run_distillation)


if __name__ == "__main__":
    console_main()
