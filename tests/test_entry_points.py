"""Every entry point as a process, on good input and on each class of bad input.

Each bad case asserts: the exit status, a last stderr line that starts with the program's name
and names the file, flag or row, no traceback, and nothing written or changed where the run
would have written (earlier outputs stay byte-identical).
"""
import dataclasses
import hashlib
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import tomllib
from typing import Callable, Optional

import pytest

from bert import checkpoint
from conftest import REPO_ROOT
from tiny_bert import small_tmpfs, write_factorized_model, write_small_model, write_sst2_task

TIMEOUT = 300
SEQ = 16
EXIT_INPUT_ERROR = 1  # bad input, a bad command line included
EXIT_SIGINT = 130
EXIT_SIGTERM = 143
# Seconds a run may take to save and stop after a stop signal.
STOP_GRACE_SECONDS = 60
NON_UTF8_LINE = b"a good film \xff\xfe .\t1\n"
FULL_DISK_BYTES = "48k"  # too small for one tiny checkpoint
# Google's two scripts keep their own names in messages; every other program is its module.
PROGRAM_NAMES = {"bert.run_classifier": "run_classifier",
                 "bert.extract_features": "extract_features"}


def run(module_or_script, *args, cwd=REPO_ROOT):
    command = ([sys.executable, module_or_script] if module_or_script.endswith(".py")
               else [sys.executable, "-m", module_or_script])
    return subprocess.run(command + [str(arg) for arg in args], cwd=cwd, capture_output=True,
                          text=True, timeout=TIMEOUT)


def last_line(process):
    lines = process.stderr.strip().splitlines()
    return lines[-1] if lines else ""


