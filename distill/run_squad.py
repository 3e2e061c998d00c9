"""Distil a SQuAD student from a fine-tuned SQuAD teacher: bert.run_squad's flags plus the
teacher and the loss weights of distill.run_distill.

    python -m distill.run_squad --do_train --do_predict --init_checkpoint=STUDENT \\
        --teacher_model_dir=SQUAD_TEACHER/model --train_file=train-v1.1.json \\
        --predict_file=dev-v1.1.json --output_dir=squad_student

The soft-logit loss is the KL of the teacher's start and end distributions over positions (at
--temperature, × T²); the hidden-state and attention-map terms are the classifier's. The student
starts from any model folder (an extracted one, a FLOP-compact one: its config brings its
kernels) and ends as output_dir/model, which deploy.export_squad exports.
"""
from absl import flags

from bert import checkpoint, cli, modeling, run_squad, squad_model
from distill.method import DistillMethod, DistillSettings, load_teacher, parse_layer_map
from distill.run_distill import LOSS_FLAGS, define_distill_flags

FLAGS = flags.FLAGS
PROGRAM = "distill.run_squad"


def define_flags():
    run_squad.define_flags()
    define_distill_flags()


def distill_method(settings: squad_model.QaRunSettings):
    """The DistillMethod of a SQuAD run, its teacher checked to have the span head."""
    cli.require(FLAGS.teacher_model_dir, "--teacher_model_dir is required with --do_train")
    student_config = modeling.BertConfig.from_json_file(settings.bert_config_file)
    teacher_config, teacher_prefix = load_teacher(FLAGS.teacher_model_dir)
    cli.require(squad_model.HEAD_WEIGHTS in checkpoint.list_checkpoint(teacher_prefix),
                f"--teacher_model_dir={FLAGS.teacher_model_dir}: no SQuAD head "
                f"({squad_model.HEAD_WEIGHTS}); fine-tune the teacher with bert.run_squad")
    values = {name: FLAGS[name].value for name in LOSS_FLAGS}
    layer_map = values.pop("layer_map")
    distill_settings = DistillSettings(
        teacher_config=teacher_config, teacher_checkpoint=teacher_prefix,
        layer_map=parse_layer_map(layer_map) if layer_map else None, **values)
    distill_settings.validate(student_config)
    return DistillMethod(distill_settings)


def run():
    settings = run_squad.settings_from_flags()
    method_list = [distill_method(settings)] if settings.do_train else []
    squad_model.QaRun(settings, method_list).run()


main = cli.absl_main(PROGRAM, run)


def console_main():
    cli.run_absl(PROGRAM, define_flags, run)


if __name__ == "__main__":
    console_main()
