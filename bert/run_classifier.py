"""Fine-tune, evaluate and predict BERT on a GLUE task: Google's flags over ``bert.classifier``.

    python -m bert.run_classifier --task_name=MRPC --do_train --do_eval \\
        --data_dir=datasets/MRPC --vocab_file=$BERT_DIR/vocab.txt \\
        --bert_config_file=$BERT_DIR/bert_config.json --init_checkpoint=$BERT_DIR/bert_model.ckpt \\
        --output_dir=fine_tune_outputs/MRPC

Re-running into the same ``output_dir`` resumes from its last good checkpoint; Ctrl-C saves the
current step first. A model folder whose config carries a method's inference settings (e.g. a
PoWER-BERT retention configuration) is run with that method.
"""
import dataclasses
import functools

from absl import flags

from bert import cli, distribution, glue, tasks, user_task
from bert.classifier import Classifier, ClassifierSettings

FLAGS = flags.FLAGS
PROGRAM = "run_classifier"


def classifier_default(name):
    """A flag's default: the ClassifierSettings field's."""
    return cli.field_default(ClassifierSettings, name)


def define_model_flags():
    """The flags naming a model and its input (shared with extract_features)."""
    flags.DEFINE_string("vocab_file", None, "vocab.txt (WordPiece) or a SentencePiece .model.")
    flags.DEFINE_string("bert_config_file", None, "bert_config.json of the model.")
    flags.DEFINE_string("init_checkpoint", classifier_default("init_checkpoint"),
                        "Checkpoint prefix or model folder to start from (or to evaluate/predict "
                        "with).")
    flags.DEFINE_bool("do_lower_case", classifier_default("do_lower_case"),
                      "Lower-case input (uncased models).")
    flags.DEFINE_integer("max_seq_length", classifier_default("max_seq_length"),
                         "Tokens per example after WordPiece (padded).")


def define_flags():
    """Google's run_classifier flags (defined by the command lines that use them, on demand)."""
    define_model_flags()
    flags.DEFINE_string("task_name", None, "GLUE task (" + ", ".join(glue.TASK_NAMES) + "), a "
                        "name for your own data (with the flags below) or a task .json file.")
    flags.DEFINE_string("data_dir", None, "Folder with the task's train.tsv/dev.tsv/test.tsv "
                                          "(or your own data's files).")
    user_task.define_absl_flags()
    flags.DEFINE_string("output_dir", None, "Where checkpoints, features and results go.")
    for name, text in (("do_train", "Fine-tune on train.tsv."),
                       ("do_eval", "Evaluate on dev.tsv and write eval_results.txt."),
                       ("do_predict", "Predict test.tsv and write the GLUE submission file.")):
        flags.DEFINE_bool(name, classifier_default(name), text)
    flags.DEFINE_integer("train_batch_size", classifier_default("train_batch_size"),
                         "Global training batch size: with N replicas in sync (--distribution) "
                         "each takes train_batch_size / N a step.")
    for name, text in (
            ("eval_batch_size", "Evaluation batch size."),
            ("predict_batch_size", "Prediction batch size."),
            ("save_checkpoints_steps", "Checkpoint every this many steps."),
            ("keep_checkpoint_max", "Checkpoints kept in output_dir."),
            ("max_train_examples", "Use only the first N training examples (0: all)."),
            ("log_every_n_steps", "Progress log interval (steps)."),
            ("seed", "Graph-level random seed (dropout, head init, shuffle).")):
        flags.DEFINE_integer(name, classifier_default(name), text)
    for name, text in (
            ("learning_rate", "Peak AdamW learning rate."),
            ("weight_decay", "AdamW's decoupled weight decay rate (not on biases and "
                             "LayerNorm)."),
            ("num_train_epochs", "Training epochs."),
            ("warmup_proportion", "Share of steps with linear warm-up.")):
        flags.DEFINE_float(name, classifier_default(name), text)
    flags.DEFINE_enum("distribution", classifier_default("distribution"),
                      distribution.DISTRIBUTIONS,
                      "How training is spread: none (one device), mirrored (every local GPU), "
                      "multi_worker or parameter_server (the cluster in TF_CONFIG).")


def settings_from_flags(**overrides):
    """ClassifierSettings from the parsed flags; ``overrides`` replace fields."""
    names = {field.name for field in dataclasses.fields(ClassifierSettings)}
    values = {name: FLAGS[name].value for name in names if name in FLAGS}
    values["task_name"] = resolved_task_name()
    values.update(overrides)
    return ClassifierSettings(**values)


def resolved_task_name():
    """--task_name with --data_dir and the user-data flags, as libraries take it; resolved once
    per process (a run builds its settings once per stage, and resolving may read the whole
    train file for its labels)."""
    values = tuple(sorted(user_task.flag_values(FLAGS).items()))
    return _resolve_once(FLAGS.task_name, FLAGS.data_dir, values)


@functools.lru_cache(maxsize=None)
def _resolve_once(task_name, data_dir, values):
    return tasks.resolve(task_name, data_dir, dict(values))


main = cli.absl_main(PROGRAM, lambda: Classifier(settings_from_flags()).run())  # what app.run calls (tests call it directly)


def console_main():
    cli.run_absl(PROGRAM, define_flags, lambda: Classifier(settings_from_flags()).run())


if __name__ == "__main__":
    console_main()
