"""Methods declare what deployment needs (bert.deployment); deploy/ finds them, names none."""
import os
from importlib import metadata

from bert import deployment, methods
from bert import flops as bert_flops
from bert.deployment import RecipeStep, TokenCount
from conftest import REPO_ROOT
from deploy import compress, flops
from power_bert.token_selectors import RETENTION_CONFIG_KEY
from test_architecture import COMBINER, METHOD_PACKAGES, imported_packages, package_modules
from tiny_bert import tiny_config
from tr_bert.method import CONFIG_KEY as TR_BERT_CONFIG_KEY

SEQ = 16
LABELS = 2
RETENTION = [6, 3]
TR_BERT_CONFIG = {"reduction_layers": [1], "policy_hidden_size": 4}


def test_deploy_imports_no_method_package():
    assert package_modules(COMBINER)
    for module in package_modules(COMBINER):
        wrong = imported_packages(module) & set(METHOD_PACKAGES)
        assert not wrong, f"{module.relative_to(REPO_ROOT)} imports {sorted(wrong)}"


def test_every_method_with_a_config_entry_describes_its_deployment():
    configured = {entry.module.split(".")[0]
                  for entry in metadata.entry_points(group=methods.CONFIG_METHODS_GROUP)}
    described = {type(description).__module__.split(".")[0]
                 for description in deployment.descriptions()}
    assert configured >= {"power_bert", "tr_bert"}
    assert configured <= described, f"no deployment description: {configured - described}"


def classifier_flops_by_hand(config, tokens_per_layer):
    """bert.flops' layers one by one: layer j sees tokens_per_layer[j], keeps [j + 1]."""
    total = sum(bert_flops.layer_multiply_adds(config, index, tokens_per_layer[index],
                                               tokens_per_layer[index + 1])
                for index in range(config.num_hidden_layers))
    hidden = config.hidden_size
    return bert_flops.FLOPS_PER_MULTIPLY_ADD * (total + hidden * hidden + hidden * LABELS)


def test_flops_of_a_power_bert_retention_config():
    config = tiny_config(**{RETENTION_CONFIG_KEY: RETENTION})
    assert flops.flops_per_example(config, SEQ, LABELS) == classifier_flops_by_hand(
        config, [SEQ, *RETENTION])
    assert flops.per_input_notes(config) == []


def test_flops_of_a_tr_bert_config_are_the_dense_count_with_a_note():
    config = tiny_config(**{TR_BERT_CONFIG_KEY: TR_BERT_CONFIG})
    assert flops.flops_per_example(config, SEQ, LABELS) == classifier_flops_by_hand(
        config, [SEQ, SEQ, SEQ])
    assert flops.flops_per_example(config, SEQ, LABELS) == flops.flops_per_example(
        tiny_config(), SEQ, LABELS)
    [note] = flops.per_input_notes(config)
    assert "TR-BERT keeps tokens per input" in note


class KeepsFour(deployment.Deployment):
    """A method that is in no file of deploy/: every layer keeps 4 tokens."""
    name = "keeps_four"
    kept = 4
    recipe_steps = (RecipeStep("quantize", "keeps_four.main", lambda context: [], model="model"),)

    def token_count(self, bert_config):
        return TokenCount(kept_per_layer=(self.kept,) * bert_config.num_hidden_layers)


def test_a_description_registered_at_runtime_is_counted_by_deploy(monkeypatch):
    config = tiny_config()
    monkeypatch.setattr(deployment, "descriptions", lambda: (KeepsFour(),))
    kept = KeepsFour.kept
    assert flops.flops_per_example(config, SEQ, LABELS) == classifier_flops_by_hand(
        config, [SEQ, kept, kept])


def test_a_new_method_takes_its_place_in_the_recipe(monkeypatch):
    registered = deployment.descriptions()
    monkeypatch.setattr(deployment, "descriptions", lambda: (*registered, KeepsFour()))
    layout = compress.layout(("flop", KeepsFour.name, "power_bert"))
    assert [entry.folder for entry in layout] == [
        "1_fine_tune", "2_factorize", "3_prune", "4_compact", "5_quantize", "6_power",
        "7_export"]
    sources = {entry.folder: entry.source for entry in layout}
    assert sources["5_quantize"] == compress.COMPACT_DIR
    assert sources["6_power"] == os.path.join("5_quantize", KeepsFour.recipe_steps[0].model)
