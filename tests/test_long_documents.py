"""Long documents where token reduction pays: an IMDB-style folder of reviews longer than 512
tokens, cut head+tail, through TR-BERT's stages and deploy.benchmark at 512 tokens."""
import json
import subprocess
import sys

import numpy as np
import pytest

from bert import tasks
from conftest import REPO_ROOT
from tiny_bert import TINY_VOCAB, initializer_weights, tiny_config, write_tiny_model
from tr_bert.method import CONFIG_KEY

TIMEOUT = 600
SEQ = 512
REVIEWS_PER_LABEL = 6
REVIEW_WORDS = 700  # longer than SEQ: head+tail truncation cuts every review
LABEL_WORDS = {"pos": ["good", "great", "fun"], "neg": ["bad", "awful", "dull"]}


def write_imdb(root):
    """aclImdb's layout (train/ and test/, pos/ and neg/, <id>_<stars>.txt) and its task.json as
    datasets/download_glue.py writes it; the label's words sit at the start and the end."""
    rng = np.random.RandomState(0)
    filler = [word for word in TINY_VOCAB if word.isalpha() and
              word not in sum(LABEL_WORDS.values(), [])]
    for split in ("train", "test"):
        for label, words in LABEL_WORDS.items():
            folder = root / split / label
            folder.mkdir(parents=True)
            for index in range(REVIEWS_PER_LABEL):
                middle = " ".join(rng.choice(filler, REVIEW_WORDS))
                ends = " ".join(rng.choice(words, 20))
                (folder / f"{index}_8.txt").write_text(f"{ends} . {middle} . {ends}")
    (root / "task.json").write_text(json.dumps({
        "name": "IMDB", "input_format": "folders", "train_file": "train", "dev_file": "test",
        "labels": ["neg", "pos"], "truncation": "head_tail"}))
    return root / "task.json"


def run(module, *flags):
    process = subprocess.run([sys.executable, "-m", module, *map(str, flags)], cwd=REPO_ROOT,
                             capture_output=True, text=True, timeout=TIMEOUT)
    assert process.returncode == 0, process.stderr[-3000:]
    return process


@pytest.mark.slow
def test_tr_bert_and_the_benchmark_run_on_512_token_documents(tmp_path):
    data = tmp_path / "IMDB"
    task_file = write_imdb(data)
    spec = tasks.resolve(str(task_file), str(data), {})
    assert len(tasks.get_processor(spec).get_train_examples()) == 2 * REVIEWS_PER_LABEL
    config = tiny_config(hidden_size=16, num_hidden_layers=3, intermediate_size=32,
                         max_position_embeddings=SEQ)
    write_tiny_model(tmp_path / "model", config, initializer_weights(config, num_labels=2))
    common = [f"--task_name={task_file}", f"--data_dir={data}", f"--output_dir={tmp_path / 'out'}",
              f"--max_seq_length={SEQ}", "--reduction_layers=0,1", "--train_batch_size=4",
              "--eval_batch_size=4", "--num_train_epochs=1", "--policy_learning_rate=0.01"]
    run("tr_bert.run_tr_bert", *common, f"--init_checkpoint={tmp_path / 'model'}",
        "--do_eval_grad", "--do_eval_logits")
    run("tr_bert.run_tr_bert", *common, f"--init_checkpoint={tmp_path / 'model'}",
        "--do_train", "--train_init")
    policy_model = tmp_path / "out" / "train_init" / "model"
    stored = json.loads((policy_model / "bert_config.json").read_text())
    assert CONFIG_KEY in stored
    process = run("deploy.benchmark", f"dense={tmp_path / 'model'}", f"tr_bert={policy_model}",
                  f"--task_name={task_file}", f"--data_dir={data}", f"--max_seq_length={SEQ}",
                  "--iterations=1", "--batch_size=4", "--threads=1")
    text = process.stdout
    assert f"{2 * REVIEWS_PER_LABEL} IMDB dev sentences" in text
    rows = [line for line in text.splitlines() if line.startswith(("| dense", "| tr_bert"))]
    assert len(rows) == 2
    assert all(len(row.split("|")) > 4 for row in rows)
