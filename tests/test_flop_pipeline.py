"""The three command-line steps end to end on a tiny model: factorize → prune (with a teacher,
then resumed) → remove_mask, checking the run folder, the TensorBoard tags and the outputs."""
import glob
import os
import subprocess
import sys

import tensorflow as tf

from bert import checkpoint
from conftest import REPO_ROOT
from tiny_bert import WORDS, write_factorized_model

# Ours and the FLOP seed's TensorBoard names (lambda_1_1, lambda_2_1, loss_1; precision, recall
# and f1_score on the dev set).
TRAIN_TAGS = {"lambda_1", "lambda_2", "lambda_1_1", "lambda_2_1", "alpha_lr", "lambda_lr",
              "model_lr", "expected_sparsity", "target_sparsity", "l2_regularization_loss",
              "loss", "loss_1", "distillation_loss"}
EVAL_TAGS = {"eval_accuracy", "precision", "recall", "f1_score", "loss",
             "deterministic_sparsity"}
BATCH = 8


def _mrpc_tsv(rows):
    words = WORDS
    lines = ["Quality\t#1 ID\t#2 ID\t#1 String\t#2 String"]
    for index in range(rows):
        first = " ".join(words[(index + k) % len(words)] for k in range(4))
        second = " ".join(words[(index * 3 + k) % len(words)] for k in range(3))
        lines.append(f"{index % 2}\t{index}\t{index + 1000}\t{first}\t{second}")
    return "\n".join(lines) + "\n"


def _prune(tmp_path, model_dir, epochs, *extra):
    return subprocess.run(
        [sys.executable, "-m", "flop.run_classifier", "--task_name=MRPC", "--do_train",
         "--do_eval", f"--data_dir={tmp_path / 'data'}", f"--vocab_file={model_dir / 'vocab.txt'}",
         f"--bert_config_file={model_dir / 'bert_config.json'}", f"--init_checkpoint={model_dir}",
         f"--output_dir={tmp_path / 'prune'}", "--max_seq_length=16",
         f"--train_batch_size={BATCH}", "--eval_batch_size=8", f"--num_train_epochs={epochs}",
         "--save_checkpoints_steps=2", "--target_sparsity=0.2", "--target_sparsity_warmup=2",
         "--regularization_scale=0.01", "--hidden_dropout_prob=0.05", *extra],
        cwd=REPO_ROOT, capture_output=True, text=True)


def _tags(run_dir):
    tags = set()
    for path in glob.glob(os.path.join(run_dir, "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            tags.update(value.tag for value in event.summary.value)
    return tags


def test_factorize_prune_resume_remove_mask(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.tsv").write_text(_mrpc_tsv(32))
    (tmp_path / "data" / "dev.tsv").write_text(_mrpc_tsv(12))
    write_factorized_model(tmp_path)

    first = _prune(tmp_path, tmp_path / "fact", 1, f"--teacher_checkpoint={tmp_path / 'dense'}")
    assert first.returncode == 0, first.stderr[-3000:]
    runs = os.listdir(tmp_path / "prune")
    assert len(runs) == 1
    run_dir = tmp_path / "prune" / runs[0]
    for name in ("bert_config.json", "vocab.txt", "hparams.json", "eval_results.txt"):
        assert (run_dir / name).is_file(), name
    assert "hidden_dropout_prob\": 0.05" in (run_dir / "bert_config.json").read_text()
    results = (run_dir / "eval_results.txt").read_text()
    assert "deterministic_sparsity = " in results and "global_step = 4" in results
    assert TRAIN_TAGS <= _tags(str(run_dir))
    assert EVAL_TAGS <= _tags(str(run_dir / "eval"))
    stored = checkpoint.list_checkpoint(str(run_dir))
    assert "bert/encoder/layer_0/attention/self/query/log_alpha" in stored
    assert "lagrangian/lambda_1" in stored
    assert not [name for name in stored if name.startswith("teacher/")]

    resumed = _prune(tmp_path, tmp_path / "fact", 2, "--resume",
                     f"--teacher_checkpoint={tmp_path / 'dense'}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert os.listdir(tmp_path / "prune") == runs
    assert "global_step = 8" in (run_dir / "eval_results.txt").read_text()

    removed = subprocess.run(
        [sys.executable, "-m", "flop.remove_mask", f"--checkpoint={run_dir}",
         f"--output_folder_dir={tmp_path / 'compact'}", "--latency_iterations=1",
         "--latency_batch_sizes=1", "--latency_seq_length=16"],
        cwd=REPO_ROOT, capture_output=True, text=True)
    assert removed.returncode == 0, removed.stderr[-3000:]
    info = (tmp_path / "compact" / "info.txt").read_text()
    assert info.startswith("dense_total_params: ")
    assert "latency_batch_1_seq_16_speedup" in info and info in removed.stdout
