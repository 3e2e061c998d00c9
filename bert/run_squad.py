"""Fine-tune BERT on SQuAD v1.1 / v2.0 and predict answers: Google's run_squad flags over
``bert.squad_model``.

    python -m bert.run_squad --do_train --do_predict --init_checkpoint=$BERT_DIR \\
        --train_file=train-v1.1.json --predict_file=dev-v1.1.json --output_dir=squad_out

--init_checkpoint is a checkpoint prefix or a model folder; --bert_config_file and --vocab_file
default to the folder's. Both files are read and converted before anything is written. Training
resumes from output_dir's last checkpoint (same data order) and ends by writing the model folder
output_dir/model (config, vocab, checkpoint) that deploy.export_squad exports. --do_predict
writes predictions.json, nbest_predictions.json, null_odds.json (v2.0) and, when the file has
answers, eval_results.txt with the official exact_match / f1 (HasAns / NoAns for v2.0).
"""
import dataclasses

from absl import flags

from bert import cli, model_folder
from bert.squad_model import QaRun, QaRunSettings

FLAGS = flags.FLAGS
PROGRAM = "run_squad"

FLAG_HELP = {
    "vocab_file": "vocab.txt of the model (default: the --init_checkpoint folder's).",
    "bert_config_file": "bert_config.json of the model (default: the --init_checkpoint "
                        "folder's).",
    "init_checkpoint": "Checkpoint prefix or model folder to fine-tune (or to predict with).",
    "output_dir": "Where checkpoints, features, predictions and output_dir/model go.",
    "train_file": "SQuAD json to train on (e.g. train-v1.1.json).",
    "predict_file": "SQuAD json to predict (e.g. dev-v1.1.json); scored when it has answers.",
    "do_train": "Fine-tune on --train_file.",
    "do_predict": "Predict --predict_file.",
    "do_lower_case": "Lower-case input (uncased models).",
    "version_2_with_negative": "SQuAD v2.0: questions may have no answer.",
    "max_seq_length": "Tokens per window after WordPiece (padded).",
    "doc_stride": "Context pieces between the starts of a long context's windows.",
    "max_query_length": "Question pieces kept (the rest is cut).",
    "train_batch_size": "Training batch size.",
    "predict_batch_size": "Prediction batch size.",
    "save_checkpoints_steps": "Checkpoint every this many steps.",
    "max_train_examples": "Use only the first N training questions (0: all).",
    "n_best_size": "Candidate starts and ends per window, and answers in nbest_predictions.",
    "max_answer_length": "Longest answer in word pieces.",
    "log_every_n_steps": "Progress log and TensorBoard interval (steps).",
    "seed": "Graph-level random seed (dropout, head init, shuffle).",
    "learning_rate": "Peak AdamW learning rate.",
    "num_train_epochs": "Training epochs (over the windows).",
    "warmup_proportion": "Share of steps with linear warm-up.",
    "null_score_diff_threshold": "v2.0: answer nothing when null score - best span score is "
                                 "above this.",
}
STRING_FLAGS = ("vocab_file", "bert_config_file", "init_checkpoint", "output_dir", "train_file",
                "predict_file")
BOOL_FLAGS = ("do_train", "do_predict", "do_lower_case", "version_2_with_negative")
INTEGER_FLAGS = ("max_seq_length", "doc_stride", "max_query_length", "train_batch_size",
                 "predict_batch_size", "save_checkpoints_steps", "max_train_examples",
                 "n_best_size", "max_answer_length", "log_every_n_steps", "seed")
FLOAT_FLAGS = ("learning_rate", "num_train_epochs", "warmup_proportion",
               "null_score_diff_threshold")


def default(name):
    """A flag's default: the QaRunSettings field's (None for the required paths)."""
    field = {field.name: field for field in dataclasses.fields(QaRunSettings)}[name]
    return None if field.default is dataclasses.MISSING else field.default


def define_flags():
    for names, define in ((STRING_FLAGS, flags.DEFINE_string), (BOOL_FLAGS, flags.DEFINE_bool),
                          (INTEGER_FLAGS, flags.DEFINE_integer),
                          (FLOAT_FLAGS, flags.DEFINE_float)):
        for name in names:
            define(name, default(name), FLAG_HELP[name])


def settings_from_flags():
    """QaRunSettings from the parsed flags, config and vocab defaulting to the model folder's."""
    config_file, vocab_file = model_folder.config_and_vocab(
        FLAGS.init_checkpoint, "init_checkpoint", FLAGS.bert_config_file, FLAGS.vocab_file)
    values = {name: FLAGS[name].value for name in STRING_FLAGS + BOOL_FLAGS + INTEGER_FLAGS
              + FLOAT_FLAGS}
    values.update(bert_config_file=config_file, vocab_file=vocab_file)
    return QaRunSettings(**values)


def run():
    QaRun(settings_from_flags()).run()


main = cli.absl_main(PROGRAM, run)  # what app.run calls (tests call it directly)


def console_main():
    cli.run_absl(PROGRAM, define_flags, run)


if __name__ == "__main__":
    console_main()
