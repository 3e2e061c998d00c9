"""How the Bort-style path deploys: search → extract → distil as three steps of a recipe, and
the students worth trying in a budget search (the first stage: a smaller model).

A student is a plain model folder; inference needs nothing from this package.
"""
import dataclasses
import os

from bert import cli, deployment
from bert.deployment import BudgetTarget, RecipeSettings, RecipeStep, Variant
from distill import search_run
from distill.extract import EXTRACTED_FROM_KEY
from distill.run_distill import MODEL_DIR
from distill.search_report import CHOSEN_FILE

SEARCH, EXTRACT, DISTIL = "search", "extract", "distil"
# The float student's share of a budget's speed-up; the rest comes from the later stages.
# README's measured tables at batch 32: a distilled student in ONNX Runtime INT8 runs ×1.40
# (MRPC), ×2.31 (STS-B), ×1.46 (SST-2) its float speed; TR-BERT policy-only ×1.36-1.53.
INT8_GAIN = 1.6
TOKEN_REDUCTION_GAIN = 1.4
# Students tried around the float speed-up the target needs: a safer one, it, a bolder one.
SPEEDUP_SPREAD = (2 / 3, 1.0, 1.5)
MIN_STUDENT_SPEEDUP = 1.5  # below this extraction plus distillation costs more than it gains
# README's 4× students ended +0.5 to −8.6 points from their teachers: twice that speed-up is as
# bold as a student gets here (and a search may find no architecture that fast).
MAX_STUDENT_SPEEDUP = 8.0
SPEEDUP_DIGITS = 1  # "x3.0": one decimal names a budget well enough
# README's measured students: lr 1e-4, 3 epochs; a budget search times a few candidates only.
DISTILL_EPOCHS = 3.0
DISTILL_LEARNING_RATE = 1e-4
BUDGET_MAX_MEASURED = 20  # of distill.search's default 60 (5-15 s each for MiniLM)
# Config entries of a model that is not the fine-tuned dense one: a student of it does not pay.
NOT_A_TEACHER_KEYS = ("layers", "kernel_ranks", EXTRACTED_FROM_KEY)


@dataclasses.dataclass(frozen=True)
class StudentSettings:
    """One student of a budget search: its speed-up over the teacher and how it is made."""
    student_speedup: float  # distill.search's --speedup (float, at budget_batch_size)
    budget_batch_size: int
    distill_epochs: float = DISTILL_EPOCHS
    distill_learning_rate: float = DISTILL_LEARNING_RATE
    max_measured: int = BUDGET_MAX_MEASURED
    intermediate_step: int = cli.field_default(search_run.SearchSettings, "intermediate_step")


def task_flags(recipe):
    return [f"--task_name={recipe.task_name}", f"--data_dir={recipe.data_dir}",
            f"--max_seq_length={recipe.max_seq_length}"]


def search_flags(context):
    """Time candidates beside the source (the fine-tuned model) at the budget's batch size;
    the task's train set scores the source's units (the proxy error)."""
    recipe, settings = context.recipe, context.settings
    return [f"--model_dir={context.source}", f"--output_dir={context.folder}",
            f"--speedup={settings.student_speedup:g}",
            f"--batch_sizes={settings.budget_batch_size}",
            f"--budget_batch_size={settings.budget_batch_size}",
            f"--seq_length={recipe.max_seq_length}",
            f"--iterations={recipe.latency_iterations}",
            f"--max_measured={settings.max_measured}",
            f"--intermediate_step={settings.intermediate_step}", *task_flags(recipe)]


def extract_flags(context):
    """The searched architecture, from the source's most important units (scored by the search);
    the task's dev set gives the student's metric before distillation."""
    return [f"--model_dir={context.source}", f"--output_dir={context.folder}",
            f"--config={os.path.join(context.folders[SEARCH], CHOSEN_FILE)}",
            *task_flags(context.recipe)]


def distil_flags(context):
    recipe, settings = context.recipe, context.settings
    return ["--do_train", "--do_eval", *task_flags(recipe),
            f"--init_checkpoint={context.folders[EXTRACT]}",
            f"--teacher_model_dir={context.teacher}", f"--output_dir={context.folder}",
            f"--train_batch_size={recipe.train_batch_size}",
            f"--learning_rate={settings.distill_learning_rate}",
            f"--num_train_epochs={settings.distill_epochs}",
            f"--max_train_examples={recipe.max_train_examples}"]


def is_fine_tuned_dense(bert_config):
    """No per-layer sizes, kernel ranks, student mark or token selection: the model a student
    is cut from."""
    return (not any(key in bert_config.extra for key in NOT_A_TEACHER_KEYS)
            and all(description.token_count(bert_config) is None
                    for description in deployment.descriptions()))


def student_speedups(target_speedup):
    """Float speed-ups spread around what the student must reach so that INT8 and token
    reduction on it meet ``target_speedup``; distinct once rounded, within the bounds."""
    needed = target_speedup / (INT8_GAIN * TOKEN_REDUCTION_GAIN)
    return sorted({round(min(MAX_STUDENT_SPEEDUP, max(MIN_STUDENT_SPEEDUP, needed * factor)),
                         SPEEDUP_DIGITS) for factor in SPEEDUP_SPREAD})


class DistillDeployment(deployment.Deployment):
    """Search an architecture for a speed-up, extract it from the source, distil it."""
    name = "distill"
    settings_type = StudentSettings
    # Each step records the settings it reads; extraction follows the search's choice.
    recipe_steps = (RecipeStep(SEARCH, "distill.search", search_flags, result_fields=(
                        "student_speedup", "budget_batch_size", "max_measured",
                        "intermediate_step")),
                    RecipeStep(EXTRACT, "distill.extract", extract_flags, model="",
                               result_fields=()),
                    RecipeStep(DISTIL, "distill.run_distill", distil_flags, model=MODEL_DIR,
                               result_fields=("distill_epochs", "distill_learning_rate")))
    budget_stage = deployment.STUDENT

    def budget_variants(self, target: BudgetTarget, recipe: RecipeSettings, source_config):
        if not is_fine_tuned_dense(source_config):
            return ()
        return tuple(Variant(f"x{speedup:.{SPEEDUP_DIGITS}f}",
                             StudentSettings(speedup, target.batch_size))
                     for speedup in student_speedups(target.speedup))


DEPLOYMENT = DistillDeployment()
