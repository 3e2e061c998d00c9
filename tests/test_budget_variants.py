"""What each method offers a budget search (bert.deployment's budget_variants), and that every
variant's recipe steps run as a user would run them, each leaving a model folder."""
import dataclasses
import os
import re
import subprocess
import sys

import pytest

from bert import deployment, model_folder
from bert.deployment import BUDGET_STAGES, BudgetTarget, RecipeSettings, StepContext
from conftest import REPO_ROOT
from distill.extract import EXTRACTED_FROM_KEY
from flop import deployment as flop_deployment
from power_bert.token_selectors import RETENTION_CONFIG_KEY
from tiny_bert import tiny_config, write_small_model, write_sst2_task
from tr_bert.method import CONFIG_KEY as TR_BERT_CONFIG_KEY

FOLDER_SAFE = re.compile(r"^[A-Za-z0-9._-]+$")
TARGET = BudgetTarget(speedup=10.0, batch_size=32, max_loss=1.0)
RECIPE = RecipeSettings("SST-2", "glue/SST-2", max_seq_length=128, train_batch_size=32,
                        max_train_examples=0, latency_iterations=5)
MINILM = dict(vocab_size=30522, hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
              intermediate_size=1536, max_position_embeddings=512)
STUDENT_SIZES = {"num_hidden_layers": 6, "num_attention_heads": 12, "hidden_size": 384,
                 "intermediate_size": 1536}
PER_LAYER_SIZES = [{"num_attention_heads": 1}, {"num_attention_heads": 2}]
TR_BERT_ENTRY = {"reduction_layers": [1], "policy_hidden_size": 4}
# End to end: a 2-layer 16-wide "fine-tuned" model, 16 examples of 16 tokens, one epoch.
SEQ, BATCH, EXAMPLES = 16, 8, 16
DISTILL_LAYERS = 6
DISTILL_SPEEDUP = 1.2  # a 6-layer model of width 16 has students this much faster
TIMEOUT = 300


def budget_descriptions():
    return [description for description in deployment.descriptions()
            if description.budget_stage is not None]


def variants(name, config, target=TARGET):
    return deployment.find(name).budget_variants(target, RECIPE, config)


def test_every_budget_stage_is_taken_and_variants_are_typed_and_folder_safe():
    described = budget_descriptions()
    assert {description.budget_stage for description in described} == set(BUDGET_STAGES)
    for description in described:
        assert description.settings_type is not None and description.recipe_steps
        for config in (tiny_config(), tiny_config(**MINILM)):
            offered = description.budget_variants(TARGET, RECIPE, config)
            assert offered, f"{description.name} offers nothing on a dense fine-tuned model"
            labels = [variant.label for variant in offered]
            assert len(set(labels)) == len(labels), labels
            for variant in offered:
                assert FOLDER_SAFE.match(variant.label), variant.label
                assert isinstance(variant.settings, description.settings_type)


def test_students_spread_around_the_needed_speedup_and_only_from_the_fine_tuned_model():
    offered = variants("distill", tiny_config(**MINILM))
    speedups = [variant.settings.student_speedup for variant in offered]
    assert len(speedups) > 1 and speedups == sorted(speedups)
    assert all(variant.settings.budget_batch_size == TARGET.batch_size for variant in offered)
    assert [variant.label for variant in variants("distill", tiny_config(),
                                                  dataclasses.replace(TARGET, speedup=1.0))] \
        == ["x1.5"]  # clipped: never a student slower than that
    for extra in ({"layers": PER_LAYER_SIZES}, {EXTRACTED_FROM_KEY: STUDENT_SIZES},
                  {"kernel_ranks": {"layer_0/intermediate/dense": 4}},
                  {TR_BERT_CONFIG_KEY: TR_BERT_ENTRY}):
        assert variants("distill", tiny_config(**extra)) == (), extra


def test_flop_prunes_only_a_model_at_full_width():
    assert variants("flop", tiny_config(**{RETENTION_CONFIG_KEY: [6, 3]}))
    for extra in ({"layers": PER_LAYER_SIZES}, {EXTRACTED_FROM_KEY: STUDENT_SIZES},
                  {"kernel_ranks": {"layer_0/intermediate/dense": 4}}):
        assert variants("flop", tiny_config(**extra)) == (), extra
    assert EXTRACTED_FROM_KEY in flop_deployment.WIDTH_CUT_KEYS  # the one name, in both


