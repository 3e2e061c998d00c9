"""deploy.compress, deploy.export and deploy.benchmark as a user runs them (issue 20).

Bad input is one last stderr line naming the user's flag or file, no traceback, found before
anything is written (earlier outputs stay byte-identical). A re-run re-runs exactly the step a
changed setting changes and the steps after it; an unchanged one changes no file but removes
what killed writes left. kill -9 of the recipe leaves no process behind and a checkpoint to
resume from, and a second run on the same folder is refused meanwhile. A full disk names the
path.
"""
import errno
import hashlib
import os
import pathlib
import shutil
import subprocess
import sys
import time

import pytest

from bert import checkpoint, cli, files
from conftest import REPO_ROOT
from deploy import benchmark, budget, compress
import tiny_bert
from tiny_bert import (initializer_weights, small_tmpfs, tiny_config, write_small_model,
                       write_sst2_task, write_tiny_model)

TIMEOUT = 600
SEQ = 16
EXIT_INPUT_ERROR = 1
STOP_SECONDS = 20  # a step's tool, sent SIGTERM when the recipe dies, saves and ends by then
POLL_SECONDS = 0.2
LONG_EPOCHS = 5000  # a fine-tuning that outlasts the test
CHECKPOINT_STEPS = 5
LONG_AGO = 946684800  # 2000-01-01: before any process now running started
SMALL_DISK = "8k"  # a tmpfs that a tiny model's SavedModel does not fit in
FULL_DISK_VARIABLE = "BERT_PRUNING_TEST_FULL_DISK"
# A sitecustomize that makes the disk under $BERT_PRUNING_TEST_FULL_DISK full: files opened
# there for writing are created, but their bytes go to /dev/full (ENOSPC on write or close,
# an error without a file name, as on a real full disk).
FULL_DISK_SITE = f'''
import builtins, io, os
_full, _open = os.environ.get("{FULL_DISK_VARIABLE}"), builtins.open
def _open_on_full_disk(file, mode="r", *args, **kwargs):
    if (_full and isinstance(file, (str, os.PathLike)) and any(c in mode for c in "wax")
            and os.path.abspath(file).startswith(_full)):
        _open(file, "w").close()
        return _open("/dev/full", mode.replace("x", "w").replace("a", "w"), *args, **kwargs)
    return _open(file, mode, *args, **kwargs)
builtins.open = io.open = _open_on_full_disk
'''


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A pretrained tiny model, a fine-tuned-shaped one (classifier head), a tiny SST-2."""
    root = tmp_path_factory.mktemp("deploy_world")
    write_small_model(root / "pretrained")
    write_small_model(root / "headed", num_labels=2)
    write_sst2_task(root / "data", rows=16)
    return root


def compress_command(world, output_dir, *extra):
    """The tiny chain with checkpoints too rare to matter and no timing."""
    return tiny_bert.compress_command(world, output_dir, *extra, max_seq_length=SEQ,
                                      max_train_examples=8, target_sparsity_warmup=1,
                                      save_checkpoints_steps=1000, latency_iterations=0)


def run(command, **kwargs):
    return subprocess.run([str(part) for part in command], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=TIMEOUT, **kwargs)


def module(name, *arguments):
    return [sys.executable, "-m", name, *arguments]


def error_lines(process):
    return [line for line in process.stderr.splitlines() if ": error: " in line]


def assert_one_line(process, program, expected):
    """Exit 1, no traceback, one error line (the last), naming ``expected``."""
    assert process.returncode == EXIT_INPUT_ERROR, process.stderr[-3000:]
    assert "Traceback" not in process.stderr, process.stderr[-3000:]
    last = process.stderr.strip().splitlines()[-1]
    assert error_lines(process) == [last], process.stderr[-3000:]
    assert last.startswith(f"{program}: error: ") and expected in last, last


def tree_digest(path):
    """{relative path: sha1} of every file under ``path`` (empty when it is absent)."""
    path = pathlib.Path(path)
    return {str(item.relative_to(path)): hashlib.sha1(item.read_bytes()).hexdigest()
            for item in sorted(path.rglob("*")) if item.is_file()}


@pytest.fixture(scope="module")
def fine_tuned(world, tmp_path_factory):
    """The fixed recipe's first step, run: the earlier outputs of the tests below."""
    output = tmp_path_factory.mktemp("fine_tuned") / "out"
    process = run(compress_command(world, output, f"--stop_after={compress.FINE_TUNE_DIR}"))
    assert process.returncode == 0, process.stdout[-2000:] + process.stderr[-3000:]
    return output


