"""Bort's pre-training distillation for a user with raw text: masked-LM data, then MLM plus
hidden-state distillation from the teacher's encoder into the student.

    python -m distill.pretraining create_pretraining_data --input_file=corpus.txt \\
        --vocab_file=models/student/vocab.txt --output_file=pretrain/train.tf_record \\
        --max_seq_length=128 --max_predictions_per_seq=20 --dupe_factor=10
    python -m distill.pretraining run_pretraining_distillation \\
        --input_file=pretrain/train.tf_record --init_checkpoint=models/student \\
        --teacher_model_dir=models/teacher --output_dir=pretrain/run --num_train_steps=10000

(console scripts: distill-pretraining-data, distill-pretrain.) create_pretraining_data is the
core's data tool (``bert.pretraining_data``: Google's masking, no next-sentence task), the same
as bert-pretraining-data. Training is the core's pre-training (``bert.pretraining``): the
masked LM (``bert.masked_lm``) and, here, task distillation's hidden-state term as methods of
the hook phases (``bert.methods``); ``pretrain(..., method_list)`` adds any other. It resumes
(re-run the same command) and stops on a NaN loss, a stop signal or a full disk as fine-tuning
does; a complete run re-run with the same settings changes nothing, one with other settings is
refused (``bert.run_record``). Every input record is read once before training, so a damaged
file fails first. TensorBoard shows mlm_loss and distill_hidden_loss. --output_dir/model is the
student's encoder as a plain model folder (no MLM head, no projections) that distill.run_distill
and bert.run_classifier fine-tune. The MLM head has Google's names (cls/predictions/...; output
embeddings tied to word_embeddings) and starts from the student folder when that has one.
"""
import dataclasses
import logging
import os
import sys
from typing import Optional

from absl import flags

from bert import (checkpoint, cli, model_folder, modeling, pretraining, pretraining_data,
                  tokenization)
from bert.errors import UsageError
from bert.pretraining import PretrainingRun
from bert import run_record
from distill.method import (DEFAULT_HIDDEN_WEIGHT, LAYER_MAP_HELP, DistillMethod,
                            DistillSettings, layer_pairs, load_teacher, parse_layer_map)

FLAGS = flags.FLAGS
log = logging.getLogger("distill")

DATA_PROGRAM = "distill.pretraining create_pretraining_data"
TRAIN_PROGRAM = "distill.pretraining run_pretraining_distillation"
PROVENANCE_STEP = "distill/pretraining"
# The student's vocabulary defaults to the teacher's when --init_checkpoint is not a folder.
VOCAB_HELP = ("vocab.txt written beside the student (default: --init_checkpoint's, else the "
              "teacher's).")


@dataclasses.dataclass(kw_only=True)
class PretrainingSettings(PretrainingRun):
    """One pre-training distillation run: the core trainer's settings and the teacher's (flag
    names are the field names)."""
    NON_NEGATIVE = PretrainingRun.NON_NEGATIVE + ("hidden_weight",)
    teacher_model_dir: str
    hidden_weight: float = DEFAULT_HIDDEN_WEIGHT
    layer_map: Optional[str] = None

    def validate_values(self):
        """The core's checks (hidden_weight among the weights), then: some term learns."""
        super().validate_values()
        cli.require(self.mlm_weight or self.hidden_weight,
                    "--mlm_weight and --hidden_weight are both 0: nothing would be learned")


def objective_methods(settings, teacher_config, teacher_prefix):
    """Distillation's part of the pre-training objective (the masked LM is the core's, added by
    ``bert.pretraining.pretrain``): task distillation's hidden-state term alone (no logits to
    match); a term of weight 0 builds no teacher."""
    if not settings.hidden_weight:
        return []
    return [DistillMethod(DistillSettings(
        teacher_config, teacher_prefix, logit_weight=0.0, hidden_weight=settings.hidden_weight,
        attention_weight=0.0,
        layer_map=parse_layer_map(settings.layer_map) if settings.layer_map else None))]


def pretrain(settings, student_config, teacher_config, teacher_prefix, method_list=()):
    """Train to num_train_steps (resuming), then write output_dir/model. Returns its path.

    ``method_list``: methods added to the objective (a kernel transform, a token selector),
    composed as in a classifier run (``bert.pretraining.pretrain``)."""
    return pretraining.pretrain(
        settings, student_config,
        objective_methods(settings, teacher_config, teacher_prefix) + list(method_list),
        step=PROVENANCE_STEP)


