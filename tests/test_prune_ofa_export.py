"""A sparse model trained quantization-aware exports to an INT8 ONNX that uses the ranges its
training learned: the file's activation scales and zero points are the checkpoint's range
variables (TF's nudged arithmetic), and its logits follow the fake-quantized TF graph."""
import json
import re
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from bert import checkpoint
from conftest import REPO_ROOT
from deploy import export, inference
from prune_ofa import quantize
from prune_ofa.method import mark_config
from test_deploy_export import compact_weights
from tiny_bert import (random_sentences, random_weights, tiny_config, write_sst2_task,
                       write_tiny_model)

MAX_SEQ_LENGTH = 16
SPARSITY = 0.8
BATCH = 16
WEIGHT_SCALE = 3.0  # logits that differ between sentences (as in test_deploy_export)
# The learned range of each kind of kernel input: embeddings/LayerNorm outputs, attention
# context, GELU outputs (long-tailed on the positive side).
RANGES = {"query": (-2.5, 2.7), "key": (-2.5, 2.7), "value": (-2.5, 2.7),
          "attention/output/dense": (-1.9, 2.1), "intermediate/dense": (-2.4, 2.6),
          "output/dense": (-0.17, 4.3)}
# Both quantize the same tensors with the same scales; they differ where a value sits on a
# rounding boundary and in the order of the float sums: the INT8 file must be this many times
# closer to the fake-quantized graph than the float graph is.
CLOSER_THAN_FLOAT = 5
# ... and within this mean |logit difference| of it (the embedding tables' per-row INT8, which
# training did not simulate, is most of it: measured 1.4e-4 on the tiny model's logits ~0.6).
INT8_VS_FAKE_QUANT = 1e-3


def write_qat_model(folder):
    """A tiny model folder: 80% zeros in every encoder kernel, hand-set learned ranges."""
    config = tiny_config()
    values = {name: value * WEIGHT_SCALE for name, value in random_weights(config).items()}
    rng = np.random.RandomState(2)
    for name in [name for name in values if name.startswith("bert/encoder/")
                 and name.endswith("/kernel")]:
        values[name][rng.rand(*values[name].shape) < SPARSITY] = 0.0
        scope = name[:-len("/kernel")]
        low, high = RANGES[next(suffix for suffix in RANGES if scope.endswith(suffix))]
        values[f"{scope}/{quantize.INPUT_SCOPE}/min"] = np.float32(low)
        values[f"{scope}/{quantize.INPUT_SCOPE}/max"] = np.float32(high)
    values[quantize.COUNTER] = np.int64(1)
    mark_config(config, values)
    quantize.mark_config(config, quantize.QatSettings())
    write_tiny_model(folder, config, values)
    return values


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("qat_export")
    values = write_qat_model(root / "model")
    assert export.main(["--model_dir", str(root / "model"), "--output_dir", str(root / "out"),
                        "--max_seq_length", str(MAX_SEQ_LENGTH)]) == 0
    return root, values


def test_int8_scales_are_the_learned_ranges(exported):
    root, values = exported
    model = onnx.load(str(root / "out" / export.INT8_FILE))
    constants = {item.name: numpy_helper.to_array(item) for item in model.graph.initializer}
    producers = {output: node for node in model.graph.node for output in node.output}
    weights = {name: value for name, value in values.items() if name.endswith("/kernel")
               and name.startswith("bert/encoder/")}
    checked = 0
    for node in model.graph.node:
        if node.op_type != "MatMul":
            continue
        activation, weight = (producers.get(name) for name in node.input)
        if weight is None or weight.op_type != "DequantizeLinear":
            continue
        quantized = constants[weight.input[0]].astype(np.float32) * constants[weight.input[1]]
        name = next(name for name, kernel in weights.items()
                    if kernel.shape == quantized.shape and np.allclose(
                        kernel, quantized, atol=np.abs(kernel).max() / 127))
        scope = name[:-len("/kernel")]
        low, high = (values[f"{scope}/{quantize.INPUT_SCOPE}/{end}"] for end in ("min", "max"))
        scale, zero_point = quantize.nudged_scale_zero_point(low, high)
        assert activation.op_type == "DequantizeLinear", name
        assert constants[activation.input[1]] == pytest.approx(scale, rel=1e-6), name
        assert int(constants[activation.input[2]]) == zero_point, name
        assert constants[weight.input[1]] == pytest.approx(np.abs(weights[name]).max() / 127,
                                                           rel=1e-6), name
        assert np.mean(constants[weight.input[0]] == 0) >= SPARSITY - 0.1, "zeros kept"
        checked += 1
    assert checked == len(weights)
    # The embedding tables are INT8 too, one scale per row (weight-only).
    table = values["bert/embeddings/word_embeddings"]
    stored = [constants[name] for name in constants if name.endswith("_int8")
              and constants[name].shape == table.shape]
    assert len(stored) == 1 and stored[0].dtype == np.int8
    row_scales = np.abs(table).max(axis=1) / 127
    np.testing.assert_allclose(stored[0] * row_scales[:, None], table,
                               atol=float(row_scales.max()) / 2 + 1e-7)