def test_token_reduction_only_where_no_method_chooses_the_tokens_yet():
    tr_bert_config = tiny_config(**{TR_BERT_CONFIG_KEY: TR_BERT_ENTRY})
    power_config = tiny_config(**{RETENTION_CONFIG_KEY: [6, 3]})
    for name in ("tr_bert", "power_bert"):
        assert variants(name, tr_bert_config) == () and variants(name, power_config) == ()
    [power] = variants("power_bert", tiny_config())
    assert power.label == "power"
    layers = {variant.settings.tr_bert_reduction_layers
              for variant in variants("tr_bert", tiny_config(**MINILM))}
    assert layers == {(2, 4)}  # TR-BERT's default places, on a 6-layer model


# End to end -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A small model with a classifier head (the fine-tuned teacher) and a tiny SST-2 task."""
    root = tmp_path_factory.mktemp("budget")
    write_small_model(root / "fine_tuned", num_labels=2)
    write_sst2_task(root / "data", rows=EXAMPLES)
    return root


@pytest.fixture(scope="module")
def deep_world(tmp_path_factory):
    """The same, DISTILL_LAYERS deep: fewer layers time measurably faster even at this width
    (two layers of 16 time within noise of one, and a search refuses speed-ups <= 1)."""
    root = tmp_path_factory.mktemp("budget_deep")
    write_small_model(root / "fine_tuned", DISTILL_LAYERS, num_labels=2)
    write_sst2_task(root / "data", rows=EXAMPLES)
    return root


def tiny(name, settings):
    """A variant's settings at test scale: one epoch, a few steps, a generous latency budget."""
    scale = {"distill": dict(student_speedup=DISTILL_SPEEDUP, max_measured=3, intermediate_step=8,
                             distill_epochs=1.0, distill_learning_rate=1e-3),
             "tr_bert": dict(tr_bert_epochs=1.0),
             "power_bert": dict(power_epochs=1, lr_soft_extract=0.02, power_lambda=0.5),
             "flop": dict(target_sparsity=0.3, prune_epochs=1.0, prune_learning_rate=1e-3,
                          target_sparsity_warmup=2, save_checkpoints_steps=2)}[name]
    return dataclasses.replace(settings, **scale)


def run_recipe_steps(description, settings, source, root):
    """Each step's command in its folder, flags built just before it runs (a step reads what
    the one before it left); returns the model folder the last step leaves."""
    recipe = RecipeSettings("SST-2", str(root / "data"), SEQ, BATCH, EXAMPLES, 1)
    base = root / description.name
    folders = {step.name: str(base / f"{index + 1}_{step.name}")
               for index, step in enumerate(description.recipe_steps)}
    for step in description.recipe_steps:
        context = StepContext(recipe, settings, folders[step.name], folders, source, source)
        command = [sys.executable, "-m", step.module, *step.flags(context)]
        process = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True,
                                 timeout=TIMEOUT)
        assert process.returncode == 0, f"{' '.join(command)}\n{process.stderr[-3000:]}"
    last = description.recipe_steps[-1]
    return last.model_path(folders[last.name])


@pytest.mark.parametrize("name", ["distill", "tr_bert", "power_bert", "flop"])
def test_a_variant_runs_its_recipe_steps_into_a_model_folder(world, deep_world, name):
    world = deep_world if name == "distill" else world
    source = str(world / "fine_tuned")
    description = deployment.find(name)
    [first, *_] = description.budget_variants(
        dataclasses.replace(TARGET, batch_size=BATCH), RECIPE,
        model_folder.load(source).bert_config)
    model = run_recipe_steps(description, tiny(name, first.settings), source, world)
    config = model_folder.load(model).bert_config
    if name == "distill":
        assert config.extra[EXTRACTED_FROM_KEY]["num_hidden_layers"] == DISTILL_LAYERS
        assert os.path.isfile(os.path.join(os.path.dirname(model), "eval_results.txt"))
    elif name == "tr_bert":
        assert config.extra[TR_BERT_CONFIG_KEY]["reduction_layers"] == [1]
    elif name == "power_bert":
        assert len(config.extra[RETENTION_CONFIG_KEY]) == config.num_hidden_layers
    else:  # FLOP-compact: the kept rank of every gated kernel
        assert config.extra["pruned"] and config.extra["kept_ranks"]


def test_power_bert_zero_rates_reach_its_command():
    """0 is PoWER-BERT's own "off" for its retention rate and regulariser, not "the default"."""
    recipe = RecipeSettings("SST-2", "data", SEQ, BATCH, EXAMPLES, 1)
    settings = deployment.find("power_bert").settings_type(lr_soft_extract=0.0, power_lambda=0.0)
    flags = deployment.find("power_bert").recipe_steps[0].flags(
        StepContext(recipe, settings, "out", {}, "model", "model"))
    assert "--LR_SOFT_EXTRACT=0.0" in flags and "--LAMBDA=0.0" in flags