def define_train_flags():
    """The core trainer's flags, then the teacher's."""
    pretraining.define_trainer_flags({"vocab_file": VOCAB_HELP})
    flags.DEFINE_string("teacher_model_dir", None, "Model folder of the teacher.")
    flags.DEFINE_float("hidden_weight", DEFAULT_HIDDEN_WEIGHT,
                       "Weight of the hidden-state distillation loss.")
    flags.DEFINE_string("layer_map", None, LAYER_MAP_HELP)


def run_pretraining_distillation():
    init = FLAGS.init_checkpoint
    config_file = model_folder.file_from_folder(
        FLAGS.bert_config_file, "bert_config_file", init, "init_checkpoint",
        model_folder.find_config, "the student's bert_config.json")
    teacher_config, teacher_prefix = load_teacher(FLAGS.teacher_model_dir)
    try:
        if init:
            checkpoint.resolve_checkpoint(init)
    except FileNotFoundError as error:
        raise UsageError(str(error)) from None
    folder_flag, folder = (("init_checkpoint", init) if init and os.path.isdir(init)
                           else ("teacher_model_dir", FLAGS.teacher_model_dir))
    vocab_file = model_folder.file_from_folder(FLAGS.vocab_file, "vocab_file", folder,
                                               folder_flag, checkpoint.find_vocab,
                                               model_folder.VOCAB_EXPECTED)
    student_config = modeling.BertConfig.from_json_file(config_file)
    cli.require(student_config.vocab_size == teacher_config.vocab_size,
                f"--teacher_model_dir: the teacher's vocab_size {teacher_config.vocab_size} "
                f"differs from the student's {student_config.vocab_size}")
    tokenization.check_vocab_matches_config(vocab_file, student_config.vocab_size)
    values = {field.name: FLAGS[field.name].value
              for field in dataclasses.fields(PretrainingSettings)
              if field.name in FLAGS and field.name != "input_files"}
    values.update(bert_config_file=config_file, vocab_file=vocab_file)
    settings = PretrainingSettings(
        input_files=pretraining_data.expand_files(FLAGS.input_file, "input_file"), **values)
    settings.validate()
    layer_pairs(student_config.num_hidden_layers, teacher_config.num_hidden_layers,
                parse_layer_map(settings.layer_map) if settings.layer_map else None)
    pretrain_once(settings, student_config, teacher_config, teacher_prefix)


def pretrain_once(settings, student_config, teacher_config, teacher_prefix):
    """``pretrain`` unless a complete run with these settings is in output_dir already."""
    recorded = run_record.recorded(dataclasses.asdict(settings),
                                   run_record.PRETRAINING_PROCEDURE,
                                   run_record.PRETRAINING_PATHS)
    done = run_record.completed(settings.output_dir, recorded, settings.model_dir)
    if done:
        log.info("%s is already done (%s); nothing to do", settings.output_dir,
                 done["summary"])
        return
    run_record.start(settings.output_dir, recorded)
    pretrain(settings, student_config, teacher_config, teacher_prefix)
    run_record.finish(settings.output_dir, recorded,
                      f"trained to step {settings.num_train_steps}", settings.model_dir)


def data_main():
    cli.run_absl(DATA_PROGRAM, pretraining_data.define_data_flags,
                 pretraining_data.create_pretraining_data)


def train_main():
    cli.run_absl(TRAIN_PROGRAM, define_train_flags, run_pretraining_distillation)


COMMANDS = {"create_pretraining_data": data_main, "run_pretraining_distillation": train_main}


if __name__ == "__main__":
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    if command in ("-h", "--help"):
        print(f"usage: python -m distill.pretraining {{{','.join(COMMANDS)}}} [--flags]\n\n"
              f"{__doc__}\nEach command's own flags: python -m distill.pretraining COMMAND "
              "--help")
        sys.exit(cli.EXIT_OK)
    if command not in COMMANDS:
        sys.exit(cli.fail("distill.pretraining", f"expected a command, one of "
                                                 f"{', '.join(COMMANDS)}; got {command!r}"))
    sys.argv = [f"{sys.argv[0]} {command}"] + sys.argv[2:]
    COMMANDS[command]()
