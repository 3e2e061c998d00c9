"""Prune OFA's downstream stage: fine-tune on a task with the sparsity pattern locked (or reached
by gradual magnitude pruning), distilling from a dense fine-tuned teacher, then
quantization-aware training of the sparse model.

    python -m prune_ofa.run_classifier --task_name=MRPC --data_dir=glue/MRPC \\
        --init_checkpoint=models/sparse90 --teacher_model_dir=models/MRPC_dense \\
        --do_train --do_eval --num_train_epochs=3 --qat_epochs=1 --output_dir=ofa/MRPC

(console script: prune-ofa-run-classifier). ``--init_checkpoint`` is a model folder: a sparse one
written by ``prune_ofa.pretrain`` (its zeros are kept) or a dense one pruned here with
``--final_sparsity`` and the cubic schedule. Google's classifier flags apply. Two stages, each a
classifier output folder that resumes when the command is re-run:

* ``<output_dir>/sparse``: lock (+ prune) + distil; ``sparse/model`` is the sparse fp32 model
  folder, its config recording each kernel's sparsity;
* ``<output_dir>/qat`` (with ``--qat_epochs`` > 0): the same from ``sparse/model`` with
  fake-quantized kernels and learned activation ranges; ``qat/model`` is what
  ``deploy.export`` turns into an INT8 ONNX that uses those ranges.

A complete stage re-run with the same settings is skipped; one started with other settings is
refused before anything is written (``bert.run_record``).
"""
import dataclasses
import logging
import os
import re

import tensorflow as tf
from absl import flags

from bert import checkpoint, cli, model_folder, run_record
from bert import run_classifier as google_flags
from bert.classifier import (HEAD_VARIABLES, Classifier, check_classifier_head,
                             write_hparams_summary)
from prune_ofa import quantize
from prune_ofa.method import (DEFAULT_DISTILL_WEIGHT, DEFAULT_TEMPERATURE, PruneOfaMethod,
                              PruneOfaSettings, mark_config, overall_sparsity)
from prune_ofa.schedule import BLOCKS, UNSTRUCTURED, PruningSchedule

FLAGS = flags.FLAGS
PROGRAM = "prune_ofa.run_classifier"
log = logging.getLogger("prune_ofa")

SPARSE_STAGE, QAT_STAGE, MODEL_DIR = "sparse", "qat", "model"
DEFAULT_PRUNING_END_SHARE = 0.7  # of the run's steps: the last third trains the final pattern
DEFAULT_QAT_LEARNING_RATE = 1e-5
MODEL_VARIABLES = (r"^bert/",) + HEAD_VARIABLES + (quantize.RANGE_VARIABLES,
                                                  rf"^{quantize.COUNTER}$")


def define_flags():
    google_flags.define_flags()
    define_pruning_flags()
    define_distillation_flags()
    flags.DEFINE_float("qat_epochs", 0.0, "Epochs of quantization-aware training after the "
                       "sparse fine-tuning (0: none).")
    flags.DEFINE_float("qat_learning_rate", DEFAULT_QAT_LEARNING_RATE,
                       "Peak learning rate of quantization-aware training.")
    flags.DEFINE_float("range_decay", quantize.DEFAULT_RANGE_DECAY, "Moving-average decay of "
                       "the learned activation ranges.")


def define_pruning_flags():
    """The schedule's flags (shared with prune_ofa.pretrain)."""
    flags.DEFINE_float("initial_sparsity", 0.0, "Sparsity at the first mask update.")
    flags.DEFINE_float("final_sparsity", 0.0, "Sparsity of every encoder kernel at "
                       "--pruning_end (0: keep the source's pattern, prune nothing more).")
    flags.DEFINE_integer("pruning_start", 0, "Step of the first mask update.")
    flags.DEFINE_integer("pruning_end", None, "Step of the last mask update (default: "
                         f"{DEFAULT_PRUNING_END_SHARE:g} of the run's steps).")
    flags.DEFINE_integer("pruning_frequency", 100, "Steps between mask updates.")
    flags.DEFINE_enum("block", UNSTRUCTURED, list(BLOCKS), "Pruned unit: one weight (1x1) or "
                      "a block of 1x4 / 4x1 weights (rows of the kernel [in, out] x columns).")


def define_distillation_flags():
    flags.DEFINE_string("teacher_model_dir", None, "Dense model folder fine-tuned on the task "
                        "(optional: without it the run fine-tunes on the labels alone).")
    flags.DEFINE_float("distill_temperature", DEFAULT_TEMPERATURE, "Softmax temperature.")
    flags.DEFINE_float("distill_weight", DEFAULT_DISTILL_WEIGHT, "Weight of the soft-logit "
                       "loss; the task loss gets 1 minus it.")
    flags.DEFINE_float("hidden_weight", 0.0, "Weight of the hidden-state MSE to the teacher.")


def pruning_schedule(num_train_steps, steps_flag="num_train_epochs"):
    """The schedule of the flags, checked against the run's ``num_train_steps``."""
    end = FLAGS.pruning_end
    if end is None:
        end = max(FLAGS.pruning_start, int(num_train_steps * DEFAULT_PRUNING_END_SHARE))
    schedule = PruningSchedule(FLAGS.initial_sparsity, FLAGS.final_sparsity,
                               FLAGS.pruning_start, end, FLAGS.pruning_frequency, FLAGS.block)
    schedule.validate()
    schedule.check_steps(num_train_steps, steps_flag)
    return schedule


