"""power_bert.main: the three steps end to end on a tiny fixture task, resuming, bad input."""
import json
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest

from bert import checkpoint, modeling
from conftest import REPO_ROOT
from power_bert import main as power_main
from power_bert import steps
from power_bert import token_selectors as selectors
from tiny_bert import write_small_model, write_sst2_task

MAX_SEQ_LENGTH = 16
NUM_LAYERS = 2
SST2_ROWS = 48


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    """A 2-layer BERT model folder (hidden 16, 64 positions), initialiser weights."""
    folder = tmp_path_factory.mktemp("tiny_bert")
    write_small_model(folder, NUM_LAYERS)
    return folder


def write_stsb_task(folder, rows=32):
    pairs = [("the cat sat .", "the cat sat .", 5.0), ("the dog sat .", "a cat sat .", 2.5),
             ("a good film .", "the plot is dull .", 0.5), ("what film ?", "who is it ?", 1.0)]
    folder.mkdir(parents=True, exist_ok=True)
    header = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2"
    lines = [header + "\tscore"]
    for i in range(rows):
        a, b, score = pairs[i % len(pairs)]
        lines.append(f"{i}\tg\tf\t2012\t{i}\ts\ts\t{a}\t{b}\t{score}")
    for split in ("train", "dev"):
        (folder / f"{split}.tsv").write_text("\n".join(lines) + "\n")
    (folder / "test.tsv").write_text(header + "\n0\tg\tf\t2012\t0\ts\ts\tthe cat .\ta dog .\n")
    return folder


def tiny_argv(model_dir, data_dir, output_dir, task="sst-2", **overrides):
    """Flags of a fast run; retention learns fast enough to drop padding within a few steps."""
    values = dict(TASK=task, CHECKPOINT_PATH=model_dir, DATA_DIR=data_dir, OUTPUT_DIR=output_dir,
                  MAX_SEQ_LENGTH=MAX_SEQ_LENGTH, EPOCH=1, BATCH_SIZE=8, LR_BERT=1e-3,
                  LR_SOFT_EXTRACT=0.02, LAMBDA=0.5, BENCHMARK_ITERATIONS=2,
                  BENCHMARK_BATCH_SIZES="1")
    values.update(overrides)
    argv = []
    for key, value in values.items():
        if value is True:
            argv.append(f"--{key}")
        elif value is not None:
            argv.append(f"--{key}={value}")
    return argv


@pytest.fixture(scope="module")
def trained(tiny_model_dir, tmp_path_factory):
    """One full three-step run on the SST-2 fixture, shared by the tests that inspect it."""
    root = tmp_path_factory.mktemp("power_run")
    data = write_sst2_task(root / "data", SST2_ROWS)
    output = root / "out"
    result = run_power(tiny_argv(tiny_model_dir, data, output, EPOCH=2))
    return result, data, output


def run_power(argv):
    """The run's result (main reports only its exit status)."""
    return power_main.run(power_main.build_parser().parse_args(argv), argv)


def main_error(argv, capsys):
    """(exit status, last stderr line) of main on bad input."""
    status = power_main.main(argv)
    return status, capsys.readouterr().err.strip().splitlines()[-1]


def read_config(model_dir):
    return modeling.BertConfig.from_json_file(os.path.join(model_dir, "bert_config.json"))


def test_three_steps_write_model_folders_log_and_configuration(trained):
    result, _, output = trained
    retention = result["power"]["retention"]
    assert len(retention) == NUM_LAYERS
    assert all(1 <= value <= MAX_SEQ_LENGTH for value in retention)
    assert retention == sorted(retention, reverse=True)
    assert retention[-1] < MAX_SEQ_LENGTH  # the search did eliminate word-vectors
    for name in power_main.STEP_FOLDERS:
        model_dir = output / name / steps.MODEL_DIR
        assert (model_dir / "vocab.txt").is_file() and (model_dir / "provenance.json").is_file()
        assert checkpoint.resolve_checkpoint(str(model_dir))
        assert not list((output / name / steps.TRAINING_DIR).glob("model.ckpt-*"))
    fine_tuned = read_config(result["fine_tuned"]["model_dir"])
    assert selectors.RETENTION_CONFIG_KEY not in fine_tuned.extra
    searched_dir = output / "2_configuration_search" / steps.MODEL_DIR
    assert read_config(searched_dir).extra[selectors.RETENTION_CONFIG_KEY] == retention
    soft = json.loads((searched_dir / steps.SOFT_RETENTION_FILE).read_text())
    assert selectors.read_retention_config(list(soft.values())) == retention
    assert not any(name.startswith("power_bert/")
                   for name in checkpoint.list_checkpoint(str(searched_dir)))
    assert read_config(result["power"]["model_dir"]).extra[
        selectors.RETENTION_CONFIG_KEY] == retention
    log_text = (output / power_main.LOG_FILE).read_text()
    for line in ("step 1 fine-tune, epoch 1/2: eval_accuracy = ",
                 "step 1 fine-tune, epoch 2/2: eval_accuracy = ",
                 "step 2 configuration search, epoch 2/2: eval_accuracy = ",
                 "retention sums ",
                 "step 3 re-train, epoch 2/2: eval_accuracy = ",
                 f"retention configuration: {selectors.format_retention_config(retention)}",
                 "PoWER-BERT on SST-2, dev eval_accuracy:", "speed-up x"):
        assert line in log_text, line
    assert set(result["latency"]) == {1}
    assert result["power"]["best_metric"] == max(result["power"]["epoch_metrics"])


