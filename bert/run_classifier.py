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

from absl import flags

from bert import cli, distribution, glue, optimization
from bert.classifier import Classifier, ClassifierSettings

FLAGS = flags.FLAGS
PROGRAM = "run_classifier"


def define_model_flags():
    """The flags naming a model and its input (shared with extract_features)."""
    flags.DEFINE_string("vocab_file", None, "vocab.txt (WordPiece) or a SentencePiece .model.")
    flags.DEFINE_string("bert_config_file", None, "bert_config.json of the model.")
    flags.DEFINE_string("init_checkpoint", None, "Checkpoint prefix or model folder to start "
                        "from (or to evaluate/predict with).")
    flags.DEFINE_bool("do_lower_case", True, "Lower-case input (uncased models).")
    flags.DEFINE_integer("max_seq_length", 128, "Tokens per example after WordPiece (padded).")


def define_flags():
    """Google's run_classifier flags (defined by the command lines that use them, on demand)."""
    define_model_flags()
    flags.DEFINE_string("task_name", None, "GLUE task: " + ", ".join(glue.TASK_NAMES))
    flags.DEFINE_string("data_dir", None, "Folder with the task's train.tsv/dev.tsv/test.tsv.")
    flags.DEFINE_string("output_dir", None, "Where checkpoints, features and results go.")
    flags.DEFINE_bool("do_train", False, "Fine-tune on train.tsv.")
    flags.DEFINE_bool("do_eval", False, "Evaluate on dev.tsv and write eval_results.txt.")
    flags.DEFINE_bool("do_predict", False, "Predict test.tsv and write the GLUE submission file.")
    flags.DEFINE_integer("train_batch_size", 32, "Global training batch size: with N replicas "
                         "in sync (--distribution) each takes train_batch_size / N a step.")
    flags.DEFINE_integer("eval_batch_size", 8, "Evaluation batch size.")
    flags.DEFINE_integer("predict_batch_size", 8, "Prediction batch size.")
    flags.DEFINE_float("learning_rate", 5e-5, "Peak AdamW learning rate.")
    flags.DEFINE_float("weight_decay", optimization.DEFAULT_WEIGHT_DECAY,
                       "AdamW's decoupled weight decay rate (not on biases and LayerNorm).")
    flags.DEFINE_float("num_train_epochs", 3.0, "Training epochs.")
    flags.DEFINE_float("warmup_proportion", 0.1, "Share of steps with linear warm-up.")
    flags.DEFINE_integer("save_checkpoints_steps", 1000, "Checkpoint every this many steps.")
    flags.DEFINE_integer("keep_checkpoint_max", 3, "Checkpoints kept in output_dir.")
    flags.DEFINE_integer("max_train_examples", 0, "Use only the first N training examples "
                         "(0: all).")
    flags.DEFINE_integer("log_every_n_steps", 20, "Progress log interval (steps).")
    flags.DEFINE_integer("seed", 12345, "Graph-level random seed (dropout, head init, shuffle).")
    flags.DEFINE_enum("distribution", distribution.NONE, distribution.DISTRIBUTIONS,
                      "How training is spread: none (one device), mirrored (every local GPU), "
                      "multi_worker or parameter_server (the cluster in TF_CONFIG).")


def settings_from_flags(**overrides):
    """ClassifierSettings from the parsed flags; ``overrides`` replace fields."""
    names = {field.name for field in dataclasses.fields(ClassifierSettings)}
    values = {name: FLAGS[name].value for name in names if name in FLAGS}
    values.update(overrides)
    return ClassifierSettings(**values)


main = cli.absl_main(PROGRAM, lambda: Classifier(settings_from_flags()).run())  # what app.run calls (tests call it directly)


def console_main():
    cli.run_absl(PROGRAM, define_flags, lambda: Classifier(settings_from_flags()).run())


if __name__ == "__main__":
    console_main()
