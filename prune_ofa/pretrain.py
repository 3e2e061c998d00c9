"""Prune OFA's first stage: prune the encoder once, while pre-training on raw text, distilling
from the dense model; every task then fine-tunes that one sparse model (prune_ofa.run_classifier).

    python -m bert.pretraining_data --input_file=corpus.txt --vocab_file=models/dense/vocab.txt \\
        --output_file=ofa/pretrain.tf_record --max_seq_length=128
    python -m prune_ofa.pretrain --input_file=ofa/pretrain.tf_record \\
        --init_checkpoint=models/dense --teacher_model_dir=models/dense \\
        --final_sparsity=0.9 --num_train_steps=20000 --output_dir=ofa/sparse90

(console script: prune-ofa-pretrain.) The objective is the core's masked LM (``bert.pretraining``)
plus distillation from the frozen dense teacher: its hidden states (the embeddings and every
layer) at --hidden_weight; the recipe also matches the teacher's masked-LM logits, which needs
a teacher with an MLM head — a sentence-embedding model such as all-MiniLM-L6-v2 has none, so
the hidden states carry the teacher here. The schedule (--initial_sparsity ... --block) prunes
every encoder kernel by magnitude; pruned weights stay zero (``prune_ofa.method``).
``<output_dir>/model`` is the sparse encoder, its config recording each kernel's sparsity, so
every later run on it keeps the pattern. Re-running the command resumes; a complete run re-run
with the same settings changes nothing, one with other settings is refused before anything is
written (``bert.run_record``).
"""
import dataclasses
import logging
import os

from absl import flags

from bert import checkpoint, cli, model_folder, pretraining, pretraining_data
from bert import run_record
from bert.pretraining import PretrainingRun
from prune_ofa import run_classifier
from prune_ofa.method import PruneOfaMethod, PruneOfaSettings, mark_config, overall_sparsity
from prune_ofa.schedule import PruningSchedule

FLAGS = flags.FLAGS
log = logging.getLogger("prune_ofa")

PROGRAM = "prune_ofa.pretrain"
PROVENANCE_STEP = "prune_ofa/pretrain"
DEFAULT_HIDDEN_WEIGHT = 1.0


@dataclasses.dataclass(kw_only=True)
class OfaPretrainingSettings(PretrainingRun):
    """The core trainer's settings, the teacher and the pruning schedule."""
    NON_NEGATIVE = PretrainingRun.NON_NEGATIVE + ("hidden_weight",)
    teacher_model_dir: str
    hidden_weight: float = DEFAULT_HIDDEN_WEIGHT
    schedule: PruningSchedule = PruningSchedule()


def define_flags():
    pretraining.define_trainer_flags()
    run_classifier.define_pruning_flags()
    flags.DEFINE_string("teacher_model_dir", None, "The dense model folder distilled from "
                        "(usually --init_checkpoint's).")
    flags.DEFINE_float("hidden_weight", DEFAULT_HIDDEN_WEIGHT,
                       "Weight of the hidden-state distillation loss.")


def read_settings():
    """Every flag and file checked; nothing written."""
    cli.require(FLAGS.init_checkpoint, "--init_checkpoint is required (the dense model folder "
                                       "to prune)")
    source = model_folder.load(FLAGS.init_checkpoint, "init_checkpoint")
    teacher = model_folder.load(FLAGS.teacher_model_dir or FLAGS.init_checkpoint,
                                "teacher_model_dir", need_vocab=False, verify_weights=True)
    cli.require(teacher.bert_config.vocab_size == source.bert_config.vocab_size,
                f"--teacher_model_dir: vocab_size {teacher.bert_config.vocab_size} differs from "
                f"the model's {source.bert_config.vocab_size}")
    values = {field.name: FLAGS[field.name].value
              for field in dataclasses.fields(PretrainingRun)
              if field.name in FLAGS and field.name != "input_files"}
    values.update(bert_config_file=os.path.join(source.path, model_folder.CONFIG_FILE),
                  vocab_file=FLAGS.vocab_file or source.vocab_file)
    settings = OfaPretrainingSettings(
        input_files=pretraining_data.expand_files(FLAGS.input_file, "input_file"),
        teacher_model_dir=teacher.path, hidden_weight=FLAGS.hidden_weight,
        schedule=run_classifier.pruning_schedule(FLAGS.num_train_steps, "num_train_steps"),
        **values)
    settings.validate()
    cli.require(settings.schedule.prunes, "--final_sparsity is required (> 0): this stage "
                                          "prunes")
    ofa = PruneOfaSettings(settings.schedule, teacher_checkpoint=teacher.checkpoint_prefix,
                           teacher_config=teacher.bert_config, distill_weight=0.0,
                           hidden_weight=settings.hidden_weight)
    ofa.validate()
    return settings, source.bert_config, ofa


def run_pretraining():
    settings, config, ofa = read_settings()
    values = dataclasses.asdict(settings)
    values.update(values.pop("schedule"))  # a changed flag is named, not "schedule"
    recorded = run_record.recorded(values, run_record.PRETRAINING_PROCEDURE,
                                   run_record.PRETRAINING_PATHS)
    done = run_record.completed(settings.output_dir, recorded, settings.model_dir)
    if done:
        log.info("%s is already done (%s); nothing to do", settings.output_dir, done["summary"])
        return
    run_record.start(settings.output_dir, recorded)
    model_dir = pretraining.pretrain(settings, config, [PruneOfaMethod(ofa)],
                                     step=PROVENANCE_STEP)
    values = checkpoint.read_checkpoint(model_dir)
    # Only the config changes: the sparsity measured from the weights just written.
    mark_config(config, values, ofa.schedule.block).to_json_file(
        os.path.join(model_dir, model_folder.CONFIG_FILE))
    summary = f"encoder sparsity {overall_sparsity(values):.4f}"
    print(f"sparse encoder: {model_dir} ({summary})", flush=True)
    run_record.finish(settings.output_dir, recorded, summary, model_dir)


main = cli.absl_main(PROGRAM, run_pretraining)  # what app.run calls (tests call it directly)


def console_main():
    cli.run_absl(PROGRAM, define_flags, run_pretraining)


if __name__ == "__main__":
    console_main()
