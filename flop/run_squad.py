"""FLOP pruning of a factorized SQuAD model: bert.run_squad's flags plus the FLOP seed's.

    python -m flop.factorize --bert_config_file=SQUAD/model/bert_config.json \\
        --checkpoint=SQUAD/model --output_dir=SQUAD_f          # the span head is kept
    python -m flop.run_squad --do_train --do_predict --init_checkpoint=SQUAD_f \\
        --train_file=train-v1.1.json --predict_file=dev-v1.1.json --learning_rate=0 \\
        --target_sparsity=0.5 --output_dir=flop_squad
    python -m flop.remove_mask --checkpoint=flop_squad/model --output_folder_dir=SQUAD_compact

The gates and the Lagrangian train with the span loss (and, with --teacher_checkpoint, the KL of
the teacher's start and end distributions); output_dir/model keeps the gates, which remove_mask
folds into the compact model that bert.run_squad and deploy.export_squad then read. Training
resumes from output_dir (no timestamped run folders: a SQuAD run has no evaluation to pick a
best checkpoint by, so the last one is the result).
"""
from absl import flags

from bert import cli, modeling, run_squad
from bert.squad_model import QaRun
from flop import run_classifier as flop_flags
from flop.method import FlopMethod

FLAGS = flags.FLAGS
PROGRAM = "flop.run_squad"


def define_flags():
    run_squad.define_flags()
    flop_flags.define_flop_flags()


def run():
    flop_flags.validate_flop_flags()
    cli.require(not (FLAGS.resume or FLAGS.resume_dir),
                "--resume/--resume_dir: a SQuAD run resumes from --output_dir by itself")
    settings = run_squad.settings_from_flags()
    config = modeling.BertConfig.from_json_file(settings.bert_config_file)
    flop_flags.check_factorized(config)
    method_list = [FlopMethod(flop_flags.flop_settings(config))] if settings.do_train else []
    QaRun(settings, method_list).run()


main = cli.absl_main(PROGRAM, run)


def console_main():
    cli.run_absl(PROGRAM, define_flags, run)


if __name__ == "__main__":
    console_main()