def teacher_settings(settings, schedule):
    """PruneOfaSettings with the teacher, checked against the task; nothing is written."""
    values = dict(schedule=schedule, distill_temperature=FLAGS.distill_temperature,
                  distill_weight=FLAGS.distill_weight, hidden_weight=FLAGS.hidden_weight)
    if FLAGS.teacher_model_dir:
        teacher = model_folder.load(FLAGS.teacher_model_dir, "teacher_model_dir",
                                    need_vocab=False, verify_weights=True)
        check_classifier_head(checkpoint.list_checkpoint(teacher.checkpoint_prefix),
                              settings.task_name, FLAGS.teacher_model_dir, "teacher_model_dir")
        values.update(teacher_checkpoint=teacher.checkpoint_prefix,
                      teacher_config=teacher.bert_config)
    ofa = PruneOfaSettings(**values)
    ofa.validate()
    return ofa


def stage_settings(base, stage, **overrides):
    return dataclasses.replace(base, output_dir=os.path.join(base.output_dir, stage),
                               **overrides)


def write_stage_model(classifier):
    """``<stage>/model``: the trained weights (and ranges), the config marked sparse (and QAT).
    Returns the weights written."""
    s = classifier.settings
    values = checkpoint.read_checkpoint(tf.train.latest_checkpoint(s.output_dir))
    kept = {name: value for name, value in values.items()
            if any(re.search(pattern, name) for pattern in MODEL_VARIABLES)}
    config = mark_config(classifier.bert_config, kept)
    for method in classifier.methods:
        if isinstance(method, quantize.QatMethod):
            quantize.mark_config(config, method.settings)
    model_folder.write_model_folder(
        os.path.join(s.output_dir, MODEL_DIR), config, s.vocab_file, kept,
        step=f"{PROGRAM}/{os.path.basename(s.output_dir)}", source=s.init_checkpoint,
        flags=classifier.hparams())
    return kept


def run_stage(classifier, step_name):
    """Train one stage (resuming), write its model folder, evaluate that folder."""
    settings = classifier.settings
    model_dir = os.path.join(settings.output_dir, MODEL_DIR)
    recorded = run_record.recorded(classifier.hparams(), run_record.CLASSIFIER_PROCEDURE,
                                   run_record.CLASSIFIER_PATHS)
    done = run_record.completed(settings.output_dir, recorded, model_dir)
    if done:
        log.info("%s is already done (%s); nothing to do", settings.output_dir, done["summary"])
        return model_dir
    run_record.start(settings.output_dir, recorded)
    write_hparams_summary(settings.output_dir, classifier.hparams())
    seconds = classifier.train()
    sparsity = overall_sparsity(write_stage_model(classifier))
    summary = f"encoder sparsity {sparsity:.4f}"
    if settings.do_eval:
        result = classifier.evaluate(checkpoint_path=checkpoint.resolve_checkpoint(model_dir),
                                     train_seconds=seconds)
        metric = classifier.task.processor.primary_metric
        summary += f", {metric} {result[metric]:.4f}"
    print(f"{step_name}: {model_dir} ({summary})", flush=True)
    run_record.finish(settings.output_dir, recorded, summary, model_dir)
    return model_dir


def run_prune_ofa():
    config_file, vocab_file = model_folder.config_and_vocab(
        FLAGS.init_checkpoint, "init_checkpoint", FLAGS.bert_config_file, FLAGS.vocab_file)
    base = google_flags.settings_from_flags(bert_config_file=config_file, vocab_file=vocab_file)
    cli.require(base.do_train, "--do_train is required (evaluate a model folder with "
                               "bert.run_classifier)")
    cli.require_in_range(FLAGS.qat_epochs, "qat_epochs", 0.0)
    cli.require_in_range(FLAGS.qat_learning_rate, "qat_learning_rate", 0.0)
    qat = quantize.QatSettings(FLAGS.range_decay)
    qat.validate()
    method = PruneOfaMethod()
    # Reads and checks every split before anything is written; its step count sets the schedule.
    classifier = Classifier(stage_settings(base, SPARSE_STAGE), [method])
    ofa = teacher_settings(base, pruning_schedule(classifier.num_train_steps))
    method.settings = ofa
    sparse_model = run_stage(classifier, "sparse fine-tuning")
    if FLAGS.qat_epochs > 0:
        qat_settings = stage_settings(
            base, QAT_STAGE, init_checkpoint=sparse_model,
            bert_config_file=os.path.join(sparse_model, model_folder.CONFIG_FILE),
            num_train_epochs=FLAGS.qat_epochs, learning_rate=FLAGS.qat_learning_rate)
        locked = dataclasses.replace(ofa, schedule=PruningSchedule(block=ofa.schedule.block))
        run_stage(Classifier(qat_settings, [PruneOfaMethod(locked), quantize.QatMethod(qat)]),
                  "quantization-aware training")


main = cli.absl_main(PROGRAM, run_prune_ofa)  # what app.run calls (tests call it directly)


def console_main():
    cli.run_absl(PROGRAM, define_flags, run_prune_ofa)


if __name__ == "__main__":
    console_main()
