"""One sub-architecture search, driven by a SearchSettings (the method: distill.search's
docstring): score the candidates, measure the promising ones, write the front."""
import dataclasses
import logging
import os
from typing import Tuple

from bert import checkpoint, cli, flops, modeling, timing
from bert.errors import Interrupted
from distill import importance as unit_importance
from distill.extract import Sizes, student_config
from distill.search_latency import (LatencyMeter, Measurements, Row, fit_cost_model,
                                    measurement_plan)
from distill.search_report import chosen_within_budgets, write_outputs
from distill.search_space import ImportanceMass, calibration_set, enumerate_candidates

log = logging.getLogger("distill")

LATENCY_CACHE_FILE = "latency_cache.json"
PREDICTION_SLACK = 0.25  # how far (relative) the cost model's prediction may be off


@dataclasses.dataclass
class SearchSettings:
    """Everything a search needs; field names are distill.search's flags (errors name them)."""
    model_dir: str
    output_dir: str
    latency_budget_ms: Tuple[float, ...] = ()  # ms per batch of budget_batch_size
    speedup: Tuple[float, ...] = ()  # budgets as speed-ups over the teacher
    batch_sizes: Tuple[int, ...] = (1, 32)
    budget_batch_size: int = 1
    seq_length: int = unit_importance.DEFAULT_SEQ_LENGTH
    iterations: int = 10
    max_measured: int = 60
    intermediate_step: int = 128
    latency_cache: str | None = None  # default: OUTPUT_DIR/latency_cache.json
    importance_settings: unit_importance.ImportanceSettings = dataclasses.field(
        default_factory=unit_importance.ImportanceSettings)

    def validate(self):
        """Values no search can use, before anything is loaded."""
        cli.require_output_dir(self.output_dir, "output_dir")
        cli.require(self.latency_budget_ms or self.speedup,
                    "--latency_budget_ms or --speedup is required")
        cli.require(self.budget_batch_size in self.batch_sizes,
                    f"--budget_batch_size={self.budget_batch_size}: must be one of "
                    f"--batch_sizes={','.join(str(size) for size in self.batch_sizes)}")
        for name in ("iterations", "max_measured", "intermediate_step", "seq_length"):
            cli.require_in_range(getattr(self, name), name, 1)
        for value in self.speedup:
            cli.require(value > 1, f"--speedup={value:g}: a speed-up must be above 1 (1 is "
                                   "the teacher itself, below 1 slower than it)")
        self.importance_settings.validate()

    @property
    def saved_importance(self):
        """Where scores computed by this search are saved (and found by the next one)."""
        return os.path.join(self.output_dir, unit_importance.IMPORTANCE_FILE)


@dataclasses.dataclass
class Budget:
    """A latency budget in ms at the budget batch size, from --latency_budget_ms or
    --speedup (teacher reference ÷ speed-up)."""
    label: str
    flag: str
    milliseconds: float


def budgets_of(settings, teacher_ms):
    budgets = [Budget(f"{value:g}ms", f"--latency_budget_ms={value:g}", value)
               for value in settings.latency_budget_ms]
    budgets += [Budget(f"x{value:g}", f"--speedup={value:g}", teacher_ms / value)
                for value in settings.speedup]
    return budgets


@dataclasses.dataclass
class Teacher:
    """What the search needs of the teacher besides its weights."""
    config: modeling.BertConfig
    num_labels: int
    params: int


def read_teacher(settings):
    """(Teacher, its numpy weights): the weights only score the candidates."""
    config, values, _ = unit_importance.read_teacher(settings.model_dir)
    cli.require_in_range(settings.seq_length, "seq_length", 1, config.max_position_embeddings)
    num_labels = values["output_weights"].shape[0] if "output_weights" in values \
        else timing.DEFAULT_LABELS
    params = modeling.count_parameters(value.shape for value in values.values())
    return Teacher(config, num_labels, params), values


def score_candidates(settings, teacher, values):
    """Every candidate as a Row (FLOPs, proxy error), the importance ranked with, and its file
    (None when computed now: it is saved with the outputs)."""
    importance, importance_path = unit_importance.importance_for(
        settings.importance_settings, settings.model_dir, teacher.config, values,
        checkpoint.find_vocab(settings.model_dir), settings.saved_importance)
    mass = ImportanceMass(importance)
    rows = [Row(sizes, flops.flops_per_example(student_config(teacher.config, sizes),
                                               settings.seq_length, teacher.num_labels),
                mass.error(sizes))
            for sizes in enumerate_candidates(teacher.config, settings.intermediate_step)]
    return rows, importance, importance_path


