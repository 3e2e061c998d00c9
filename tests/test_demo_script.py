"""demo.sh's wiring, with a stub in place of Python: which entry points each METHODS choice
runs, that every step reads the folder the step before it wrote, and that a typo in METHODS is
refused in one line before any work. The real run is `make demo` (minutes, not a unit test)."""
import json
import os
import subprocess
import sys
import textwrap

import pytest

from conftest import REPO_ROOT

TIMEOUT = 60
ALL_METHODS = ("flop", "power_bert", "tr_bert", "distill")
# The stub writes what the script greps after a step: eval_results.txt in the step's
# --output_dir (TR-BERT's in its stage folder) and the search's front.md.
STUB = textwrap.dedent("""\
    import json, os, sys
    with open(os.environ["STUB_LOG"], "a") as log:
        log.write(json.dumps(sys.argv[1:]) + "\\n")
    flags = dict(arg[2:].split("=", 1) for arg in sys.argv if arg.startswith("--") and "=" in arg)
    output_dir = flags.get("output_dir")
    if output_dir:
        if "--train_rl" in sys.argv:
            output_dir = os.path.join(output_dir, "train_rl")
        os.makedirs(output_dir, exist_ok=True)
        with open(os.path.join(output_dir, "eval_results.txt"), "w") as results:
            results.write("eval_accuracy = 0.5\\nkept_share = 0.6\\n")
        if "distill.search" in sys.argv:
            with open(os.path.join(output_dir, "front.md"), "w") as front:
                front.write("- budget --speedup=3: 2L 10A 384H 896I\\n")
    """)


@pytest.fixture
def demo(tmp_path):
    """Runs demo.sh with the stub as PYTHON, a converted-looking model and a present task;
    returns (process, the stub's calls as {module: [argv, ...]} in order)."""
    stub = tmp_path / "python"
    stub.write_text(f"#!{sys.executable}\n{STUB}")
    stub.chmod(0o755)
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "bert_config.json").write_text("{}")
    (tmp_path / "glue" / "SST-2").mkdir(parents=True)
    (tmp_path / "glue" / "SST-2" / "train.tsv").write_text("sentence\tlabel\n")
    log = tmp_path / "calls.jsonl"

    def run(**variables):
        env = dict(os.environ, PYTHON=str(stub), STUB_LOG=str(log),
                   MODEL_DIR=str(tmp_path / "model"), GLUE_DIR=str(tmp_path / "glue"),
                   OUTPUT_DIR=str(tmp_path / "out"), **variables)
        process = subprocess.run(["bash", str(REPO_ROOT / "demo.sh")], env=env,
                                 capture_output=True, text=True, timeout=TIMEOUT)
        calls = {}
        if log.exists():
            for line in log.read_text().splitlines():
                argv = json.loads(line)
                calls.setdefault(argv[1] if argv[0] == "-m" else argv[0], []).append(argv)
        return process, calls
    return run


def flag(argv, name):
    values = [arg.split("=", 1)[1] for arg in argv if arg.startswith(f"--{name}=")]
    assert len(values) == 1, (name, argv)
    return values[0]


def test_tr_bert_and_distill_chain_their_folders_into_the_benchmark(demo):
    process, calls = demo(METHODS="tr_bert distill", DISTILL_SPEEDUP="4")
    assert process.returncode == 0, process.stdout[-2000:] + process.stderr[-2000:]
    fine_tuned = flag(calls["bert.run_classifier"][0], "output_dir")

    grad, rl = calls["tr_bert.run_tr_bert"]
    assert "--do_eval_grad" in grad and {"--do_train", "--train_rl"} <= set(rl)
    assert flag(grad, "output_dir") == flag(rl, "output_dir")
    assert flag(rl, "init_checkpoint") == fine_tuned
    assert flag(rl, "alpha") == "0.3"
    tr_bert_model = os.path.join(flag(rl, "output_dir"), "train_rl", "model")

    [search], [extract], [distil] = (calls[m] for m in (
        "distill.search", "distill.extract", "distill.run_distill"))
    assert flag(search, "model_dir") == fine_tuned and flag(search, "speedup") == "4"
    assert flag(search, "max_measured") == "12"
    assert flag(extract, "config") == os.path.join(flag(search, "output_dir"), "chosen_config.json")
    assert flag(distil, "init_checkpoint") == flag(extract, "output_dir")
    assert flag(distil, "teacher_model_dir") == fine_tuned
    [export] = calls["deploy.export"]
    assert flag(export, "model_dir") == os.path.join(flag(distil, "output_dir"), "model")

    [benchmark] = calls["deploy.benchmark"]
    models = [arg for arg in benchmark[2:] if not arg.startswith("--")]
    assert models == [f"dense={fine_tuned}", f"tr_bert={tr_bert_model}",
                      f"distilled={flag(export, 'model_dir')}",
                      f"distilled={flag(export, 'output_dir')}"]
    assert "kept_share = 0.6" in process.stdout and "2L 10A 384H 896I" in process.stdout
    assert not {"flop.factorize", "power_bert.main"} & set(calls)


@pytest.mark.parametrize("method, runs, skips", [
    ("tr_bert", "tr_bert.run_tr_bert", "distill.search"),
    ("distill", "distill.search", "tr_bert.run_tr_bert"),
])
def test_each_new_method_runs_alone(demo, method, runs, skips):
    process, calls = demo(METHODS=method)
    assert process.returncode == 0, process.stdout[-2000:] + process.stderr[-2000:]
    assert runs in calls and skips not in calls
    [benchmark] = calls["deploy.benchmark"]
    assert sum(not arg.startswith("--") for arg in benchmark[2:]) == 1 + (
        1 if method == "tr_bert" else 2)


def test_an_unknown_method_is_refused_before_any_work(demo):
    process, calls = demo(METHODS="tr_bert distil")
    assert process.returncode == 1
    [line] = process.stderr.strip().splitlines()
    assert "METHODS" in line and "'distil'" in line
    assert all(method in line for method in ALL_METHODS)
    assert calls == {}
