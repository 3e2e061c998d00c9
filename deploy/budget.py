"""Budget mode of deploy.compress: the fastest model within a loss bound, found by chaining
every method the toolkit has, measured on this machine.

    python -m deploy.compress --task_name MRPC --data_dir glue/MRPC \\
        --model_dir models/all-MiniLM-L6-v2 --output_dir budget_MRPC --max_loss 1.0 --speedup 10

The search goes stage by stage (``bert.deployment.BUDGET_STAGES``: a student, then token
reduction, then pruning). Each registered method of a stage offers the variants worth trying on
each model that survived so far (``Deployment.budget_variants``); a variant runs the method's
own recipe steps on that model. After each stage one ``deploy.benchmark`` process measures the
new candidates on the full dev set at the budget's batch size; those within ``--max_loss``
points of the fine-tuned model join the pool, and the ``--beam`` fastest of the pool are what
the next stage builds on. Last, the beam (and the fine-tuned model) are exported to ONNX fp32
and INT8 (dynamic and static), measured together beside the dense references, and the fastest
row within the bound ships to OUTPUT_DIR/shipped, with OUTPUT_DIR/report.md (+ .png) listing
every candidate tried.

Every step is a ``deploy.steps`` step: resumable, skipped when done with the same settings,
re-run (with every step after it) when its settings changed.
"""
import dataclasses
import functools
import os
import shutil
from typing import List, Optional, Tuple

from bert import cli, deployment, files, model_folder, modeling, tasks
from bert.deployment import BudgetTarget, RecipeSettings, StepContext
from deploy import budget_report, budget_select, peer, steps
from deploy.budget_select import DENSE, Tried

EXPORT_STEP = "export"
MEASURE_DIR = "measure"
CANDIDATES_DIR = "candidates"
SHIPPED_DIR = "shipped"
NAME_SEPARATOR = "="
INT8_MODES = ("dynamic", "static")
FP32 = "fp32"
FP32_ONNX, INT8_ONNX = "model.onnx", "model.int8.onnx"
CHAIN_SEPARATOR = "+"
FINE_TUNED_STAGE = "fine-tuned"


DEFAULT_MAX_LOSS = 1.0  # points: what the users accept
DEFAULT_SPEEDUP = 10.0
DEFAULT_BATCH_SIZE = 32
DEFAULT_BEAM = 2  # each stage multiplies the work by its variants: two parents bound it
DEFAULT_ITERATIONS = 20  # timed runs per row: ~1% run-to-run spread on 2 idle cores


@dataclasses.dataclass(frozen=True)
class BudgetSettings:
    """The user's bound and target, and how hard to search."""
    max_loss: float = DEFAULT_MAX_LOSS  # dev-metric points the shipped model may lose
    speedup: float = DEFAULT_SPEEDUP  # wanted speed ratio vs the dense model in TensorFlow
    batch_size: int = DEFAULT_BATCH_SIZE  # the batch the speed is measured at (1: latency)
    beam: int = DEFAULT_BEAM  # how many candidates each stage builds on
    measure_iterations: int = DEFAULT_ITERATIONS  # timed runs per row in each measurement
    latency_ms: Optional[float] = None  # a p50 target at batch 1 instead of ``speedup``
    methods: Optional[Tuple[str, ...]] = None  # the methods it may use (None: all registered)


def validate(settings: BudgetSettings, finetuned_dir=None):
    """Refuse what no search can use, naming the flag; before anything is written."""
    cli.require(settings.max_loss >= 0, f"--max_loss={settings.max_loss}: must be >= 0")
    cli.require_positive(settings.speedup, "speedup")
    cli.require_in_range(settings.batch_size, "batch_size", 1)
    cli.require_in_range(settings.beam, "beam", 1)
    cli.require_in_range(settings.measure_iterations, "measure_iterations", 1)
    if settings.latency_ms is not None:
        cli.require(settings.latency_ms > 0, f"--latency_ms={settings.latency_ms}: must be "
                                             "positive")
        cli.require(settings.batch_size == 1, f"--latency_ms is a batch-1 target: --batch_size="
                                              f"{settings.batch_size} must be 1")
    known = {description.name for description in deployment.descriptions()
             if description.budget_stage}
    for name in settings.methods or ():
        cli.require(name in known, f"--budget_methods: {name!r} is not one of "
                                   f"{', '.join(sorted(known))}")
    if finetuned_dir:
        model_folder.load(finetuned_dir, "finetuned_dir", "a fine-tuned model folder",
                          verify_weights=True)


@dataclasses.dataclass(frozen=True)
class Candidate:
    """A model the search made: the chain of (method, variant) that made it, and where it is."""
    label: str
    model: str
    chain: tuple = ()
    digest: Optional[str] = None  # of the step that wrote it: what a step built on it follows


def target_of(settings: BudgetSettings):
    return BudgetTarget(settings.speedup, settings.batch_size, settings.max_loss)