def tree_digest(path):
    """Every file under ``path`` with its content hash (missing path: empty)."""
    path = pathlib.Path(path)
    if not path.exists():
        return {}
    if path.is_file():
        return {".": hashlib.sha1(path.read_bytes()).hexdigest()}
    return {str(item.relative_to(path)): hashlib.sha1(item.read_bytes()).hexdigest()
            for item in sorted(path.rglob("*")) if item.is_file()}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A tiny model, its factorized and masked forms, and a tiny SST-2 task."""
    root = tmp_path_factory.mktemp("world")
    write_small_model(root / "model", num_labels=2)
    write_factorized_model(root / "flop")
    write_sst2_task(root / "data", rows=24)
    (root / "lines.txt").write_text("a good film .\nthe plot ||| is dull .\n")
    return root


def classifier_flags(world, output_dir, **overrides):
    values = dict(task_name="SST-2", data_dir=world / "data",
                  vocab_file=world / "model" / "vocab.txt",
                  bert_config_file=world / "model" / "bert_config.json",
                  init_checkpoint=world / "model", output_dir=output_dir, max_seq_length=SEQ,
                  train_batch_size=8, eval_batch_size=8, num_train_epochs=1,
                  learning_rate=1e-3, do_train=True, do_eval=True)
    values.update(overrides)
    return [f"--{key}={value}" for key, value in values.items() if value is not None]


def copy_model(world, tmp_path, edit_config=None, edit_vocab=None):
    """A copy of the tiny model folder with its config or vocab changed."""
    folder = tmp_path / "model"
    shutil.copytree(world / "model", folder)
    if edit_config:
        config_file = folder / "bert_config.json"
        config_file.write_text(edit_config(config_file.read_text()))
    if edit_vocab:
        (folder / "vocab.txt").write_text(edit_vocab((folder / "vocab.txt").read_text()))
    return folder


def copy_data(world, tmp_path, train_bytes):
    folder = tmp_path / "data"
    shutil.copytree(world / "data", folder)
    (folder / "train.tsv").write_bytes(train_bytes)
    return folder


def truncate_data_file(folder):
    data_file = next(pathlib.Path(folder).glob("*.data-00000-of-00001"))
    data_file.write_bytes(data_file.read_bytes()[:data_file.stat().st_size // 2])


# Success: every entry point exits 0 ------------------------------------------------------------
def test_run_classifier_succeeds_and_writes_results(world, tmp_path):
    process = run("bert.run_classifier", *classifier_flags(world, tmp_path / "out",
                                                           do_predict=True))
    assert process.returncode == 0, process.stderr[-2000:]
    for name in ("eval_results.txt", "test_results.tsv", "SST-2.tsv",
                 "bert_config.json", "vocab.txt"):  # output_dir is a model folder too
        assert (tmp_path / "out" / name).is_file(), name


def test_extract_features_exits_zero_after_writing(world, tmp_path):
    """Its line count used to become the exit status (80 after 80 lines)."""
    model = world / "model"
    process = run("bert.extract_features", f"--input_file={world / 'lines.txt'}",
                  f"--output_file={tmp_path / 'f.jsonl'}", f"--vocab_file={model / 'vocab.txt'}",
                  f"--bert_config_file={model / 'bert_config.json'}",
                  f"--init_checkpoint={model}", f"--max_seq_length={SEQ}", "--layers=-1")
    assert process.returncode == 0, process.stderr[-2000:]
    assert len((tmp_path / "f.jsonl").read_text().splitlines()) == 2


def test_benchmark_and_results_table_exit_zero(world, tmp_path):
    process = run("bert.benchmark", f"--model_dir={world / 'model'}", "--seq_length=8",
                  "--batch_sizes=1", "--iterations=1", "--train_steps=0")
    assert process.returncode == 0, process.stderr[-2000:]
    results = tmp_path / "fine_tune_outputs" / "SST-2" / "lr_5e-5"
    results.mkdir(parents=True)
    (results / "eval_results.txt").write_text("eval_accuracy = 0.5\n")
    process = run("bert.results_table", f"--output_dir={tmp_path / 'fine_tune_outputs'}")
    assert process.returncode == 0, process.stderr[-2000:]
    assert "SST-2" in process.stdout


def help_commands():
    """{name: command} of every entry point a user is told of: the console scripts of
    pyproject.toml, and the ``python -m`` modules and ``python x.py`` scripts README.md names."""
    with open(REPO_ROOT / "pyproject.toml", "rb") as handle:
        scripts = tomllib.load(handle)["project"]["scripts"]
    readme = (REPO_ROOT / "README.md").read_text()
    bin_dir = pathlib.Path(sys.executable).parent
    commands = {name: [str(bin_dir / name)] for name in scripts}
    commands.update({f"-m {name}": [sys.executable, "-m", name]
                     for name in re.findall(r"python -m (\w+(?:\.\w+)+)", readme)})
    commands.update({path: [sys.executable, path]
                     for path in re.findall(r"python (\S+\.py)\b", readme)})
    return commands


HELP_COMMANDS = help_commands()
# One of each kind in CI's bounded set (absl, argparse, the pre-training data tool, a script);
# every other command (~6 s each) with the slow tests.
HELP_IN_CI = ("tr-bert", "deploy-compress", "distill-pretraining-data", "datasets/download_glue.py")


@pytest.mark.parametrize("name", [
    name if name in HELP_IN_CI else pytest.param(name, marks=pytest.mark.slow)
    for name in sorted(HELP_COMMANDS)])
def test_help_exits_zero_and_prints_the_usage(name):
    process = subprocess.run(HELP_COMMANDS[name] + ["--help"], cwd=REPO_ROOT,
                             capture_output=True, text=True, timeout=TIMEOUT)
    assert process.returncode == 0, process.stdout[-1000:] + process.stderr[-2000:]
    assert process.stdout.lower().startswith("usage: ") and "--" in process.stdout


def test_console_scripts_are_installed():
    bin_dir = pathlib.Path(sys.executable).parent
    for script in ("bert-run-classifier", "bert-extract-features", "bert-convert-hf",
                   "bert-benchmark", "bert-results-table", "flop-factorize",
                   "flop-run-classifier", "flop-remove-mask", "power-bert"):
        assert (bin_dir / script).is_file(), f"{script} missing: is the project installed?"
    process = subprocess.run([str(bin_dir / "flop-factorize"), "--help"], capture_output=True,
                             text=True, timeout=TIMEOUT)
    assert process.returncode == 0 and "--output_dir" in process.stdout


# Bad input: one line, named, nothing written ----------------------------------------------------
@dataclasses.dataclass
class Case:
    """One bad input: the arguments (built in a scratch folder), and what must be said."""
    name: str
    program: str
    arguments: Callable  # (world, tmp_path) -> list of arguments
    message: str
    watched: Optional[str] = "out"  # what must stay absent or unchanged, below tmp_path


def _seed_outputs(world, tmp_path):
    """An earlier good run's outputs in tmp_path/out, which a failing run must not touch."""
    process = run("bert.run_classifier", *classifier_flags(world, tmp_path / "out"))
    assert process.returncode == 0, process.stderr[-2000:]


