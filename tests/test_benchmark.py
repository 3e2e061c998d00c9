"""The benchmark's pieces: side-by-side latency, training throughput, argument errors."""
import pytest

from bert import benchmark, checkpoint, run_classifier
from tiny_bert import tiny_config, write_tiny_model


def test_side_by_side_latency_and_throughput(tmp_path):
    config, _ = write_tiny_model(tmp_path / "model", tiny_config())
    prefix = checkpoint.resolve_checkpoint(str(tmp_path / "model"))
    sessions = [benchmark.InferenceSession(config, prefix, batch_size=2, seq_length=8)
                for _ in range(2)]
    latencies = benchmark.compare_latency(sessions, iterations=3)
    for session in sessions:
        session.close()
    assert len(latencies) == 2 and all(0 < latency < 5 for latency in latencies)
    assert benchmark.training_throughput(config, batch_size=2, seq_length=8, steps=2) > 0


def test_random_ids_stay_inside_a_small_vocab():
    ids = benchmark.random_ids(vocab_size=30, batch_size=4, seq_length=16)
    assert ids.min() >= 0 and ids.max() < 30


@pytest.mark.parametrize("text", ["", "1,x", "0,32", "-1"])
def test_bad_batch_sizes_name_the_flag(text):
    with pytest.raises(run_classifier.UsageError, match="--batch_sizes"):
        benchmark.parse_batch_sizes(text, "batch_sizes")


def test_command_line_prints_ratio(tmp_path, capsys):
    write_tiny_model(tmp_path / "a", tiny_config())
    write_tiny_model(tmp_path / "b", tiny_config())
    benchmark.main(["--model_dir", str(tmp_path / "a"), "--compare_dir", str(tmp_path / "b"),
                    "--seq_length", "8", "--batch_sizes", "1,2", "--iterations", "2",
                    "--train_steps", "1", "--train_batch_size", "2"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("fine-tuning: ")
    assert sum("vs first" in line for line in lines) == 4
