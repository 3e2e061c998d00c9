"""The one timing helper and the benchmark: side-by-side latency, throughput, argument errors."""
import pytest

from bert import benchmark, cli, timing
from bert.errors import UsageError
from tiny_bert import tiny_config, write_tiny_model


class FakeRunner:
    """Records when it ran, so interleaving and warm-up are visible."""

    def __init__(self, name, log, seconds):
        self.name, self.log, self.seconds = name, log, seconds

    def run_once(self):
        self.log.append(self.name)
        return self.seconds


def test_runs_are_interleaved_after_warm_up_and_warm_up_is_excluded():
    log = []
    runners = [FakeRunner("a", log, 1.0), FakeRunner("b", log, 3.0)]
    medians = timing.interleaved_medians(runners, iterations=3, warmup_runs=2)
    assert log == ["a", "a", "b", "b"] + ["a", "b"] * 3
    assert medians == [1.0, 3.0]


def test_side_by_side_latency_and_throughput(tmp_path):
    config, _ = write_tiny_model(tmp_path / "model", tiny_config())
    models = [timing.load_model_dir(str(tmp_path / "model")) for _ in range(2)]
    latencies = timing.side_by_side(models, batch_sizes=[1, 2], seq_length=8, iterations=3)
    assert sorted(latencies) == [1, 2]
    assert all(len(values) == 2 and all(0 < v < 5 for v in values)
               for values in latencies.values())
    assert benchmark.training_throughput(config, batch_size=2, seq_length=8, steps=2) > 0


def test_random_ids_stay_inside_a_small_vocab():
    ids = timing.random_ids(vocab_size=30, batch_size=4, seq_length=16)
    assert ids.min() >= 0 and ids.max() < 30


@pytest.mark.parametrize("text", ["", "1,x", "0,32", "-1"])
def test_bad_batch_sizes_name_the_flag(text):
    with pytest.raises(UsageError, match="--batch_sizes"):
        cli.parse_batch_sizes(text, "batch_sizes")


def test_command_line_prints_ratio(tmp_path, capsys):
    write_tiny_model(tmp_path / "a", tiny_config())
    write_tiny_model(tmp_path / "b", tiny_config())
    status = benchmark.main(["--model_dir", str(tmp_path / "a"), "--compare_dir",
                             str(tmp_path / "b"), "--seq_length", "8", "--batch_sizes", "1,2",
                             "--iterations", "2", "--train_steps", "1",
                             "--train_batch_size", "2"])
    lines = capsys.readouterr().out.splitlines()
    assert status == 0
    assert lines[0].startswith("fine-tuning: ")
    assert sum("examples/s  x" in line for line in lines) == 4