def measure(settings, meter, rows, calibration):
    """The calibration set, then what the cost model predicts near the budgets, front by front,
    then whatever earlier searches timed on this grid (free); see distill.search."""
    measurements = Measurements(meter, settings.batch_sizes)
    by_sizes = {row.sizes: row for row in rows}
    for sizes in calibration[:settings.max_measured]:
        measurements.add(by_sizes[sizes])
    b = settings.budget_batch_size
    window = [budget.milliseconds
              for budget in budgets_of(settings, measurements.teacher_ms[b])]
    predict = fit_cost_model(measurements.rows, b)
    predicted = [predict(row) for row in rows]
    for index in measurement_plan(rows, predicted, min(window) * (1 - PREDICTION_SLACK),
                                  max(window) * (1 + PREDICTION_SLACK),
                                  settings.max_measured - len(measurements.rows)):
        measurements.add(rows[index])
    for row in rows:
        if row.entry is None and meter.cached(row.sizes):
            measurements.add(row)
    measurements.normalise_all()
    return measurements


def search(settings: SearchSettings, scratch):
    """Score, measure, and write the front and the chosen config(s) into settings.output_dir;
    ``scratch``: a folder for the random weights and the plot's drawing."""
    teacher, values = read_teacher(settings)
    rows, importance, importance_path = score_candidates(settings, teacher, values)
    del values  # the search times random weights; only the scores were needed
    log.info("search: %d candidates; timing at most %d of them", len(rows),
             settings.max_measured)
    meter = LatencyMeter(timing.load_model_dir(settings.model_dir, num_labels=teacher.num_labels),
                         settings.batch_sizes, settings.seq_length, settings.iterations,
                         settings.latency_cache
                         or os.path.join(settings.output_dir, LATENCY_CACHE_FILE), scratch)
    scores = (importance, importance_path)
    try:
        measurements = measure(settings, meter, rows,
                               calibration_set(teacher.config, [row.sizes for row in rows]))
    except (Interrupted, KeyboardInterrupt):
        keep_computed(settings, meter, scores)  # the same command resumes from here
        raise
    finally:
        meter.close()
    budgets = budgets_of(settings, measurements.teacher_ms[settings.budget_batch_size])
    chosen = chosen_within_budgets(measurements.rows, budgets, settings.budget_batch_size)
    importance_path = keep_computed(settings, meter, scores)
    return write_front(settings, teacher, measurements, len(rows), importance_path, scratch,
                       (budgets, chosen))


def keep_computed(settings, meter, scores):
    """What this search computed, for the next one: the importance (``scores``: the scores and
    their file, None when computed here) and the timings. Returns the importance file."""
    importance, importance_path = scores
    if importance_path is None:
        os.makedirs(settings.output_dir, exist_ok=True)
        importance.save(settings.saved_importance)
        importance_path = os.path.abspath(settings.saved_importance)
    meter.save()
    return importance_path


def write_front(settings, teacher, measurements, candidates, importance_path, scratch, choice):
    """The outputs, every latency against one teacher reference; ``choice``: (the budgets,
    the row chosen for each)."""
    config, teacher_ms = teacher.config, measurements.teacher_ms
    budgets, chosen = choice
    os.makedirs(settings.output_dir, exist_ok=True)
    context = dict(
        teacher=os.path.abspath(settings.model_dir), teacher_config=config,
        teacher_sizes=Sizes(config.num_hidden_layers, config.heads(0), config.hidden_size,
                            config.intermediate(0)),
        teacher_params=teacher.params,
        teacher_flops=flops.flops_per_example(config, settings.seq_length, teacher.num_labels),
        teacher_ms=teacher_ms, budget_batch_size=settings.budget_batch_size,
        batch_sizes=settings.batch_sizes, seq_length=settings.seq_length,
        iterations=settings.iterations, candidates=candidates,
        importance_path=importance_path, scratch=scratch)
    return write_outputs(settings.output_dir, measurements.rows, budgets, chosen, context)
