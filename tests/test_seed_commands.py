"""The FLOP seed's three commands, typed as its README prints them, on a tiny model.

    python ./flop/factorize.py --bert_config_file=... --checkpoint=.../bert_model.ckpt \
        --output_dir=..._f/bert_model_f.ckpt --finetuned
    python ./flop/run_classifier.py <every flag of the seed's run.sh>
    python ./flop/remove_mask.py --bert_config_file=<dense config> --checkpoint=<run> \
        --output_folder_dir=...
"""
import os
import subprocess
import sys

from bert import checkpoint, modeling
from conftest import REPO_ROOT
from tiny_bert import write_sst2_task, write_tiny_model

TIMEOUT = 600


def python(script, *flags):
    """``python ./<script> <flags>`` from the project root, as a user types it."""
    return subprocess.run([sys.executable, f"./{script}", *flags], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=TIMEOUT)


def test_seed_commands_as_written(tmp_path):
    bert_dir = tmp_path  # the seed's BERT_DIR: models and datasets/ below it
    write_tiny_model(bert_dir / "uncased_L-2_H-8", num_labels=2)  # a "fine-tuned" model
    write_sst2_task(bert_dir / "datasets" / "SST-2", rows=32)
    dense = bert_dir / "uncased_L-2_H-8"

    factorized = python("flop/factorize.py",
                        f"--bert_config_file={dense}/bert_config.json",
                        f"--checkpoint={dense}/bert_model.ckpt",
                        f"--output_dir={bert_dir}/uncased_L-2_H-8_f/bert_model_f.ckpt",
                        "--finetuned")
    assert factorized.returncode == 0, factorized.stderr[-2000:]
    checkpoint_dir = bert_dir / "uncased_L-2_H-8_f"
    assert (checkpoint_dir / "bert_model_f.ckpt.index").is_file()
    assert (checkpoint_dir / "bert_config.json").is_file()
    assert (checkpoint_dir / "vocab.txt").is_file()

    output_dir = tmp_path / "SST-2_Pruning"
    pruned = python(
        "flop/run_classifier.py", "--task_name=SST-2", "--do_train=true", "--do_eval=true",
        f"--data_dir={bert_dir}/datasets/SST-2/", f"--vocab_file={checkpoint_dir}/vocab.txt",
        f"--bert_config_file={checkpoint_dir}/bert_config.json",
        f"--init_checkpoint={checkpoint_dir}/bert_model_f.ckpt", "--max_seq_length=16",
        "--train_batch_size=8", "--learning_rate=0", "--num_train_epochs=2.0",
        "--learning_rate_warmup=2", "--lambda_learning_rate=0.05", "--alpha_learning_rate=0.05",
        "--target_sparsity=0.3", "--hidden_dropout_prob=0.1",
        "--attention_probs_dropout_prob=0.1", "--target_sparsity_warmup=4",
        "--regularization_scale=0", f"--output_dir={output_dir}/uncased_L-2_H-8_f")
    assert pruned.returncode == 0, pruned.stderr[-2000:]
    runs = os.listdir(output_dir / "uncased_L-2_H-8_f")
    assert len(runs) == 1
    run_dir = output_dir / "uncased_L-2_H-8_f" / runs[0]
    assert "global_step = 8" in (run_dir / "eval_results.txt").read_text()

    compact = tmp_path / "compact"
    removed = python("flop/remove_mask.py", f"--bert_config_file={dense}/bert_config.json",
                     f"--checkpoint={run_dir}", f"--output_folder_dir={compact}")
    assert removed.returncode == 0, removed.stderr[-2000:]
    info = (compact / "info.txt").read_text()
    for field in ("dense_total_params", "dense_pruned_params", "dense_origin_params",
                  "dense_sparsity", "non_kernel_params", "total_params", "pruned_total_params",
                  "actual_compact_rate"):
        assert f"{field}: " in info, field
    config = modeling.BertConfig.from_json_file(str(compact / "bert_config.json"))
    assert config.extra["pruned"] is True
    assert checkpoint.resolve_checkpoint(str(compact))
