"""distill.search: the Pareto front keeps exactly the non-dominated candidates, the proxy error
follows the importance kept, and a tiny real search writes a front that extract takes."""
import csv
import dataclasses
import itertools
import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO_ROOT
from distill import importance as unit_importance
from distill import search
from distill.extract import Sizes
from tiny_bert import random_importance, tiny_config, write_sst2_task, write_tiny_model

SEQ = 16
TIMEOUT = 300
EXAMPLES = 8
SIZE_FIELDS = [field.name for field in dataclasses.fields(Sizes)]


def dominated(point, other):
    """``other`` is at most as slow and as wrong as ``point``, and strictly better in one."""
    return other[0] <= point[0] and other[1] <= point[1] and other != point


def brute_force_front(points):
    return sorted(i for i, p in enumerate(points) if not any(dominated(p, q) for q in points))


def test_front_of_fixed_points():
    points = [(5.0, 0.10), (1.0, 0.90), (3.0, 0.30), (3.0, 0.50), (4.0, 0.30), (2.0, 0.90),
              (6.0, 0.10), (7.0, 0.00)]
    front = search.pareto_front(points)
    assert front == [1, 2, 0, 7]
    errors = [points[i][1] for i in front]
    latencies = [points[i][0] for i in front]
    assert latencies == sorted(latencies)
    assert all(later < earlier for earlier, later in zip(errors, errors[1:]))  # monotone


def test_front_matches_the_definition_on_random_points_with_ties():
    rng = np.random.RandomState(0)
    for _ in range(20):
        points = [tuple(map(float, p)) for p in rng.randint(0, 6, size=(30, 2))]
        assert sorted(search.pareto_front(points)) == brute_force_front(points)


def test_successive_fronts_partition_and_each_is_dominated_by_the_one_before():
    rng = np.random.RandomState(1)
    points = [tuple(p) for p in rng.rand(40, 2)]
    layers = search.successive_fronts(points)
    assert sorted(itertools.chain(*layers)) == list(range(len(points)))
    for before, after in zip(layers, layers[1:]):
        for index in after:
            assert any(dominated(points[index], points[j]) for j in before)


def test_evenly_spaced_follows_the_values_not_the_count():
    values = [0.0, 0.1, 0.2, 0.3, 0.4, 10.0]
    assert search.evenly_spaced(list("abcdef"), values, 2) == ["a", "f"]
    assert search.evenly_spaced(list("abcdef"), values, 3) == ["a", "e", "f"]  # 0, 5, 10
    assert search.evenly_spaced([1, 2], [0.0, 1.0], 5) == [1, 2]


def test_measurement_plan_takes_the_window_front_by_front():
    errors = [0.9, 0.8, 0.7, 0.6, 0.5, 0.85, 0.75, 0.1]
    predicted = [1.0, 2.0, 3.0, 4.0, 5.0, 2.5, 3.5, 50.0]
    rows = [search.Row(Sizes(1, 1, 4, 4), 0, error) for error in errors]
    rows[3].entry = {}  # measured already
    plan = search.measurement_plan(rows, predicted, 1.5, 6.0, count=4)
    # In the window [1.5, 6]: 1, 2, 4, 5, 6 not yet measured; 1, 2, 4 form the first front
    # (3 is measured, 0 and 7 outside), then 5 and 6 the next one.
    assert plan == [1, 2, 4, 5]
    assert search.measurement_plan(rows, predicted, 1.5, 6.0, count=0) == []


def test_cost_model_fits_non_negative_terms():
    def rows(latency):
        made = []
        for layers, gflops in ((1, 0.5), (3, 1.5), (6, 3.0), (1, 0.1), (3, 0.3), (6, 0.6)):
            row = search.Row(Sizes(layers, 1, 4, 4), int(gflops * 1e9), 0.0)
            row.latency_ms = {1: latency(layers, gflops)}
            made.append(row)
        return made

    exact = rows(lambda layers, gflops: 0.5 + 0.2 * layers + 3.0 * gflops)
    predict = search.fit_cost_model(exact, 1)
    assert all(predict(row) == pytest.approx(row.latency_ms[1]) for row in exact)
    # Timings that a negative per-layer cost would fit best: that term is held at zero.
    noisy = rows(lambda layers, gflops: 8.0 - 0.5 * layers + 3.0 * gflops)
    predict = search.fit_cost_model(noisy, 1)
    one_layer, six_layers = (search.Row(Sizes(n, 1, 4, 4), 10 ** 9, 0.0) for n in (1, 6))
    assert predict(six_layers) >= predict(one_layer)