def candidate_steps(parent: Candidate, method, variant, recipe, teacher, root):
    """The steps of one variant of ``method`` on ``parent``, in the candidate's own folder."""
    description = deployment.find(method)
    label = (f"{parent.label}{CHAIN_SEPARATOR}" if parent.chain else "") + \
        f"{method}-{variant.label}"
    folder = os.path.join(root, CANDIDATES_DIR, label)
    folders = {step.name: os.path.join(folder, f"{index + 1}_{step.name}")
               for index, step in enumerate(description.recipe_steps)}
    planned, upstream = [], parent.digest
    for step in description.recipe_steps:
        context = StepContext(recipe, variant.settings, folders[step.name], folders,
                              parent.model, teacher)
        record = dict(steps.recipe_step_record(step, context, parent.model), method=method)
        planned.append(steps.Step(
            folders[step.name], step.module, functools.partial(step.flags, context), record,
            upstream, None if step.finish is None else functools.partial(step.finish, context),
            label=os.path.relpath(folders[step.name], root)))
        upstream = None  # a later step of the chain follows the step before it
    model = description.recipe_steps[-1].model_path(folders[description.recipe_steps[-1].name])
    return planned, Candidate(label, model, parent.chain + ((method, variant.label),))


def run_chain(planned):
    """Run a candidate's steps in order; returns the last step's digest."""
    digest = None
    for step in planned:
        if digest is not None:
            step = dataclasses.replace(step, upstream=digest)
        digest = steps.run_step(step)
    return digest


def stage_candidates(stage, pool: List[Candidate], target, recipe, teacher, root,
                     methods=None):
    """Every variant every method of ``stage`` offers on each model of ``pool``, built."""
    made = []
    for parent in pool:
        config = modeling.BertConfig.from_json_file(
            os.path.join(parent.model, model_folder.CONFIG_FILE))
        for description in deployment.descriptions():
            if description.budget_stage != stage or (
                    methods is not None and description.name not in methods):
                continue
            for variant in description.budget_variants(target, recipe, config):
                planned, candidate = candidate_steps(parent, description.name, variant,
                                                     recipe, teacher, root)
                try:
                    digest = run_chain(planned)
                except steps.StepFailed as failure:
                    # e.g. no student architecture fits the speed-up: the others still count.
                    print(f"{candidate.label}: left out ({failure})", flush=True)
                    continue
                made.append(dataclasses.replace(candidate, digest=digest))
    return made


def measure(name, models, settings: BudgetSettings, recipe, root, reference_onnx, upstream,
            peer_reference=False):
    """One deploy.benchmark process over ``models`` (NAME=PATH arguments; the first is the
    dense baseline), beside the dense model's ONNX references (``reference_onnx``, when not
    among ``models``) and the peer's; returns its rows and the step's digest."""
    folder = os.path.join(root, MEASURE_DIR, name)
    flags = [*models, f"--task_name={recipe.task_name}", f"--data_dir={recipe.data_dir}",
             f"--max_seq_length={recipe.max_seq_length}", f"--batch_size={settings.batch_size}",
             f"--iterations={settings.measure_iterations}", f"--output_dir={folder}",
             *([f"--reference_onnx={reference_onnx}"] if reference_onnx else []),
             *(["--peer_reference"] if peer_reference else [])]
    # What decides the numbers: which models, at which batch, timed how long (not the bound).
    record = {"models": list(models), "batch_size": settings.batch_size,
              "iterations": settings.measure_iterations,
              "recipe": dataclasses.asdict(recipe), "peer": peer_reference}
    digest = steps.run_step(steps.Step(folder, "deploy.benchmark", lambda: flags,
                                       record=record, upstream=upstream,
                                       label=os.path.relpath(folder, root)))
    return budget_select.read_benchmark_csv(os.path.join(folder, "benchmark.csv")), digest


def export_step(model, folder, recipe, int8_mode, upstream):
    flags = [f"--model_dir={model}", f"--output_dir={folder}",
             f"--max_seq_length={recipe.max_seq_length}", f"--task_name={recipe.task_name}",
             f"--data_dir={recipe.data_dir}", f"--int8_mode={int8_mode}"]
    return steps.run_step(steps.Step(folder, "deploy.export", lambda: flags,
                                     record={"model": model, "int8_mode": int8_mode,
                                             "recipe": dataclasses.asdict(recipe)},
                                     upstream=upstream,
                                     label=os.path.join(EXPORT_STEP, os.path.basename(folder))))


def named(candidate: Candidate, path=None):
    return f"{candidate.label}{NAME_SEPARATOR}{path or candidate.model}"


