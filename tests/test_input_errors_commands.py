"""convert_hf and download_glue as processes: exit 0, or one line and no output on bad input."""
import json
import re
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO_ROOT

HF_CONFIG = {"vocab_size": 3, "hidden_size": 4, "num_hidden_layers": 1, "num_attention_heads": 2,
             "intermediate_size": 6, "hidden_act": "gelu", "hidden_dropout_prob": 0.1,
             "attention_probs_dropout_prob": 0.1, "max_position_embeddings": 8,
             "type_vocab_size": 2, "initializer_range": 0.02}
PROCESS_TIMEOUT_SECONDS = 120


def run(*args):
    return subprocess.run([sys.executable, *args], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=PROCESS_TIMEOUT_SECONDS)


def last_line(stderr):
    return [line for line in stderr.splitlines() if line.strip()][-1]


@pytest.fixture
def hf_dir(tmp_path):
    """A tiny HF BERT folder: config.json, model.safetensors, vocab.txt."""
    from safetensors.numpy import save_file

    folder = tmp_path / "hf"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(HF_CONFIG))
    (folder / "vocab.txt").write_text("[PAD]\n[UNK]\nthe\n")
    save_file({"embeddings.word_embeddings.weight": np.ones((3, 4), np.float32),
               "pooler.dense.weight": np.ones((4, 4), np.float32),
               "pooler.dense.bias": np.zeros(4, np.float32)}, str(folder / "model.safetensors"))
    return folder


def convert(hf_dir, output_dir):
    return run("-m", "bert.convert_hf", "--hf_dir", str(hf_dir), "--output_dir", str(output_dir))


def test_convert_hf_exits_zero_on_success(hf_dir, tmp_path):
    result = convert(hf_dir, tmp_path / "out")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert (tmp_path / "out" / "bert_model.ckpt.index").is_file()


@pytest.mark.parametrize("damage, expected", [
    ("truncated_weights", r"model\.safetensors: damaged or truncated safetensors file"),
    ("bad_json", r"config\.json: not valid JSON \(Expecting ',' delimiter: line 1 column 18"),
    ("bad_config", r"config\.json: hidden_size=0: expected a positive integer"),
])
def test_convert_hf_bad_input_is_one_line_and_writes_nothing(hf_dir, tmp_path, damage, expected):
    if damage == "truncated_weights":
        weights = (hf_dir / "model.safetensors").read_bytes()
        (hf_dir / "model.safetensors").write_bytes(weights[:len(weights) // 2])
    elif damage == "bad_json":
        (hf_dir / "config.json").write_text('{"vocab_size": 3 "hidden_size": 4}')
    else:
        (hf_dir / "config.json").write_text(json.dumps({**HF_CONFIG, "hidden_size": 0}))
    result = convert(hf_dir, tmp_path / "out")
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    line = last_line(result.stderr)
    assert line.startswith("convert_hf: error: ") and str(hf_dir) in line
    assert re.search(expected, line), line
    assert not (tmp_path / "out").exists()


def test_convert_hf_keeps_earlier_output_on_bad_input(hf_dir, tmp_path):
    assert convert(hf_dir, tmp_path / "out").returncode == 0
    before = {path.name: path.read_bytes() for path in (tmp_path / "out").iterdir()}
    (hf_dir / "model.safetensors").write_bytes(b"\x00" * 4)
    result = convert(hf_dir, tmp_path / "out")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert {path.name: path.read_bytes() for path in (tmp_path / "out").iterdir()} == before
    assert sorted(path.name for path in tmp_path.iterdir()) == ["hf", "out"]


def download(data_dir):
    # A closed local port: a bad data_dir must be refused before any download is tried.
    return run("datasets/download_glue.py", "--tasks", "RTE", "--data_dir", str(data_dir),
               "--base_url", "http://127.0.0.1:9")


def test_download_glue_refuses_a_file_as_data_dir(tmp_path):
    data_dir = tmp_path / "glue"
    data_dir.write_text("not a folder")
    result = download(data_dir)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert last_line(result.stderr) == (f"download_glue: error: --data_dir={data_dir} is a file; "
                                        "expected a folder for the tasks")
    assert data_dir.read_text() == "not a folder"


def test_download_glue_refuses_a_data_dir_it_cannot_create(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = download(blocker / "glue")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert last_line(result.stderr).startswith(
        f"download_glue: error: --data_dir={blocker / 'glue'}: cannot write there (")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["file"]


def test_download_glue_refuses_a_read_only_data_dir(tmp_path):
    data_dir = tmp_path / "glue"
    data_dir.mkdir(mode=0o500)
    probe = data_dir / "probe"
    try:
        probe.mkdir()
    except PermissionError:
        pass
    else:
        probe.rmdir()
        pytest.skip("permission bits are not enforced for this user (root)")
    result = download(data_dir)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert f"--data_dir={data_dir}: cannot write there (Permission denied)" in \
        last_line(result.stderr)
    assert list(data_dir.iterdir()) == []