def test_int8_logits_follow_the_fake_quantized_graph(exported):
    root, _ = exported
    folder = inference.load_model_folder(str(root / "model"))
    assert [method.name for method in folder.method_list] == ["prune_ofa", "qat"]
    pairs = random_sentences(48)
    tokenizer = folder.tokenizer()
    fake_quant = inference.TensorFlowRunner(folder)
    float_graph = inference.TensorFlowRunner(folder, simulated_int8=False)
    int8 = inference.OnnxRunner(str(root / "out" / export.INT8_FILE))
    float_onnx = inference.OnnxRunner(str(root / "out" / export.ONNX_FILE))
    int8_error, float_error = [], []
    for start in range(0, len(pairs), BATCH):
        batch = inference.encode(tokenizer, pairs[start:start + BATCH], MAX_SEQ_LENGTH)
        reference = fake_quant(*batch)
        int8_error.append(np.abs(int8(*batch) - reference).mean())
        float_error.append(np.abs(float_graph(*batch) - reference).mean())
        np.testing.assert_allclose(float_onnx(*batch), float_graph(*batch), atol=1e-4)
    print(f"mean |logit - fake-quantized TF|: INT8 ONNX {np.mean(int8_error):.2e}, float "
          f"graph {np.mean(float_error):.2e}")
    assert np.mean(int8_error) * CLOSER_THAN_FLOAT <= np.mean(float_error)
    assert np.mean(int8_error) <= INT8_VS_FAKE_QUANT
    summary = json.loads((root / "out" / export.EXPORT_FILE).read_text())
    assert "learned" in summary["files"][export.INT8_FILE]["quantization"]


def test_learned_mode_needs_learned_ranges(tmp_path, capsys):
    write_tiny_model(tmp_path / "dense")
    status = export.main(["--model_dir", str(tmp_path / "dense"), "--output_dir",
                          str(tmp_path / "out"), "--int8_mode", "learned",
                          "--max_seq_length", str(MAX_SEQ_LENGTH)])
    assert status != 0 and not (tmp_path / "out").exists()
    assert "--int8_mode learned" in capsys.readouterr().err
    assert checkpoint.list_checkpoint(str(tmp_path / "dense"))


def test_a_low_rank_model_pruned_and_trained_quantization_aware_exports_its_ranges(tmp_path):
    """The methods compose: FLOP's compact low-rank kernels, Prune OFA's masks on each factor,
    QAT's ranges on each factor's input (``input_quant`` before P, ``rank_quant`` between P
    and Q), then the learned INT8 export — which follows the fake-quantized graph."""
    config, values = compact_weights(tiny_config(), {
        name: value * WEIGHT_SCALE for name, value in random_weights(tiny_config()).items()})
    write_tiny_model(tmp_path / "compact", config, values)
    write_sst2_task(tmp_path / "data")
    trained = subprocess.run(
        [sys.executable, "-m", "prune_ofa.run_classifier", "--task_name=SST-2",
         f"--data_dir={tmp_path / 'data'}", f"--init_checkpoint={tmp_path / 'compact'}",
         f"--output_dir={tmp_path / 'ofa'}", f"--max_seq_length={MAX_SEQ_LENGTH}", "--do_train",
         "--train_batch_size=8", "--learning_rate=1e-3", "--num_train_epochs=1",
         "--final_sparsity=0.5", "--pruning_end=4", "--pruning_frequency=2", "--qat_epochs=1"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert trained.returncode == 0, trained.stderr[-3000:]
    model_dir = tmp_path / "ofa" / "qat" / "model"
    stored = checkpoint.read_checkpoint(str(model_dir))
    ranges = quantize.learned_ranges(stored)
    kinds = {kind for _, kind in ranges}
    assert kinds == {quantize.INPUT_SCOPE, quantize.RANK_SCOPE}
    factors = [name for name in stored if re.search(r"_[pq]/kernel$", name)]
    assert factors and all(np.mean(stored[name] == 0) == pytest.approx(0.5, abs=0.02)
                           for name in factors)
    assert export.main(["--model_dir", str(model_dir), "--output_dir", str(tmp_path / "out"),
                        "--max_seq_length", str(MAX_SEQ_LENGTH)]) == 0
    folder = inference.load_model_folder(str(model_dir))
    batch = inference.encode(folder.tokenizer(), random_sentences(16), MAX_SEQ_LENGTH)
    reference = inference.TensorFlowRunner(folder)(*batch)
    int8 = inference.OnnxRunner(str(tmp_path / "out" / export.INT8_FILE))(*batch)
    float_graph = inference.TensorFlowRunner(folder, simulated_int8=False)(*batch)
    assert (np.abs(int8 - reference).mean() * CLOSER_THAN_FLOAT
            <= np.abs(float_graph - reference).mean())
