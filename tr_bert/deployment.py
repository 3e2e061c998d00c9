"""How TR-BERT deploys: its policies keep tokens per input, so a config gives no fixed count;
in a recipe, one step (annotations, then policy-only RL on the source model, BERT frozen)."""
import dataclasses
import os
from typing import Tuple

from bert import deployment
from bert.deployment import BudgetTarget, RecipeSettings, RecipeStep, TokenCount, Variant
from tr_bert import run_tr_bert
from tr_bert.method import CONFIG_KEY, METHOD_NAME

PER_INPUT_NOTE = ("TR-BERT keeps tokens per input (its stage's eval_results.txt gives the "
                  "measured flops_share on dev).")
TR_BERT = "tr_bert"
# The RL stage's model folder: the source's weights and config plus the policies.
RL_MODEL = os.path.join(run_tr_bert.TRAIN_RL, run_tr_bert.MODEL_DIR)
# README (TR-BERT): α 0.1-0.3 keeps about a third to a half of the tokens near the fine-tuned
# metric, with half of the steps imitating the guide; policy-only RL on 2000 examples ran ~3
# epochs.
BUDGET_ALPHAS = (0.1, 0.3)
BUDGET_GUIDE_RATE = 0.5
BUDGET_EPOCHS = 3.0
# Where tokens are dropped, as shares of the depth: the default layers 2 and 4 of 6.
REDUCTION_DEPTHS = (1 / 3, 2 / 3)


@dataclasses.dataclass(frozen=True)
class ReductionSettings:
    """TR-BERT's settings in a recipe: the length penalty, the guide and the policies' places."""
    tr_bert_alpha: float
    tr_bert_reduction_layers: Tuple[int, ...]
    tr_bert_guide_rate: float = BUDGET_GUIDE_RATE
    tr_bert_epochs: float = BUDGET_EPOCHS


def reduction_layers(num_layers):
    """The default layers' place in a model of ``num_layers`` (2,4 of 6; 1,3 of 4; 1 of 2)."""
    return tuple(sorted({min(num_layers - 1, round(num_layers * depth))
                         for depth in REDUCTION_DEPTHS}))


def tr_bert_flags(context):
    """One command, both modes: the source's token importance (the guide) into eval_grad/, then
    the policies alone, learned by REINFORCE, into train_rl/."""
    recipe, settings = context.recipe, context.settings
    return [f"--task_name={recipe.task_name}", f"--data_dir={recipe.data_dir}",
            f"--init_checkpoint={context.source}", f"--output_dir={context.folder}",
            f"--max_seq_length={recipe.max_seq_length}",
            f"--train_batch_size={recipe.train_batch_size}",
            f"--max_train_examples={recipe.max_train_examples}", "--do_eval_grad",
            "--do_train", "--train_rl", f"--alpha={settings.tr_bert_alpha}",
            f"--guide_rate={settings.tr_bert_guide_rate}",
            f"--num_train_epochs={settings.tr_bert_epochs}",
            "--reduction_layers=" + ",".join(map(str, settings.tr_bert_reduction_layers))]


def selects_tokens(bert_config):
    """True when some method (this one included) already chooses the config's tokens: a run
    has at most one token selector."""
    return any(description.token_count(bert_config) is not None
               for description in deployment.descriptions())


class TrBertDeployment(deployment.Deployment):
    """The exported graph gathers each example's kept tokens: its shapes depend on the input."""
    name = METHOD_NAME
    settings_type = ReductionSettings
    recipe_steps = (RecipeStep(TR_BERT, "tr_bert.run_tr_bert", tr_bert_flags, model=RL_MODEL),)
    budget_stage = deployment.TOKENS

    def token_count(self, bert_config):
        if CONFIG_KEY not in bert_config.extra:
            return None
        return TokenCount(per_input=True, note=PER_INPUT_NOTE)

    def budget_variants(self, target: BudgetTarget, recipe: RecipeSettings, source_config):
        if selects_tokens(source_config):
            return ()
        layers = reduction_layers(source_config.num_hidden_layers)
        return tuple(Variant(f"alpha{alpha:g}", ReductionSettings(alpha, layers))
                     for alpha in BUDGET_ALPHAS)


DEPLOYMENT = TrBertDeployment()