CASES = [
    # bad data
    Case("empty train.tsv", "bert.run_classifier",
         lambda w, t: classifier_flags(w, t / "out", data_dir=copy_data(w, t, b"sentence\tlabel\n")),
         "train.tsv"),
    Case("non-UTF-8 train.tsv", "bert.run_classifier",
         lambda w, t: classifier_flags(w, t / "out", data_dir=copy_data(
             w, t, b"sentence\tlabel\na film .\t0\n" + NON_UTF8_LINE)), "train.tsv line 3"),
    Case("non-UTF-8 data, PoWER-BERT", "power_bert.main",
         lambda w, t: ["--TASK=sst-2", f"--CHECKPOINT_PATH={w / 'model'}",
                       f"--DATA_DIR={copy_data(w, t, b'sentence	label' + bytes([10]) + NON_UTF8_LINE)}",
                       f"--OUTPUT_DIR={t / 'out'}", f"--MAX_SEQ_LENGTH={SEQ}"], "train.tsv line 2"),
    Case("missing input file", "bert.extract_features",
         lambda w, t: [f"--input_file={t / 'absent.txt'}", f"--output_file={t / 'out'}",
                       f"--vocab_file={w / 'model' / 'vocab.txt'}",
                       f"--bert_config_file={w / 'model' / 'bert_config.json'}",
                       f"--init_checkpoint={w / 'model'}", f"--max_seq_length={SEQ}",
                       "--layers=-1"], "--input_file="),
    # bad config / vocabulary
    Case("config without num_attention_heads", "bert.run_classifier",
         lambda w, t: classifier_flags(w, t / "out", bert_config_file=copy_model(
             w, t, edit_config=lambda text: text.replace('"num_attention_heads"', '"heads"'))
             / "bert_config.json"), "num_attention_heads"),
    Case("negative hidden_size", "bert.run_classifier",
         lambda w, t: classifier_flags(w, t / "out", bert_config_file=copy_model(
             w, t, edit_config=lambda text: text.replace('"hidden_size": 16',
                                                         '"hidden_size": -16'))
             / "bert_config.json"), "hidden_size"),
    Case("config not json", "flop.factorize",
         lambda w, t: [f"--bert_config_file={copy_model(w, t, edit_config=lambda _: '{oops')}"
                       "/bert_config.json", f"--checkpoint={w / 'model'}",
                       f"--output_dir={t / 'out'}"], "bert_config.json"),
    Case("vocab shorter than the embedding", "bert.run_classifier",
         lambda w, t: classifier_flags(w, t / "out", vocab_file=copy_model(
             w, t, edit_vocab=lambda text: "\n".join(text.split("\n")[:20]) + "\n")
             / "vocab.txt"), "vocab"),
    # bad checkpoint
    Case("truncated checkpoint", "bert.run_classifier",
         lambda w, t: classifier_flags(w, t / "out", init_checkpoint=_truncated_model(w, t)),
         "bert_model.ckpt"),
    Case("truncated checkpoint, factorize", "flop.factorize",
         lambda w, t: [f"--bert_config_file={w / 'model' / 'bert_config.json'}",
                       f"--checkpoint={_truncated_model(w, t)}", f"--output_dir={t / 'out'}"],
         "bert_model.ckpt"),
    Case("not a factorized checkpoint", "flop.run_classifier",
         lambda w, t: classifier_flags(w, t / "out", target_sparsity=0.5), "--init_checkpoint="),
    Case("not a masked checkpoint", "flop.remove_mask",
         lambda w, t: [f"--checkpoint={w / 'model'}", f"--output_folder_dir={t / 'out'}"],
         "--checkpoint="),
    Case("missing model folder", "bert.benchmark",
         lambda w, t: [f"--model_dir={t / 'absent'}"], "--model_dir=", watched=None),
    # bad flags
    Case("unknown flag", "bert.run_classifier",
         lambda w, t: classifier_flags(w, t / "out") + ["--bogus_flag=1"], "bogus_flag"),
    Case("max_seq_length above the positions", "bert.run_classifier",
         lambda w, t: classifier_flags(w, t / "out", max_seq_length=65), "--max_seq_length=65"),
    Case("learning rate not a number", "bert.run_classifier",
         lambda w, t: classifier_flags(w, t / "out", learning_rate="fast"), "learning_rate"),
    Case("seq_length 0", "bert.benchmark",
         lambda w, t: [f"--model_dir={w / 'model'}", "--seq_length=0"], "--seq_length=0",
         watched=None),
    Case("seq_length above the positions", "bert.benchmark",
         lambda w, t: [f"--model_dir={w / 'model'}", "--seq_length=65"], "--seq_length=65",
         watched=None),
    Case("target sparsity 1", "flop.run_classifier",
         lambda w, t: classifier_flags(w, t / "out", bert_config_file=w / "flop" / "fact"
                                       / "bert_config.json", init_checkpoint=w / "flop" / "fact",
                                       target_sparsity=1.0), "--target_sparsity=1"),
    Case("missing required flag", "flop.factorize",
         lambda w, t: [f"--checkpoint={w / 'model'}"], "--bert_config_file"),
    Case("retention not non-increasing", "power_bert.main",
         lambda w, t: ["--TASK=sst-2", f"--CHECKPOINT_PATH={w / 'model'}",
                       f"--DATA_DIR={w / 'data'}", f"--OUTPUT_DIR={t / 'out'}",
                       f"--MAX_SEQ_LENGTH={SEQ}", "--EVAL_ONLY", "--RETENTION_CONFIG=4,8"],
         "--RETENTION_CONFIG"),
    Case("results folder missing", "bert.results_table",
         lambda w, t: [f"--output_dir={t / 'absent'}"], "absent", watched=None),
    Case("export: no classifier head", "deploy.export",
         lambda w, t: [f"--model_dir={_headless_model(t)}", f"--output_dir={t / 'out'}"],
         "classifier head"),
    Case("benchmark: batch size 0", "deploy.benchmark",
         lambda w, t: [str(w / "model"), "--batch_size=0", f"--output_dir={t / 'out'}"],
         "--batch_size=0"),
    Case("compress: target sparsity above 1", "deploy.compress",
         lambda w, t: ["--task_name=SST-2", f"--data_dir={w / 'data'}",
                       f"--model_dir={w / 'model'}", f"--output_dir={t / 'out'}",
                       "--target_sparsity=1.5"], "--target_sparsity=1.5"),
    # unwritable output
    Case("output_dir is a file", "bert.run_classifier",
         lambda w, t: classifier_flags(w, _a_file(t / "out")), "is a file"),
    Case("output_dir is a file, factorize", "flop.factorize",
         lambda w, t: [f"--bert_config_file={w / 'model' / 'bert_config.json'}",
                       f"--checkpoint={w / 'model'}", f"--output_dir={_a_file(t / 'out')}"],
         "is a file"),
    Case("output folder is a file, remove_mask", "flop.remove_mask",
         lambda w, t: [f"--checkpoint={w / 'flop' / 'fact'}",
                       f"--output_folder_dir={_a_file(t / 'out')}"], "is a file"),
    Case("output file is a folder", "bert.extract_features",
         lambda w, t: [f"--input_file={w / 'lines.txt'}", f"--output_file={_a_dir(t / 'out')}",
                       f"--vocab_file={w / 'model' / 'vocab.txt'}",
                       f"--bert_config_file={w / 'model' / 'bert_config.json'}",
                       f"--init_checkpoint={w / 'model'}", f"--max_seq_length={SEQ}",
                       "--layers=-1"], "--output_file="),
]