def test_rerun_skips_complete_steps(trained, tiny_model_dir):
    result, data, output = trained
    again = run_power(tiny_argv(tiny_model_dir, data, output, EPOCH=2,
                                      BENCHMARK_ITERATIONS=0))
    assert again["power"] == result["power"] and again["fine_tuned"] == result["fine_tuned"]
    assert (output / power_main.LOG_FILE).read_text().count("already complete") == 3


def test_moved_output_with_a_missing_step_reruns_only_that_step(trained, tiny_model_dir,
                                                                 tmp_path):
    result, data, output = trained
    moved = tmp_path / "moved"
    shutil.copytree(output, moved)
    shutil.rmtree(moved / "3_retrain")
    again = run_power(tiny_argv(tiny_model_dir, data, moved, EPOCH=2,
                                      BENCHMARK_ITERATIONS=0))
    log_text = (moved / power_main.LOG_FILE).read_text().split("=== ")[-1]
    assert log_text.count("already complete") == 2
    assert "step 3 re-train, epoch 2/2" in log_text
    assert again["power"]["retention"] == result["power"]["retention"]
    assert again["power"]["model_dir"] == str(moved / "3_retrain" / steps.MODEL_DIR)


def test_changed_settings_are_refused(trained, tiny_model_dir, capsys):
    _, data, output = trained
    before = sorted(os.listdir(output))
    log_size = (output / power_main.LOG_FILE).stat().st_size
    status, line = main_error(tiny_argv(tiny_model_dir, data, output, EPOCH=2, LAMBDA=0.25),
                              capsys)
    assert status == 1 and "lambda: 0.5 -> 0.25" in line
    assert sorted(os.listdir(output)) == before
    assert (output / power_main.LOG_FILE).stat().st_size == log_size


def test_eval_only_reproduces_the_kept_metric(trained, tmp_path):
    result, data, _ = trained
    model_dir = result["power"]["model_dir"]
    argv = tiny_argv(model_dir, data, tmp_path / "eval", EVAL_ONLY=True, PREDICT_ONLY=True,
                     PRED_GLUE=True)
    assert power_main.main(argv) == 0
    text = (tmp_path / "eval" / "eval_results.txt").read_text()
    evaluated = {key: float(text.split(f"{key} = ")[1].split()[0])
                 for key in ("eval_accuracy", "eval_loss")}
    progress = json.loads((pathlib.Path(model_dir).parent / steps.PROGRESS_FILE).read_text())
    kept = progress["epochs"][progress["best_epoch"]]
    for key, value in evaluated.items():  # same weights, same configuration, same numbers
        assert value == pytest.approx(kept[key], abs=1e-5), key
    log_text = (tmp_path / "eval" / power_main.LOG_FILE).read_text()
    retention = selectors.format_retention_config(result["power"]["retention"])
    assert f"'{selectors.RETENTION_CONFIG_KEY}'): {retention}" in log_text  # read from config
    assert len((tmp_path / "eval" / power_main.TEST_RESULTS_FILE).read_text().splitlines()) == 2
    assert (tmp_path / "eval" / "SST-2.tsv").read_text().startswith("index\tprediction\n")


