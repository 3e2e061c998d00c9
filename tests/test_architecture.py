"""The rules that keep one BERT with many methods: imports, flags, and methods that compose."""
import ast
import subprocess
import sys

import pytest
import tensorflow as tf

from bert import methods, modeling
from bert.errors import UsageError
from conftest import REPO_ROOT
from power_bert import token_selectors
from power_bert.method import ConfigurationSearch, Extract
from tiny_bert import write_factorized_model, write_sst2_task

tf1 = tf.compat.v1

CORE = "bert"
METHOD_PACKAGES = ("flop", "power_bert", "tr_bert", "distill")
COMBINER = "deploy"  # the one package that may import several methods
SEQ = 16
COMMAND_LINE_HELPERS = ("bert/cli.py",)  # parses flags for the command lines, reads no value


def imported_packages(path):
    """Top-level package names a module imports."""
    tree = ast.parse(path.read_text(), str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


def package_modules(package):
    return sorted((REPO_ROOT / package).glob("*.py"))


def test_core_imports_no_method_and_methods_not_each_other():
    assert package_modules(CORE) and package_modules("flop") and package_modules("power_bert")
    for package in (CORE,) + METHOD_PACKAGES:
        forbidden = (set(METHOD_PACKAGES) | {COMBINER}) - {package}
        for module in package_modules(package):
            wrong = imported_packages(module) & forbidden
            assert not wrong, f"{module.relative_to(REPO_ROOT)} imports {sorted(wrong)}"


def test_only_command_lines_read_absl_flags():
    for package in (CORE,) + METHOD_PACKAGES:
        for module in package_modules(package):
            text = module.read_text()
            if "FLAGS" in text and str(module.relative_to(REPO_ROOT)) not in COMMAND_LINE_HELPERS:
                assert 'if __name__ == "__main__":' in text, (
                    f"{module.relative_to(REPO_ROOT)} reads absl FLAGS but is no command line")


def test_no_module_shadows_the_standard_library():
    """``python ./flop/x.py`` puts flop/ first on sys.path: a flop/selectors.py would replace
    the standard library's selectors for every import (TF's subprocess use included)."""
    for package in (CORE,) + METHOD_PACKAGES:
        for module in package_modules(package):
            assert module.stem not in sys.stdlib_module_names, module


@pytest.fixture(scope="module")
def compact_with_retention(tmp_path_factory):
    """A low-rank (FLOP-factorized) model folder whose config also carries a PoWER retention."""
    root = tmp_path_factory.mktemp("compound")
    write_factorized_model(root)
    config_file = root / "fact" / "bert_config.json"
    config = modeling.BertConfig.from_json_file(str(config_file))
    config.extra[token_selectors.RETENTION_CONFIG_KEY] = [6, 3]
    config.to_json_file(str(config_file))
    return root / "fact", config


def test_config_alone_brings_low_rank_factory_and_power_selector(compact_with_retention):
    _, config = compact_with_retention
    found = methods.from_config(config)
    assert [method.name for method in found] == ["power_bert"]
    with tf.Graph().as_default():
        hooks = methods.build_all(found, config, False)
        ids = tf1.placeholder(tf.int32, [None, SEQ])
        model = modeling.BertModel(config, False, ids, dense_factory=hooks.dense_factory,
                                   token_selector=hooks.token_selector)
        names = {v.op.name for v in tf1.global_variables()}
    assert "bert/encoder/layer_0/attention/self/query_p/kernel" in names  # compact factors
    assert [layer.shape[1] for layer in model.all_encoder_layers] == [6, 3]  # fewer tokens


def test_two_token_selectors_are_refused(compact_with_retention):
    _, config = compact_with_retention
    with tf.Graph().as_default(), pytest.raises(UsageError, match="select tokens"):
        methods.build_all([Extract([6, 3]), ConfigurationSearch(1e-3, 1e-3, SEQ)], config, False)


def test_run_classifier_evaluates_the_compound_model(compact_with_retention, tmp_path):
    model_dir, _ = compact_with_retention
    data = write_sst2_task(tmp_path / "data", rows=12)
    process = subprocess.run(
        [sys.executable, "-m", "bert.run_classifier", "--task_name=SST-2", "--do_eval",
         f"--data_dir={data}", f"--vocab_file={model_dir / 'vocab.txt'}",
         f"--bert_config_file={model_dir / 'bert_config.json'}",
         f"--init_checkpoint={model_dir}", f"--output_dir={tmp_path / 'out'}",
         f"--max_seq_length={SEQ}"], cwd=REPO_ROOT, capture_output=True, text=True)
    assert process.returncode == 0, process.stderr[-2000:]
    assert "eval_accuracy = " in (tmp_path / "out" / "eval_results.txt").read_text()
