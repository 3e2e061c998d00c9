"""datasets/glue_text.py as a process: GLUE train sentences become a pre-training corpus that
the core's data tool reads (one sentence per line, a blank line between examples)."""
import subprocess
import sys

from conftest import REPO_ROOT
from tiny_bert import write_sst2_task

SCRIPT = REPO_ROOT / "datasets" / "glue_text.py"
TIMEOUT = 60


def run(*flags):
    return subprocess.run([sys.executable, str(SCRIPT), *flags], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=TIMEOUT)


def test_train_examples_become_documents_once_each(tmp_path):
    write_sst2_task(tmp_path / "glue" / "SST-2", rows=12)
    (tmp_path / "glue" / "MRPC").mkdir()
    (tmp_path / "glue" / "MRPC" / "train.tsv").write_text(
        "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n"
        "1\t1\t2\tThe cat sat .\tA cat was sitting .\n")
    done = run("--glue_dir", str(tmp_path / "glue"), "--output_file",
               str(tmp_path / "out" / "text.txt"), "--tasks", "SST-2,MRPC,CoLA")
    assert done.returncode == 0, done.stderr
    assert "skipped CoLA" in done.stderr
    documents = (tmp_path / "out" / "text.txt").read_text().strip().split("\n\n")
    # write_sst2_task repeats 6 sentences: each is written once; the pair is one document.
    assert len(documents) == 6 + 1
    assert documents[-1] == "The cat sat .\nA cat was sitting ."
    dev = (tmp_path / "glue" / "SST-2" / "dev.tsv").read_text()
    assert all(document in dev for document in documents[:-1])  # same sentences, from train


def test_no_train_sentences_is_one_line_and_writes_nothing(tmp_path):
    done = run("--glue_dir", str(tmp_path), "--output_file", str(tmp_path / "text.txt"))
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1].startswith("glue_text: error: --glue_dir=")
    assert not (tmp_path / "text.txt").exists()