# Re-runs: a changed setting re-runs its step and the steps after it, nothing else ---------------
@pytest.mark.slow
def test_a_changed_setting_re_runs_its_step_and_the_steps_after_it(world, tmp_path):
    output = tmp_path / "out"
    command = compress_command(world, output, f"--stop_after={compress.COMPACT_DIR}")
    first = run(command)
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-3000:]
    kept = {step: tree_digest(output / step)
            for step in (compress.FINE_TUNE_DIR, compress.FACTORIZED_DIR)}
    process = run(command + ["--target_sparsity=0.4"])
    assert process.returncode == 0, process.stderr[-3000:]
    lines = process.stdout.splitlines()
    for step in kept:
        assert f"{step}: already done, skipped" in lines
        assert tree_digest(output / step) == kept[step]
    assert (f"{compress.PRUNE_DIR}: settings changed (target_sparsity 0.3 -> 0.4): re-running "
            "it and the steps after it") in lines
    assert (f"{compress.COMPACT_DIR}: settings changed (the step it starts from changed): "
            "re-running it and the steps after it") in lines
    for step in (compress.PRUNE_DIR, compress.COMPACT_DIR):
        assert f"{step}: done in" in process.stdout


def ended_pid():
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_an_unchanged_re_run_changes_no_file_and_removes_what_killed_writes_left(
        world, fine_tuned, tmp_path):
    output = tmp_path / "out"
    shutil.copytree(fine_tuned, output)
    zombie = subprocess.Popen(["sleep", str(TIMEOUT)])
    zombie.kill()  # not reaped until the end: a zombie, as after a kill -9 of its parent
    try:
        ended = [  # what processes that ended left: the killed export beside a step
            # this run never reaches, a zombie's model folder, a pid a later process took over
            output / f"{compress.EXPORT_DIR}.tmp-{ended_pid()}",
            output / compress.FINE_TUNE_DIR / f"{compress.MODEL_DIR}.tmp-{zombie.pid}",
            output / f"{compress.PRUNE_DIR}.tmp-{os.getppid()}"]
        for leftover in ended:
            leftover.mkdir()
            (leftover / "model.onnx").write_text("half written")
        os.utime(ended[-1], (LONG_AGO, LONG_AGO))
        running = output / f"{compress.FACTORIZED_DIR}.tmp-{os.getpid()}"  # this test writes it
        running.write_text("in progress")
        before = {name: digest for name, digest in tree_digest(output).items()
                  if not any(leftover.name in name for leftover in ended)}
        process = run(compress_command(world, output, f"--stop_after={compress.FINE_TUNE_DIR}"))
    finally:
        zombie.wait()
    assert process.returncode == 0, process.stderr[-3000:]
    assert [line for line in process.stdout.splitlines() if "skipped" in line] == [
        f"{compress.FINE_TUNE_DIR}: already done, skipped"]
    assert tree_digest(output) == before
    assert running.exists() and not any(leftover.exists() for leftover in ended)


# kill -9 and a second run on the same folder ------------------------------------------------
def processes_of(output):
    """Pids of live processes whose command line names ``output`` (zombies have ended)."""
    found = []
    for stat in pathlib.Path("/proc").glob("[0-9]*/stat"):
        try:
            state = stat.read_text().rpartition(")")[2].split()[0]
            if state not in files.ENDED_STATES and str(output).encode() in (
                    stat.parent / "cmdline").read_bytes():
                found.append(int(stat.parent.name))
        except (OSError, IndexError):
            continue  # it ended while we looked
    return found


