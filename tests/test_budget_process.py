"""Budget mode as a user runs it: deploy.compress --max_loss/--speedup on a tiny model and tiny
data, bad input refused before anything is written, and kill -9 in the middle of a step resumed
to the same candidates with the same dev metrics."""
import csv
import glob
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import REPO_ROOT
from deploy import budget, budget_select
from tiny_bert import write_small_model, write_sst2_task

KILL_WAIT_SECONDS = 600  # until a candidate's step is under way
ORPHAN_WAIT_SECONDS = 60
POLL_SECONDS = 0.5


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("budget")
    write_small_model(root / "model")
    return root / "model", write_sst2_task(root / "data", rows=32)


def command(inputs, output_dir, *extra):
    model, data = inputs
    return [sys.executable, "-m", "deploy.compress", "--task_name=SST-2", f"--data_dir={data}",
            f"--model_dir={model}", f"--output_dir={output_dir}", "--max_seq_length=16",
            "--train_batch_size=8", "--learning_rate=1e-3", "--epochs=1", "--max_loss=100",
            "--speedup=2", "--budget_methods=tr_bert", "--beam=1", "--measure_iterations=2",
            "--latency_iterations=1", *extra]


def run(args):
    return subprocess.run(args, cwd=REPO_ROOT, capture_output=True, text=True)


def stage_metrics(output_dir):
    """{candidate: dev metric} as measured after the token stage."""
    path = os.path.join(output_dir, budget.MEASURE_DIR, "tokens", "benchmark.csv")
    with open(path, newline="") as handle:
        return {row["model"]: float(row["dev_metric"]) for row in csv.DictReader(handle)
                if not row["model"].startswith(os.sep)}


def processes_naming(text):
    found = []
    for status in glob.glob("/proc/[0-9]*/cmdline"):
        try:
            with open(status, "rb") as handle:
                if text.encode() in handle.read():
                    found.append(status)
        except OSError:
            continue  # ended while we looked
    return found


def test_bad_budget_flags_are_one_line_before_anything_is_written(inputs, tmp_path):
    for flag, message in (("--max_loss=-1", "--max_loss=-1.0: must be >= 0"),
                          ("--budget_methods=nope", "--budget_methods: 'nope' is not one of"),
                          ("--latency_ms=5", "--latency_ms is a batch-1 target")):
        args = command(inputs, tmp_path / "out", flag)
        if flag.startswith("--latency_ms"):
            args.append("--batch_size=32")
        result = run(args)
        assert result.returncode == 1, result.stderr[-2000:]
        assert message in result.stderr.strip().splitlines()[-1]
        assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_budget_mode_ships_reports_and_resumes_a_kill_to_the_same_candidates(inputs, tmp_path):
    whole = run(command(inputs, tmp_path / "whole"))
    assert whole.returncode == 0, whole.stdout[-3000:] + whole.stderr[-3000:]
    assert "budget met" in whole.stdout or "budget NOT met" in whole.stdout
    report = (tmp_path / "whole" / "report.md").read_text()
    for label in ("tr_bert-alpha0.1", "tr_bert-alpha0.3"):
        assert f"| {label} |" in report
    assert (tmp_path / "whole" / budget.SHIPPED_DIR / "model.onnx").is_file()

    killed = tmp_path / "killed"
    process = subprocess.Popen(command(inputs, killed), cwd=REPO_ROOT, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + KILL_WAIT_SECONDS
    pattern = str(killed / budget.CANDIDATES_DIR / "*" / "*" / "step.started.json")
    while not glob.glob(pattern) and time.time() < deadline and process.poll() is None:
        time.sleep(POLL_SECONDS)
    assert glob.glob(pattern), "no candidate step started"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    deadline = time.time() + ORPHAN_WAIT_SECONDS
    while processes_naming(str(killed)) and time.time() < deadline:
        time.sleep(POLL_SECONDS)
    assert not processes_naming(str(killed)), "a step's tool outlived the killed recipe"

    resumed = run(command(inputs, killed))
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "1_fine_tune: already done, skipped" in resumed.stdout
    assert stage_metrics(killed) == pytest.approx(stage_metrics(tmp_path / "whole"), abs=1e-6)
    final = budget_select.read_benchmark_csv(str(killed / budget.MEASURE_DIR / "final" /
                                                 "benchmark.csv"))
    dense = next(row for row in final if row.label == budget.DENSE)
    expected = budget_select.choose([row for row in final if ":" in row.label
                                     and not row.label.startswith("peer:")],
                                    dense, dense.dev_metric, 100.0, 32, 2.0)
    assert f"({expected.row.label})" in (killed / "report.md").read_text()
