"""How PoWER-BERT deploys: the tokens each layer keeps (its retention configuration), its
one step in a compound recipe (power_bert.main's three steps, in one folder) and its default
settings as the one variant of a budget search's token-reduction stage."""
import dataclasses
import os
from typing import Optional

from bert import cli, deployment
from bert.deployment import BudgetTarget, RecipeSettings, RecipeStep, TokenCount, Variant
from power_bert import main, steps
from power_bert.method import EXTRACT_NAME
from power_bert.token_selectors import RETENTION_CONFIG_KEY

POWER = "power"
# The Extract re-train's model folder: kernel ranks of the source plus the retention.
RETRAINED_MODEL = os.path.join(main.STEP_FOLDERS[-1], steps.MODEL_DIR)


@dataclasses.dataclass(frozen=True)
class PowerSettings:
    """PoWER-BERT's settings in a recipe (deploy.compress's flags of the same names); the
    defaults are power_bert.main's."""
    power_epochs: int = main.DEFAULT_EPOCHS
    lr_soft_extract: Optional[float] = None  # None: power_bert.main's per-task default
    power_lambda: Optional[float] = None  # None: power_bert.main's per-task default


def power_flags(context):
    recipe, settings = context.recipe, context.settings
    return [f"--TASK={recipe.task_name}", f"--CHECKPOINT_PATH={context.source}",
            f"--DATA_DIR={recipe.data_dir}", f"--OUTPUT_DIR={context.folder}",
            f"--EPOCH={settings.power_epochs}", f"--MAX_SEQ_LENGTH={recipe.max_seq_length}",
            f"--MAX_TRAIN_EXAMPLES={recipe.max_train_examples}",
            f"--BENCHMARK_ITERATIONS={recipe.latency_iterations}",
            *([f"--LR_SOFT_EXTRACT={settings.lr_soft_extract}"]
              if settings.lr_soft_extract is not None else []),
            *([f"--LAMBDA={settings.power_lambda}"] if settings.power_lambda is not None
              else [])]


class PowerBertDeployment(deployment.Deployment):
    """Extract keeps a fixed number of tokens per layer: the FLOPs follow from the config."""
    name = EXTRACT_NAME
    settings_type = PowerSettings
    recipe_steps = (RecipeStep(POWER, "power_bert.main", power_flags, model=RETRAINED_MODEL),)
    budget_stage = deployment.TOKENS

    def validate_settings(self, settings: PowerSettings):
        cli.require_positive(settings.power_epochs, "power_epochs")
        for name in ("lr_soft_extract", "power_lambda"):  # None: the per-task value
            if getattr(settings, name) is not None:  # 0 is allowed: that term off
                cli.require_in_range(getattr(settings, name), name, 0.0)

    def token_count(self, bert_config):
        retention = bert_config.extra.get(RETENTION_CONFIG_KEY)
        return None if retention is None else TokenCount(kept_per_layer=tuple(retention))

    def budget_variants(self, target: BudgetTarget, recipe: RecipeSettings, source_config):
        """The defaults, on a model whose tokens no method chooses yet (one selector a run)."""
        if any(description.token_count(source_config) is not None
               for description in deployment.descriptions()):
            return ()
        return (Variant(POWER, PowerSettings()),)


DEPLOYMENT = PowerBertDeployment()
