"""Budget mode's search over fake methods: stages chain, the bound drops candidates, the report
lists them all, and a re-run after a changed setting re-runs exactly what it changes.

The methods here are descriptions registered for the test; their steps, the exports and the
measurements run in-process (steps.run_command is replaced), with dev metrics and speeds given
per method, so the search's choices are known in advance."""
import dataclasses
import os
import shutil

import pytest

from bert import deployment
from bert.deployment import BUDGET_STAGES, RecipeSettings, RecipeStep, Variant
from deploy import budget, steps
from tiny_bert import write_tiny_model

# (dev-metric points lost, speed factor) of each method's variants.
EFFECTS = {"student": {"small": (0.4, 3.0), "broken": (5.0, 6.0)},
           "tokens": {"keep": (0.2, 1.5)},
           "prune": {"half": (0.1, 1.2)}}
DENSE_METRIC = 0.85
DENSE_THROUGHPUT = 100.0
INT8_FACTOR = {"dynamic": 2.0, "static": 2.2, "fp32": 1.0}
CHANGED = {"tokens": {}}  # a test changes the tokens method's setting here
SLOWDOWN = {}  # measurement folder -> factor on every speed timed in that process (a busy CPU)


@dataclasses.dataclass(frozen=True)
class FakeSettings:
    variant: str
    strength: float = 1.0


def _flags(context):
    return [f"--source={context.source}", f"--output={context.folder}"]


class FakeMethod(deployment.Deployment):
    settings_type = FakeSettings

    def __init__(self, name, stage):
        self.name = name
        self.budget_stage = stage
        self.recipe_steps = (RecipeStep(name, "fake.method", _flags),)

    def budget_variants(self, target, recipe, source_config):
        strength = CHANGED.get(self.name, {}).get("strength", 1.0)
        return [Variant(label, FakeSettings(label, strength)) for label in EFFECTS[self.name]]


def _chain(label):
    """[(method, variant)] of a candidate label such as 'student-small+tokens-keep'."""
    name = label.split(":")[0]
    return [] if name == budget.DENSE else [tuple(part.split("-", 1))
                                            for part in name.split(budget.CHAIN_SEPARATOR)]


def _row(label, engine, slowdown=1.0):
    loss, speed = 0.0, slowdown
    for method, variant in _chain(label):
        loss += EFFECTS[method][variant][0]
        speed *= EFFECTS[method][variant][1]
    mode = label.split(":")[1] if ":" in label else None
    speed *= INT8_FACTOR.get(mode, 1.0)
    throughput = DENSE_THROUGHPUT * speed
    return (f"{label},{engine},{DENSE_METRIC - loss / 100:.6f},{1000.0 / throughput:.6f},"
            f"{throughput:.6f},")


def _fake_run(command, step):
    """The commands of the search, done in-process: copy a model, write an export, measure."""
    module = command[2]
    flags = dict(flag[2:].split("=", 1) for flag in command[3:] if flag.startswith("--"))
    if module == "fake.method":
        shutil.copytree(flags["source"], flags["output"], dirs_exist_ok=True)
    elif module == "deploy.export":
        os.makedirs(flags["output_dir"], exist_ok=True)
        for name in ("model.onnx", "model.int8.onnx"):
            with open(os.path.join(flags["output_dir"], name), "w") as handle:
                handle.write(flags["model_dir"])
    elif module == "deploy.benchmark":
        names = [flag.split("=")[0] for flag in command[3:] if not flag.startswith("--")]
        lines = ["model,engine,dev_metric,latency_p50_ms,throughput,flop_reduction"]
        slowdown = SLOWDOWN.get(os.path.basename(flags["output_dir"]), 1.0)
        lines += [_row(name, "tf" if ":" not in name else "onnx", slowdown) for name in names]
        os.makedirs(flags["output_dir"], exist_ok=True)
        with open(os.path.join(flags["output_dir"], "benchmark.csv"), "w") as handle:
            handle.write("\n".join(lines) + "\n")
    return 0


@pytest.fixture
def fake_search(tmp_path, monkeypatch):
    write_tiny_model(tmp_path / "fine_tuned")
    methods = tuple(FakeMethod(name, stage) for name, stage in zip(EFFECTS, BUDGET_STAGES))
    monkeypatch.setattr(deployment, "descriptions", lambda: methods)
    monkeypatch.setattr(steps, "run_command", _fake_run)
    monkeypatch.setattr(budget.peer, "missing_reason", lambda: "not in this test")
    CHANGED["tokens"] = {}
    SLOWDOWN.clear()
    recipe = RecipeSettings("SST-2", str(tmp_path / "data"), 16, 8, 0, 1)
    settings = budget.BudgetSettings(max_loss=1.0, speedup=8.0, batch_size=32, beam=2)

    def search(beam=settings.beam, **changes):
        return budget.run_budget(dataclasses.replace(settings, beam=beam, **changes), recipe,
                                 str(tmp_path / "fine_tuned"), "digest", str(tmp_path / "out"))
    return search, tmp_path / "out"