def _headless_model(tmp_path):
    """A pretrained model folder: no classifier head to export."""
    write_small_model(tmp_path / "headless")
    return tmp_path / "headless"


def _truncated_model(world, tmp_path):
    folder = copy_model(world, tmp_path)
    truncate_data_file(folder)
    return folder


def _a_file(path):
    path.write_text("not a folder\n")
    return path


def _a_dir(path):
    path.mkdir()
    return path


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_bad_input_is_one_line_and_writes_nothing(world, tmp_path, case):
    arguments = case.arguments(world, tmp_path)
    before = tree_digest(tmp_path / case.watched) if case.watched else None
    process = run(case.program, *arguments)
    line = last_line(process)
    assert process.returncode == EXIT_INPUT_ERROR, process.stderr[-3000:]
    assert "Traceback" not in process.stderr, process.stderr[-3000:]
    assert line.startswith(f"{PROGRAM_NAMES.get(case.program, case.program)}: error: "), line
    assert case.message in line, line
    if case.watched:
        assert tree_digest(tmp_path / case.watched) == before


def test_failing_run_leaves_earlier_results_byte_identical(world, tmp_path):
    _seed_outputs(world, tmp_path)
    before = tree_digest(tmp_path / "out")
    broken = copy_data(world, tmp_path, b"sentence\tlabel\n" + NON_UTF8_LINE)
    process = run("bert.run_classifier", *classifier_flags(world, tmp_path / "out",
                                                           data_dir=broken, num_train_epochs=2))
    assert process.returncode == EXIT_INPUT_ERROR
    assert "train.tsv line 2" in last_line(process)
    assert tree_digest(tmp_path / "out") == before