def test_regression_task_runs_all_steps(tiny_model_dir, tmp_path):
    data = write_stsb_task(tmp_path / "data")
    result = run_power(tiny_argv(tiny_model_dir, data, tmp_path / "out", task="sts-b",
                                 BENCHMARK_ITERATIONS=0))
    assert np.isfinite(result["power"]["best_metric"])
    log_text = (tmp_path / "out" / power_main.LOG_FILE).read_text()
    assert "step 3 re-train, epoch 1/1: eval_spearman = " in log_text
    assert result["latency"] is None


@pytest.mark.parametrize("overrides, message", [
    ({"EVAL_ONLY": True, "RETENTION_CONFIG": "16"}, "has 1 values; the model has 2 layers"),
    ({"EVAL_ONLY": True, "RETENTION_CONFIG": "16,x"}, "value 2 ('x') is not an integer"),
    ({"EVAL_ONLY": True, "RETENTION_CONFIG": "8,12"}, "value 2 (12) is larger than value 1"),
    ({"EVAL_ONLY": True, "RETENTION_CONFIG": "17,8"}, "value 1 (17) is above max_seq_length"),
    ({"EVAL_ONLY": True, "RETENTION_CONFIG": "8,0"}, "value 2 (0) is below 1"),
    ({"RETENTION_CONFIG": "8,4"}, "--RETENTION_CONFIG is used with --EVAL_ONLY"),
    ({"LAMBDA": -0.1}, "--LAMBDA=-0.1: must be >= 0"),
    ({"LR_BERT": -1e-5}, "--LR_BERT=-1e-05: must be >= 0"),
    ({"LR_SOFT_EXTRACT": -1}, "--LR_SOFT_EXTRACT=-1.0: must be >= 0"),
    ({"CHECKPOINT_PATH": "/nonexistent/bert_model.ckpt"}, "--CHECKPOINT_PATH="),
    ({"BERT_CONFIG_PATH": "/nonexistent/bert_config.json"}, "--BERT_CONFIG_PATH="),
    ({"VOCAB_PATH": "/nonexistent/vocab.txt"}, "--VOCAB_PATH="),
    ({"DATA_DIR": "/nonexistent/data"}, "--DATA_DIR="),
    ({"MODEL_FORMAT": "HDF5"}, "use --MODEL_FORMAT=CKPT"),
    ({"MAX_SEQ_LENGTH": 65}, "--MAX_SEQ_LENGTH=65"),
    ({"TASK": "wnli"}, "--TASK=wnli"),
])
def test_bad_input_is_one_error_and_writes_nothing(tiny_model_dir, tmp_path, overrides, message,
                                                   capsys):
    data = write_sst2_task(tmp_path / "data", SST2_ROWS)
    output = tmp_path / "out"
    status, line = main_error(tiny_argv(tiny_model_dir, data, output, **overrides), capsys)
    assert status == 1
    assert line.startswith("power_bert.main: error:") and message in line
    assert not output.exists()


def test_config_not_matching_checkpoint_fails_before_writing(tiny_model_dir, tmp_path, capsys):
    data = write_sst2_task(tmp_path / "data", SST2_ROWS)
    config = read_config(str(tiny_model_dir))
    config.intermediate_size = 48
    config.to_json_file(str(tmp_path / "wrong_config.json"))
    status, line = main_error(tiny_argv(tiny_model_dir, data, tmp_path / "out",
                                        BERT_CONFIG_PATH=tmp_path / "wrong_config.json"), capsys)
    assert status == 1 and "intermediate/dense/kernel: graph [16, 48]" in line
    assert not (tmp_path / "out").exists()


def test_command_line_error_and_help(tiny_model_dir, tmp_path):
    data = write_sst2_task(tmp_path / "data", SST2_ROWS)
    argv = tiny_argv(tiny_model_dir, data, tmp_path / "out", EVAL_ONLY=True,
                     RETENTION_CONFIG="8,12")
    process = subprocess.run([sys.executable, "-m", "power_bert.main"] + argv, cwd=REPO_ROOT,
                             capture_output=True, text=True, timeout=300)
    assert process.returncode != 0
    last = process.stderr.strip().splitlines()[-1]
    assert last == ("power_bert.main: error: --RETENTION_CONFIG: value 2 (12) is larger than "
                    "value 1 (8); the configuration must be non-increasing")
    assert not (tmp_path / "out").exists()
    process = subprocess.run([sys.executable, "-m", "power_bert.main", "--help"], cwd=REPO_ROOT,
                             capture_output=True, text=True, timeout=300)
    assert process.returncode == 0
    assert "HDF5" in process.stdout and "mrpc      6e-05" in process.stdout