def search(settings: BudgetSettings, recipe: RecipeSettings, fine_tuned, fine_tune_digest,
           root):
    """The whole search after fine-tuning; returns (the final round's rows, every candidate
    tried with its stage row, the export folder of each final row, the settings with the
    target resolved)."""
    dense = Candidate(DENSE, fine_tuned, digest=fine_tune_digest)
    reference_onnx = os.path.join(root, EXPORT_STEP, DENSE)
    dense_digest = export_step(fine_tuned, reference_onnx, recipe, INT8_MODES[0],
                               fine_tune_digest)
    if settings.latency_ms is not None:
        rows, _ = measure(DENSE, [named(dense)], settings, recipe, root, reference_onnx,
                          dense_digest)
        settings = dataclasses.replace(
            settings, speedup=_row(rows, DENSE).latency_ms / settings.latency_ms)
        print(f"--latency_ms={settings.latency_ms:g}: {settings.speedup:.2f}x the dense "
              "model's measured batch-1 latency", flush=True)
    target = target_of(settings)
    pool, tried = [dense], {}
    for stage in deployment.BUDGET_STAGES:
        built = stage_candidates(stage, beam_of(pool, tried, settings), target, recipe,
                                 fine_tuned, root, settings.methods)
        if not built:
            continue
        rows, _ = measure(stage, [named(dense)] + [named(c) for c in built], settings, recipe,
                          root, reference_onnx, dense_digest)
        stage_dense = _row(rows, DENSE)
        for candidate in built:
            tried[candidate.label] = Tried(candidate, _row(rows, candidate.label), stage,
                                           stage_dense)
        pool += [c for c in built if c.label in within_labels(rows, settings)]
        tried[DENSE] = Tried(dense, stage_dense, FINE_TUNED_STAGE, stage_dense)
    # The fine-tuned model's INT8 exports always reach the final round: the fallback when a
    # smaller model's INT8 falls outside the bound.
    finalists = [dense] + [c for c in beam_of(pool, tried, settings) if c.label != DENSE]
    rows, exports = final_round(settings, recipe, finalists, dense, root, reference_onnx,
                                dense_digest)
    return rows, tried, exports, settings


def _row(rows, label):
    return next(row for row in rows if row.label == label)


def within_labels(rows, settings):
    reference = _row(rows, DENSE).dev_metric
    return {row.label for row in budget_select.within_bound(rows, reference, settings.max_loss)}


def beam_of(pool, tried, settings):
    """The models the next stage builds on: the ``beam`` fastest within the bound, by their
    measured rows. The fine-tuned model competes like any other, so it is built on only while
    fewer than ``beam`` smaller models are within the bound (before any measurement: alone)."""
    measured = [tried[c.label].row for c in pool if c.label in tried]
    if not measured:
        return [c for c in pool if c.label == DENSE]
    reference = tried[DENSE].row.dev_metric
    best = budget_select.beam(measured, reference, settings.max_loss, settings.batch_size,
                              settings.beam)
    labels = {row.label for row in best}
    return [c for c in pool if c.label in labels]


def final_round(settings, recipe, finalists, dense, root, reference_onnx, dense_digest):
    """Export every finalist in each INT8 mode and measure them all in one process (the dense
    model's dynamic export is the reference export itself)."""
    models, exports = [named(dense)], {}
    for candidate in finalists:
        for mode in INT8_MODES:
            folder = os.path.join(root, EXPORT_STEP, f"{candidate.label}-{mode}")
            if candidate.label == DENSE and mode == INT8_MODES[0]:
                folder = reference_onnx
            else:
                export_step(candidate.model, folder, recipe, mode, candidate.digest)
            exports[f"{candidate.label}:{mode}"] = folder
            models.append(f"{candidate.label}:{mode}{NAME_SEPARATOR}"
                          f"{os.path.join(folder, INT8_ONNX)}")
        exports[f"{candidate.label}:{FP32}"] = folder
        models.append(f"{candidate.label}:{FP32}{NAME_SEPARATOR}{os.path.join(folder, FP32_ONNX)}")
    # The dense model's own exports are rows of the final round: no separate references.
    rows, _ = measure("final", models, settings, recipe, root, None, dense_digest,
                      peer_reference=peer.missing_reason() is None)
    return rows, exports


def ship(choice, exports, root):
    """Copy the chosen row's export folder to OUTPUT_DIR/shipped, whole or not at all."""
    target = os.path.join(root, SHIPPED_DIR)
    with files.atomic_folder(target) as temp:
        shutil.copytree(exports[choice.row.label], temp, dirs_exist_ok=True)
    return target


def run_budget(settings: BudgetSettings, recipe: RecipeSettings, fine_tuned, fine_tune_digest,
               root):
    """Search, choose, ship, report; returns the Choice."""
    tasks.canonical_task_name(recipe.task_name)
    rows, tried, exports, settings = search(settings, recipe, fine_tuned, fine_tune_digest,
                                            root)
    dense = _row(rows, DENSE)
    shippable = [row for row in rows if row.label in exports]
    choice = budget_select.choose(shippable, dense, dense.dev_metric, settings.max_loss,
                                  settings.batch_size, settings.speedup)
    shipped = ship(choice, exports, root)
    budget_report.write(root, settings, tried, rows, dense, choice, shipped)
    print(choice.verdict(settings.speedup, settings.max_loss), flush=True)
    return choice