def start_training(command, log):
    """Start ``command`` with its output to ``log``; return it once its step trains."""
    with open(log, "w") as handle:
        process = subprocess.Popen([str(part) for part in command], cwd=REPO_ROOT,
                                   stdout=handle, stderr=subprocess.STDOUT)
    deadline = time.time() + TIMEOUT
    while "examples/s" not in log.read_text() and process.poll() is None:
        assert time.time() < deadline, log.read_text()[-3000:]
        time.sleep(POLL_SECONDS)
    assert process.poll() is None, log.read_text()[-3000:]
    return process


def test_kill_9_ends_the_step_and_a_second_run_is_refused_while_it_runs(world, tmp_path):
    output = tmp_path / "out"
    command = compress_command(world, output, f"--stop_after={compress.FINE_TUNE_DIR}",
                               f"--epochs={LONG_EPOCHS}",
                               f"--save_checkpoints_steps={CHECKPOINT_STEPS}")
    first = start_training(command, tmp_path / "first.log")
    assert f"--save_checkpoints_steps={CHECKPOINT_STEPS}" in (tmp_path / "first.log").read_text()
    second = run(command)
    assert_one_line(second, "deploy.compress", f"--output_dir={output}: another run is working")

    first.kill()
    first.wait()
    deadline = time.time() + STOP_SECONDS
    while processes_of(output) and time.time() < deadline:
        time.sleep(POLL_SECONDS)
    assert not processes_of(output), "the step's tool outlived the killed recipe"
    saved = checkpoint.resolve_checkpoint(str(output / compress.FINE_TUNE_DIR /
                                              compress.TRAINING_DIR))
    assert int(saved.rsplit("-", 1)[1]) > 0  # what the next run resumes from