def test_proxy_error_is_zero_for_the_teacher_and_grows_as_anything_shrinks():
    config = tiny_config(num_hidden_layers=3, num_attention_heads=2, hidden_size=8)
    mass = search.ImportanceMass(random_importance(config))
    candidates = search.enumerate_candidates(config, intermediate_step=4)
    assert len(candidates) == 3 * 2 * 2 * 3  # layers × heads × hidden {4, 8} × {4, 8, 12}
    errors = {sizes: mass.error(sizes) for sizes in candidates}
    assert errors[Sizes(3, 2, 8, 12)] == pytest.approx(0.0, abs=1e-12)
    for sizes, error in errors.items():
        assert 0.0 <= error <= 1.0
        for field in SIZE_FIELDS:  # more of any one size never loses importance
            for other in candidates:
                if other == dataclasses.replace(sizes, **{field: getattr(other, field)}) \
                        and getattr(other, field) > getattr(sizes, field):
                    assert errors[other] <= error + 1e-12, (sizes, other)


def test_a_head_without_importance_costs_nothing():
    config = tiny_config(num_attention_heads=2)
    scores = random_importance(config)
    for heads in scores.heads:
        heads[1] = 0.0
    mass = search.ImportanceMass(scores)
    assert mass.error(Sizes(2, 1, 8, 12)) == pytest.approx(0.0, abs=1e-12)
    assert mass.error(Sizes(2, 2, 4, 12)) > 0


# The command ------------------------------------------------------------------------------------
def run_module(module, *args):
    return subprocess.run([sys.executable, "-m", module] + [str(a) for a in args],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=TIMEOUT)


@pytest.fixture(scope="module")
def tiny_search(tmp_path_factory):
    root = tmp_path_factory.mktemp("search")
    write_tiny_model(root / "teacher", tiny_config())
    write_sst2_task(root / "data", rows=EXAMPLES)
    flags = [f"--model_dir={root / 'teacher'}", f"--output_dir={root / 'out'}",
             "--task_name=SST-2", f"--data_dir={root / 'data'}", f"--max_seq_length={SEQ}",
             f"--importance_examples={EXAMPLES}", f"--seq_length={SEQ}", "--iterations=2",
             "--batch_sizes=1,4", "--intermediate_step=4", "--max_measured=5",
             "--latency_budget_ms=1000"]
    process = run_module("distill.search", *flags)
    assert process.returncode == 0, process.stderr[-3000:]
    return root, flags, process


def test_search_writes_a_monotone_front_and_the_chosen_config(tiny_search):
    root, _, process = tiny_search
    out = root / "out"
    for name in search.OUTPUT_FILES + (search.CHOSEN_FILE, search.LATENCY_CACHE_FILE,
                                       unit_importance.IMPORTANCE_FILE):
        assert (out / name).is_file(), name
    with open(out / "front.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert 4 <= len(rows) <= 5  # the calibration set, and whatever the plan adds
    points = [(float(r["latency_b1_ms"]), float(r["proxy_error"])) for r in rows]
    front = [i for i, r in enumerate(rows) if r["on_front"] == "1"]
    assert front == brute_force_front(points)
    ordered = sorted(front, key=lambda i: points[i][0])
    assert all(points[b][1] < points[a][1] for a, b in zip(ordered, ordered[1:]))
    chosen = json.loads((out / search.CHOSEN_FILE).read_text())
    # Everything measured is within 1000 ms: the choice is the lowest proxy error, the teacher's
    # own shape (the calibration set always measures it).
    assert chosen["proxy_error"] == min(p[1] for p in points) == pytest.approx(0.0, abs=1e-9)
    assert chosen["bert_config"]["num_hidden_layers"] == 2
    assert chosen["bert_config"]["hidden_size"] == 8
    assert "| proxy error |" in process.stdout


def test_search_resumes_from_its_cache_and_extract_takes_the_chosen_config(tiny_search):
    root, flags, _ = tiny_search
    out = root / "out"
    cache = (out / search.LATENCY_CACHE_FILE).read_text()
    process = run_module("distill.search", *flags)
    assert process.returncode == 0, process.stderr[-3000:]
    assert (out / search.LATENCY_CACHE_FILE).read_text() == cache  # nothing measured again
    assert "importance: reusing" in process.stderr
    process = run_module("distill.extract", f"--model_dir={root / 'teacher'}",
                         f"--output_dir={root / 'student'}",
                         f"--config={out / search.CHOSEN_FILE}")
    assert process.returncode == 0, process.stderr[-3000:]
    provenance = json.loads((root / "student" / "provenance.json").read_text())
    assert provenance["flags"]["importance"] == str(out / unit_importance.IMPORTANCE_FILE)


def test_search_refuses_a_budget_batch_size_it_does_not_time(tiny_search, tmp_path):
    root = tiny_search[0]
    process = run_module("distill.search", f"--model_dir={root / 'teacher'}",
                         f"--output_dir={tmp_path / 'out'}", "--speedup=2",
                         "--batch_sizes=1,32", "--budget_batch_size=8",
                         f"--importance={root / 'out' / unit_importance.IMPORTANCE_FILE}")
    assert process.returncode == 1
    lines = process.stderr.strip().splitlines()
    assert lines[-1].startswith("distill.search: error: --budget_batch_size=8"), lines[-1]
    assert "Traceback" not in process.stderr
    assert not (tmp_path / "out").exists()
