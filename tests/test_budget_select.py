"""Budget mode's choices: the loss bound, the beam, what ships, and what the verdict says."""
import pytest

from deploy import budget_select
from deploy.budget_select import Measured

DENSE = Measured("dense", "tf", 0.85, 10.0, 100.0)


def rows():
    return [DENSE,
            Measured("student", "onnx-int8", 0.846, 2.0, 900.0),  # -0.4 points, 9x
            Measured("tiny", "onnx-int8", 0.80, 1.0, 1500.0),  # -5 points: out of bound
            Measured("student:fp32", "onnx-fp32", 0.847, 3.0, 500.0),
            Measured("twin", "onnx-int8", 0.846, 2.0, 900.0)]  # ties with student


def test_a_candidate_that_breaks_the_bound_is_dropped_and_the_fastest_within_ships():
    choice = budget_select.choose(rows(), DENSE, DENSE.dev_metric, 1.0, 32, 8.0)
    assert choice.row.label == "student"  # "tiny" is faster but loses 5 points
    assert choice.meets_loss and choice.meets_speed
    assert choice.speedup == pytest.approx(9.0)
    assert "budget met" in choice.verdict(8.0, 1.0)


def test_ties_break_by_label_so_a_rerun_chooses_the_same():
    ordered = budget_select.fastest_first(rows()[1:], 32)
    assert [row.label for row in ordered][:3] == ["tiny", "student", "twin"]
    reversed_input = budget_select.fastest_first(list(reversed(rows()[1:])), 32)
    assert ordered == reversed_input


def test_batch_one_ranks_by_latency():
    assert budget_select.fastest_first(rows()[1:], 1)[0].label == "tiny"
    assert rows()[3].speed(1) == pytest.approx(1000.0 / 3.0)


def test_a_missed_speed_target_still_ships_the_best_trade_off_and_says_so():
    choice = budget_select.choose(rows(), DENSE, DENSE.dev_metric, 1.0, 32, 20.0)
    assert choice.row.label == "student" and not choice.meets_speed
    assert choice.verdict(20.0, 1.0).startswith("budget NOT met: the fastest model within 1")


def test_nothing_within_the_bound_ships_the_most_accurate():
    choice = budget_select.choose(rows(), DENSE, DENSE.dev_metric, 0.1, 32, 2.0)
    assert choice.row.label == "student:fp32" and not choice.meets_loss
    assert "no candidate stays within 0.1 points" in choice.verdict(2.0, 0.1)


def test_the_beam_keeps_the_fastest_within_the_bound():
    kept = budget_select.beam(rows()[1:], DENSE.dev_metric, 1.0, 32, 2)
    assert [row.label for row in kept] == ["student", "twin"]


def test_benchmark_csv_rows_are_read_and_a_row_without_metric_is_refused(tmp_path):
    path = tmp_path / "benchmark.csv"
    path.write_text("model,engine,dev_metric,latency_p50_ms,throughput,flop_reduction\n"
                    "dense,tf,0.85,10.0,100.0,1.0\nstudent,onnx-int8,0.846,2.0,900.0,\n")
    read = budget_select.read_benchmark_csv(str(path))
    assert read[1] == Measured("student", "onnx-int8", 0.846, 2.0, 900.0, None)
    path.write_text("model,engine,dev_metric,latency_p50_ms,throughput,flop_reduction\n"
                    "dense,tf,,10.0,100.0,1.0\n")
    with pytest.raises(Exception, match="row dense has no dev metric"):
        budget_select.read_benchmark_csv(str(path))