# Bad flags and files: one line naming them, before anything is written -------------------------
def truncated_model(world, tmp_path):
    folder = tmp_path / "truncated"
    shutil.copytree(world / "headed", folder)
    data = next(folder.glob("*.data-00000-of-00001"))
    data.write_bytes(data.read_bytes()[:data.stat().st_size // 2])
    return folder


@pytest.mark.parametrize("flags, expected", [
    (["--prune_learning_rate=-1"], "--prune_learning_rate=-1.0: must be in [0, inf)"),
    (["--power_epochs=0"], "--power_epochs=0: must be positive"),
    (["--max_seq_length=65"], "--max_seq_length=65: must be in [3, 64]"),
    (["--speed", "2", "--recipe=budget"], "unrecognized arguments: --speed 2"),
    ("truncated model", "bert_model.ckpt is damaged or truncated"),
], ids=["prune learning rate", "power epochs", "seq above positions", "abbreviation",
        "truncated model"])
def test_bad_input_to_any_step_is_one_line_before_anything_is_written(
        world, fine_tuned, tmp_path, flags, expected):
    if flags == "truncated model":
        flags = [f"--model_dir={truncated_model(world, tmp_path)}"]
    before = tree_digest(fine_tuned)
    process = run(compress_command(world, fine_tuned, *flags))
    assert_one_line(process, "deploy.compress", expected)
    assert "resume" not in process.stderr and process.stdout == ""
    assert tree_digest(fine_tuned) == before


def test_export_of_a_truncated_checkpoint_is_one_line_naming_it(world, tmp_path):
    earlier = tmp_path / "out"
    earlier.mkdir()
    (earlier / "export.json").write_text("an earlier export\n")
    model = truncated_model(world, tmp_path)
    process = run(module("deploy.export", f"--model_dir={model}", f"--output_dir={earlier}",
                         f"--max_seq_length={SEQ}"))
    assert_one_line(process, "deploy.export",
                    f"--model_dir={model}: checkpoint {model / 'bert_model.ckpt'} is damaged")
    assert tree_digest(earlier) == {"export.json": hashlib.sha1(
        b"an earlier export\n").hexdigest()}
    assert sorted(path.name for path in tmp_path.iterdir()) == ["out", "truncated"]


# A full disk names the path ----------------------------------------------------------------------
def test_export_on_a_full_disk_names_the_folder_and_leaves_nothing(world, tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(FULL_DISK_SITE)
    full = tmp_path / "full"
    full.mkdir()
    environment = dict(os.environ, PYTHONPATH=str(site), **{FULL_DISK_VARIABLE: str(full)})
    process = run(module("deploy.export", f"--model_dir={world / 'headed'}",
                         f"--output_dir={full / 'export'}", f"--max_seq_length={SEQ}"),
                  env=environment)
    assert_one_line(process, "deploy.export",
                    f"No space left on device: '{full / 'export'}'")
    assert list(full.iterdir()) == []


@pytest.fixture
def small_disk(tmp_path):
    """Holds an export's vocabulary but not its SavedModel: TensorFlow's own write fails."""
    with small_tmpfs(tmp_path / "small", SMALL_DISK) as mount_point:
        yield mount_point


def test_export_on_a_disk_tensorflow_fills_names_the_folder(world, small_disk):
    process = run(module("deploy.export", f"--model_dir={world / 'headed'}",
                         f"--output_dir={small_disk / 'export'}", f"--max_seq_length={SEQ}"))
    assert_one_line(process, "deploy.export",
                    f"No space left on device: '{small_disk / 'export'}'")
    assert list(small_disk.iterdir()) == []


def test_benchmark_on_a_full_disk_names_the_file(tmp_path, monkeypatch, capsys):
    full = tmp_path / "full"
    real_open = open

    def open_on_full_disk(file, mode="r", *args, **kwargs):
        if "w" in mode and str(file).startswith(str(full)):
            real_open(file, "w").close()
            return real_open("/dev/full", mode, *args, **kwargs)
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr("builtins.open", open_on_full_disk)
    status = cli.run_main(lambda: benchmark.write_outputs(str(full), "| table |\n", [], None),
                          "deploy.benchmark")
    assert status == EXIT_INPUT_ERROR
    line = capsys.readouterr().err.strip()
    assert line == (f"deploy.benchmark: error: [Errno {errno.ENOSPC}] No space left on device: "
                    f"'{full / 'benchmark.md'}'")
    assert list(full.iterdir()) == []


# Budget mode: the same step records -------------------------------------------------------------
def student_shaped_model(folder):
    """A fine-tuned-shaped model whose width a method already cut: FLOP offers no variant on it,
    so a budget search with --budget_methods=flop goes straight to its final round."""
    config = tiny_config(hidden_size=16, intermediate_size=32, max_position_embeddings=64,
                         extracted_from={"num_hidden_layers": 2})
    write_tiny_model(folder, config, initializer_weights(config, num_labels=2))
    return folder


@pytest.mark.slow
def test_budget_mode_re_runs_exactly_the_steps_a_changed_setting_changes(world, tmp_path):
    finetuned = student_shaped_model(tmp_path / "finetuned")
    output = tmp_path / "out"
    command = compress_command(world, output, f"--finetuned_dir={finetuned}",
                               "--budget_methods=flop", "--max_loss=100", "--speedup=2",
                               "--measure_iterations=1")
    first = run(command)
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-3000:]
    exports = [f"{budget.EXPORT_STEP}/{budget.DENSE}",
               f"{budget.EXPORT_STEP}/{budget.DENSE}-{budget.INT8_MODES[1]}"]
    final = f"{budget.MEASURE_DIR}/final"
    before = tree_digest(output)

    again = run(command)
    assert again.returncode == 0, again.stderr[-3000:]
    for step in exports + [final]:
        assert f"{step}: already done, skipped" in again.stdout
    assert tree_digest(output) == before

    changed = run(command[:-1] + ["--measure_iterations=2"])
    assert changed.returncode == 0, changed.stderr[-3000:]
    for step in exports:
        assert f"{step}: already done, skipped" in changed.stdout
    assert (f"{final}: settings changed (iterations 1 -> 2): re-running it and the steps after "
            "it") in changed.stdout
