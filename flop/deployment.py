"""How FLOP deploys: its three steps in a compound recipe (factorize, prune, remove the masks),
and the target sparsities worth trying in a budget search (its last stage) where pruning pays.

A FLOP-compact model needs nothing else at inference: its config's kernel ranks are read (and
counted by ``bert.flops``) by the core itself.
"""
import dataclasses
import logging
import os

from bert import cli, deployment
from bert.deployment import BudgetTarget, RecipeSettings, RecipeStep, Variant
from bert.model_folder import CONFIG_FILE
from flop import run_classifier as flop_cli
from flop.method import FlopSettings

log = logging.getLogger("deploy")  # a line of the recipe's run (deploy.compress)

VOCAB_FILE = "vocab.txt"
BEST_DIR = "best"
FACTORIZE, PRUNE, COMPACT = "factorize", "prune", "compact"
# README's measured FLOP runs on MRPC (3 epochs, lr 2e-5, distilled): targets 0.5, 0.7 and 0.8
# ran ×1.30, ×1.54 and ×1.75 at batch 32, each 2.6-3.8 F1 points below the dense model; a
# budget tries the two milder ones.
BUDGET_SPARSITIES = (0.5, 0.7)
BUDGET_PRUNE_EPOCHS = 3.0
BUDGET_PRUNE_LEARNING_RATE = 2e-5
BUDGET_SPARSITY_WARMUP = 200  # steps; deploy.compress's measured default
BUDGET_SAVE_CHECKPOINTS_STEPS = 100  # each checkpoint is a candidate for best/
# Config entries of a model whose width is already cut: pruning it again does not pay. Per-layer
# sizes, kernel ranks (FLOP itself) and distill.extract's student mark (named here, since
# methods do not import each other).
WIDTH_CUT_KEYS = ("layers", "kernel_ranks", "extracted_from")


@dataclasses.dataclass(frozen=True)
class PruneSettings:
    """FLOP's settings in a recipe (deploy.compress's flags of the same names)."""
    target_sparsity: float
    prune_epochs: float
    prune_learning_rate: float
    target_sparsity_warmup: int
    lambda_learning_rate: float
    alpha_learning_rate: float
    save_checkpoints_steps: int


def budget_settings(target_sparsity):
    """A budget search's pruning run to ``target_sparsity``: README's measured schedule, FLOP's
    own Lagrangian learning rates."""
    return PruneSettings(
        target_sparsity=target_sparsity, prune_epochs=BUDGET_PRUNE_EPOCHS,
        prune_learning_rate=BUDGET_PRUNE_LEARNING_RATE,
        target_sparsity_warmup=BUDGET_SPARSITY_WARMUP,
        lambda_learning_rate=cli.field_default(FlopSettings, "lambda_learning_rate"),
        alpha_learning_rate=cli.field_default(FlopSettings, "alpha_learning_rate"),
        save_checkpoints_steps=BUDGET_SAVE_CHECKPOINTS_STEPS)


def factorize_flags(context):
    return [f"--bert_config_file={os.path.join(context.source, CONFIG_FILE)}",
            f"--checkpoint={context.source}", f"--output_dir={context.folder}", "--finetuned"]


def prune_flags(context):
    recipe, settings = context.recipe, context.settings
    factorized = context.folders[FACTORIZE]
    resume = ["--resume"] if run_folders(context.folder) else []
    return [f"--task_name={recipe.task_name}", "--do_train", "--do_eval",
            f"--data_dir={recipe.data_dir}",
            f"--vocab_file={os.path.join(factorized, VOCAB_FILE)}",
            f"--bert_config_file={os.path.join(factorized, CONFIG_FILE)}",
            f"--init_checkpoint={factorized}", f"--output_dir={context.folder}",
            f"--max_seq_length={recipe.max_seq_length}",
            f"--train_batch_size={recipe.train_batch_size}",
            f"--learning_rate={settings.prune_learning_rate}",
            f"--num_train_epochs={settings.prune_epochs}",
            f"--max_train_examples={recipe.max_train_examples}",
            f"--target_sparsity={settings.target_sparsity}",
            f"--target_sparsity_warmup={settings.target_sparsity_warmup}",
            f"--lambda_learning_rate={settings.lambda_learning_rate}",
            f"--alpha_learning_rate={settings.alpha_learning_rate}",
            f"--save_checkpoints_steps={settings.save_checkpoints_steps}",
            f"--teacher_checkpoint={context.teacher}", *resume]


def run_folders(output):
    """True once a pruning run started in ``output``: the step then resumes it."""
    return (os.path.isdir(output)
            and any(flop_cli.RUN_DIR_PATTERN.match(name) for name in os.listdir(output)))


def pruned_checkpoint(prune_dir):
    """The run's best/ (within the sparsity tolerance of the target), else its last checkpoint."""
    run_dir = flop_cli.newest_run_dir(prune_dir)
    best = os.path.join(run_dir, BEST_DIR)
    if os.path.isdir(best):
        return best
    log.warning("no checkpoint of %s reached the target sparsity within the tolerance; "
                "using its last checkpoint", run_dir)
    return run_dir


def remove_mask_flags(context):
    return [f"--checkpoint={pruned_checkpoint(context.folders[PRUNE])}",
            f"--output_folder_dir={context.folder}",
            f"--latency_iterations={context.recipe.latency_iterations}",
            f"--latency_seq_length={context.recipe.max_seq_length}"]


class FlopDeployment(deployment.Deployment):
    """Factorize the source model, prune it (distilled from the teacher), keep the compact one."""
    name = "flop"
    settings_type = PruneSettings
    # Only pruning reads PruneSettings: factorizing and removing the masks follow their source.
    recipe_steps = (RecipeStep(FACTORIZE, "flop.factorize", factorize_flags, model="",
                               result_fields=()),
                    RecipeStep(PRUNE, "flop.run_classifier", prune_flags),
                    RecipeStep(COMPACT, "flop.remove_mask", remove_mask_flags, model="",
                               result_fields=()))
    budget_stage = deployment.PRUNE

    def validate_settings(self, settings: PruneSettings):
        cli.require_in_range(settings.target_sparsity, "target_sparsity", 0.0, 1.0,
                             high_inclusive=False)
        cli.require_in_range(settings.prune_learning_rate, "prune_learning_rate", 0.0)
        for name in ("prune_epochs", "lambda_learning_rate", "alpha_learning_rate"):
            cli.require_positive(getattr(settings, name), name)
        cli.require_in_range(settings.target_sparsity_warmup, "target_sparsity_warmup", 0)

    def budget_variants(self, target: BudgetTarget, recipe: RecipeSettings, source_config):
        """Only on a model at its full width: not a student, not pruned before."""
        if any(key in source_config.extra for key in WIDTH_CUT_KEYS):
            return ()
        return tuple(Variant(f"sparsity{sparsity:g}", budget_settings(sparsity))
                     for sparsity in BUDGET_SPARSITIES)


DEPLOYMENT = FlopDeployment()
