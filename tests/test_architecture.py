"""The rules that keep one BERT with many methods: imports, flags, and methods that compose."""
import ast
import subprocess
import sys
import tomllib

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
METHOD_PACKAGES = ("flop", "power_bert", "tr_bert", "distill", "prune_ofa")
COMBINER = "deploy"  # the one package that may import several methods
SEQ = 16
COMMAND_LINE_HELPERS = ("bert/cli.py",)  # parses flags for the command lines, reads no value
SOURCE_PACKAGES = (CORE,) + METHOD_PACKAGES + (COMBINER,)
SIZE_CHECKED = SOURCE_PACKAGES + ("datasets",)  # every folder of non-test code
MAX_FILE_LINES = 600
MAX_FUNCTION_LINES = 60
ENTRY_FUNCTIONS = {"main", "console_main"}
NAMESPACE_PARAMETERS = {"args", "namespace"}  # what a parsed command line is called
# ``flags`` is also a model folder's provenance mapping (checkpoint.write_model_folder): a
# library may take it as a mapping, never read it by attribute as a namespace is read.
FLAGS_PARAMETER = "flags"
MAPPING_METHODS = {"get", "items", "keys", "values"}


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


def console_scripts():
    """{module: functions} that pyproject.toml's console scripts name."""
    with open(REPO_ROOT / "pyproject.toml", "rb") as handle:
        scripts = tomllib.load(handle)["project"]["scripts"]
    named = {}
    for target in scripts.values():
        module, function = target.split(":")
        named.setdefault(module, set()).add(function)
    return named


def module_name(path):
    return ".".join(path.relative_to(REPO_ROOT).with_suffix("").parts)


def top_level_names(tree):
    """Functions defined and names assigned at module level (``main = cli.absl_main(...)``)."""
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(target.id for target in node.targets if isinstance(target, ast.Name))
    return names


def builds_command_line(tree):
    """Calls an ArgumentParser (argparse's or bert.cli's) or imports absl's flags."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            function = node.func
            name = function.attr if isinstance(function, ast.Attribute) else getattr(
                function, "id", None)
            if name == "ArgumentParser":
                return True
        elif isinstance(node, ast.ImportFrom) and node.module == "absl":
            if any(alias.name == "flags" for alias in node.names):
                return True
        elif isinstance(node, ast.Import):
            if any(alias.name == "absl.flags" for alias in node.names):
                return True
    return False


def is_command_line(path, tree, scripts):
    """A command-line module defines its entry point (main, console_main, or the function a
    console script of pyproject.toml names) and builds its parser (argparse or absl flags).
    Only its functions may take the parsed command line; every other module is a library,
    driven by typed settings objects."""
    entries = ENTRY_FUNCTIONS | scripts.get(module_name(path), set())
    return bool(top_level_names(tree) & entries) and builds_command_line(tree)


def source_modules(packages=SOURCE_PACKAGES):
    """(path, relative name, syntax tree) of every module of the packages."""
    for package in packages:
        for path in package_modules(package):
            yield path, str(path.relative_to(REPO_ROOT)), ast.parse(path.read_text(), str(path))


def library_modules():
    scripts = console_scripts()
    for path, name, tree in source_modules():
        if name not in COMMAND_LINE_HELPERS and not is_command_line(path, tree, scripts):
            yield name, tree


def functions(tree):
    return [node for node in ast.walk(tree)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))]


def namespace_parameters(function):
    """The parameters of ``function`` that hold a parsed command line: named args or
    namespace, annotated Namespace, or a ``flags`` read by attribute (``*args`` packs
    positional values: not a namespace)."""
    parameters = function.args.posonlyargs + function.args.args + function.args.kwonlyargs
    attribute_reads = {node.value.id for node in ast.walk(function)
                       if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                       and node.attr not in MAPPING_METHODS}
    found = []
    for parameter in parameters:
        annotation = ast.unparse(parameter.annotation) if parameter.annotation else ""
        if (parameter.arg in NAMESPACE_PARAMETERS or annotation.endswith("Namespace")
                or parameter.arg == FLAGS_PARAMETER and parameter.arg in attribute_reads):
            found.append(parameter.arg)
    return found


def test_command_lines_are_recognised():
    """The rules below lean on this: every console script's module is a command line."""
    scripts = console_scripts()
    command_lines = {module_name(path) for path, _, tree in source_modules()
                     if is_command_line(path, tree, scripts)}
    assert set(scripts) <= command_lines, sorted(set(scripts) - command_lines)
    assert "distill.importance" not in command_lines and "bert.classifier" not in command_lines


def test_libraries_take_settings_not_a_parsed_command_line():
    wrong = [f"{name}:{function.lineno} {function.name}({', '.join(found)})"
             for name, tree in library_modules() for function in functions(tree)
             for found in [namespace_parameters(function)] if found]
    assert not wrong, "library functions taking a parsed command line (take a settings " \
                      f"object, built by the command line): {wrong}"


def reads_absl_flags(tree):
    """A ``FLAGS`` name (``FLAGS = flags.FLAGS``, ``FLAGS.x``) or ``flags.FLAGS``."""
    return any(isinstance(node, ast.Name) and node.id == "FLAGS"
               or isinstance(node, ast.Attribute) and node.attr == "FLAGS"
               for node in ast.walk(tree))


def test_only_command_lines_read_absl_flags():
    wrong = [name for name, tree in library_modules() if reads_absl_flags(tree)]
    assert not wrong, f"absl FLAGS read outside a command line: {wrong}"


def test_no_source_file_is_too_long():
    for package in SIZE_CHECKED:
        for path in package_modules(package):
            lines = len(path.read_text().splitlines())
            assert lines <= MAX_FILE_LINES, (
                f"{path.relative_to(REPO_ROOT)}: {lines} lines (at most {MAX_FILE_LINES}; "
                "split it along its concerns)")


def test_no_function_is_too_long():
    wrong = [f"{name}:{function.lineno} {function.name} "
             f"({function.end_lineno - function.lineno + 1} lines)"
             for _, name, tree in source_modules(SIZE_CHECKED) for function in functions(tree)
             if function.end_lineno - function.lineno + 1 > MAX_FUNCTION_LINES]
    assert not wrong, f"functions over {MAX_FUNCTION_LINES} lines: {wrong}"


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