def test_a_beam_of_one_builds_on_the_fastest_alone(fake_search):
    """The fine-tuned model is built on only while the beam has room for it: once a student is
    within the bound, beam 1 spends no stage on the slow dense model."""
    search, out = fake_search
    search(beam=1)
    built = set(os.listdir(out / budget.CANDIDATES_DIR))
    assert {"student-small", "student-small+tokens-keep",
            "student-small+tokens-keep+prune-half"} <= built
    assert not any(name.startswith(("tokens-", "prune-")) for name in built), built


def test_stages_chain_the_bound_drops_and_the_fastest_within_ships(fake_search, capsys):
    search, out = fake_search
    choice = search()
    # student (3x) -> tokens (1.5x) -> prune (1.2x) -> static INT8 (2.2x): 11.88x, -0.7 points
    assert choice.row.label == "student-small+tokens-keep+prune-half:static"
    assert choice.speedup == pytest.approx(3.0 * 1.5 * 1.2 * 2.2)
    assert choice.meets_loss and choice.meets_speed
    built = os.listdir(out / budget.CANDIDATES_DIR)
    assert "student-broken" in built  # tried and measured ...
    assert not any(name.startswith("student-broken+") for name in built)  # ... built upon: no
    report = (out / "report.md").read_text()
    for label in ("student-small", "student-broken", "student-small+tokens-keep",
                  "student-small+tokens-keep+prune-half"):
        assert f"| {label} |" in report
    assert "budget met" in report and (out / "report.png").stat().st_size > 0
    assert (out / budget.SHIPPED_DIR / "model.int8.onnx").read_text().endswith(
        os.path.join("student-small+tokens-keep+prune-half", "1_prune"))


def test_each_stage_row_is_compared_with_the_dense_row_timed_beside_it(fake_search):
    """A stage measured while the CPU was busy (every row half as fast) still reports its
    candidates' speed-up against its own dense row, not the dense row of another stage."""
    search, out = fake_search
    SLOWDOWN[BUDGET_STAGES[0]] = 0.5
    search()
    lines = (out / "report.md").read_text().split("## Final round")[0].splitlines()
    student = next(line for line in lines if line.startswith("| student-small |"))
    tokens = next(line for line in lines if line.startswith("| student-small+tokens-keep |"))
    assert student.rstrip(" |").endswith("| 3.00") and tokens.rstrip(" |").endswith("| 4.50")


def test_a_latency_target_becomes_the_speed_up_over_the_measured_dense_latency(
        fake_search, capsys):
    """--latency_ms X --batch_size 1: the dense model's measured p50 (10 ms here) sets the
    speed-up to reach, and candidates are ranked by latency."""
    search, out = fake_search
    dense_ms = 1000.0 / DENSE_THROUGHPUT
    choice = search(batch_size=1, latency_ms=dense_ms / 5)  # --speedup keeps its default
    assert f"{5:.2f}x the dense model's measured batch-1 latency" in capsys.readouterr().out
    assert choice.meets_loss and choice.meets_speed
    assert choice.row.label == "student-small+tokens-keep+prune-half:static"
    assert choice.row.latency_ms == pytest.approx(dense_ms / (3.0 * 1.5 * 1.2 * 2.2))
    assert "target: 5x the dense model" in (out / "report.md").read_text()


def test_a_rerun_after_a_changed_setting_reruns_exactly_that_step_and_what_follows(
        fake_search, capsys):
    search, _ = fake_search
    first = search()
    capsys.readouterr()
    CHANGED["tokens"] = {"strength": 2.0}
    second = search()
    lines = capsys.readouterr().out.splitlines()
    done = [line.split(":")[0] for line in lines if line.endswith("already done, skipped")]
    changed = [line.split(":")[0] for line in lines if ": settings changed" in line]
    assert os.path.join("candidates", "student-small", "1_student") in done
    assert os.path.join("candidates", "student-small+tokens-keep", "1_tokens") in changed
    assert os.path.join("candidates", "student-small+tokens-keep+prune-half", "1_prune") in \
        changed  # it starts from the re-run step
    assert not any("student" in name and "tokens" not in name for name in changed)
    assert second.row.label == first.row.label
    capsys.readouterr()
    search()  # nothing changed: nothing runs
    assert not [line for line in capsys.readouterr().out.splitlines() if ": running" in line]