def test_diverging_loss_names_the_step_and_keeps_the_last_good_checkpoint(world, tmp_path):
    process = run("bert.run_classifier", *classifier_flags(world, tmp_path / "out",
                                                           learning_rate=1e10))
    line = last_line(process)
    assert process.returncode == EXIT_INPUT_ERROR, process.stderr[-3000:]
    assert "Traceback" not in process.stderr
    assert "the loss became NaN at step " in line and "lower the learning rate" in line
    kept = checkpoint.resolve_checkpoint(str(tmp_path / "out"))
    values = checkpoint.read_checkpoint(kept)
    assert all(value.dtype.kind != "f" or (abs(value) < float("inf")).all()
               for value in values.values())  # the kept checkpoint holds no NaN
    assert not (tmp_path / "out" / "eval_results.txt").exists()


@pytest.mark.parametrize("signal_number, status", [(signal.SIGINT, EXIT_SIGINT),
                                                   (signal.SIGTERM, EXIT_SIGTERM)])
def test_stop_signal_saves_the_current_step(world, tmp_path, signal_number, status):
    flags = classifier_flags(world, tmp_path / "out", num_train_epochs=100000,
                             save_checkpoints_steps=1000000, log_every_n_steps=1)
    process = subprocess.Popen([sys.executable, "-m", "bert.run_classifier", *flags],
                               cwd=REPO_ROOT, stderr=subprocess.PIPE, text=True)
    for line in process.stderr:  # wait until training runs
        if "examples/s" in line:
            break
    process.send_signal(signal_number)
    stderr = process.communicate(timeout=STOP_GRACE_SECONDS)[1]
    assert process.returncode == status, stderr[-3000:]
    assert "Traceback" not in stderr
    line = stderr.strip().splitlines()[-1]
    name = signal.Signals(signal_number).name
    assert line.startswith(f"run_classifier: error: stopped by {name}; saved "), line
    saved = checkpoint.resolve_checkpoint(str(tmp_path / "out"))
    assert saved in line and int(saved.rsplit("-", 1)[1]) > 0  # the step reached, not step 0


def test_damaged_newest_checkpoint_falls_back_to_the_previous(world, tmp_path):
    output = tmp_path / "out"
    first = run("bert.run_classifier", *classifier_flags(world, output,
                                                         save_checkpoints_steps=2))
    assert first.returncode == 0, first.stderr[-2000:]
    newest = checkpoint.resolve_checkpoint(str(output))
    truncate_data_file_of(newest)
    again = run("bert.run_classifier", *classifier_flags(world, output, num_train_epochs=2,
                                                         save_checkpoints_steps=2))
    assert again.returncode == 0, again.stderr[-3000:]
    assert os.path.basename(newest) in again.stderr  # the damaged one is named
    assert "global_step = 6" in (output / "eval_results.txt").read_text()


def truncate_data_file_of(prefix):
    data_file = pathlib.Path(prefix + ".data-00000-of-00001")
    data_file.write_bytes(data_file.read_bytes()[:data_file.stat().st_size // 2])


@pytest.fixture
def full_disk(tmp_path):
    with small_tmpfs(tmp_path / "full", FULL_DISK_BYTES) as mount_point:
        yield mount_point


def test_full_disk_is_one_line_and_leaves_no_partial_files(world, full_disk):
    process = run("bert.run_classifier", *classifier_flags(world, full_disk / "out"))
    assert process.returncode == EXIT_INPUT_ERROR, process.stderr[-3000:]
    assert "Traceback" not in process.stderr
    assert "No space left on device" in last_line(process)
    leftovers = [str(p) for p in full_disk.rglob("*") if "tmp" in p.name or "_temp" in p.name]
    assert not leftovers

    process = run("flop.factorize", f"--bert_config_file={world / 'model' / 'bert_config.json'}",
                  f"--checkpoint={world / 'model'}", f"--output_dir={full_disk / 'fact'}")
    assert process.returncode == EXIT_INPUT_ERROR, process.stderr[-3000:]
    assert "Traceback" not in process.stderr
    assert "No space left on device" in last_line(process) or "ENOSPC" in last_line(process)
    assert not (full_disk / "fact").exists()
    assert not [p for p in full_disk.iterdir() if p.name.startswith("fact")]
