"""The deployment benchmark: FLOPs counted by hand, the table of tiny models, bad input."""
import csv

import pytest

from deploy import benchmark, export, flops
from power_bert.token_selectors import RETENTION_CONFIG_KEY
from tiny_bert import tiny_config, write_sst2_task, write_tiny_model

SEQ = 16


def test_flops_by_hand_with_low_rank_rank_zero_per_layer_heads_and_retention():
    config = tiny_config(
        layers=[{}, {"num_attention_heads": 1, "attention_head_size": 4, "intermediate_size": 6}],
        kernel_ranks={"layer_0/attention/self/query": 2, "layer_1/intermediate/dense": 0},
        **{RETENTION_CONFIG_KEY: [4, 2]})
    # hidden 8; 6 tokens in; 3 labels. Multiply-adds (MACs):
    # layer 0: heads 2 × size 4 = width 8; 6 tokens in, min(4, 6) = 4 kept after attention
    #   query rank 2: 6 × 2·(8+8) = 192; key, value dense: 2 × 6 × 8·8 = 768
    #   scores and context: 2 × (2 heads × 6 × 6 × 4) = 576; attention output: 6 × 8·8 = 384
    #   intermediate: 4 × 8·12 = 384; output: 4 × 12·8 = 384            -> layer 0: 2688
    # layer 1: heads 1 × size 4 = width 4; 4 tokens in, min(2, 4) = 2 kept
    #   q, k, v: 3 × 4 × 8·4 = 384; scores and context: 2 × (1 × 4 × 4 × 4) = 128
    #   attention output: 4 × 4·8 = 128; intermediate rank 0: 0; output: 2 × 6·8 = 96
    #                                                                    -> layer 1: 736
    # pooler: 1 token × 8·8 = 64; classifier: 8 × 3 = 24
    # total 2688 + 736 + 64 + 24 = 3512 MACs = 7024 FLOPs
    assert flops.flops_per_example(config, seq_length=6, num_labels=3) == 7024


def test_flops_of_a_dense_model_and_a_retention_that_keeps_everything_agree():
    dense = tiny_config()
    keeps_all = tiny_config(**{RETENTION_CONFIG_KEY: [SEQ, SEQ]})
    # per layer: 4 kernels 8·8 and 2 of 8·12 per token, scores + context 2 × 2 × 16 × 16 × 4
    per_layer = SEQ * (4 * 64 + 2 * 96) + 2 * 2 * SEQ * SEQ * 4
    expected = 2 * (2 * per_layer + 64 + 8 * 2)
    assert flops.flops_per_example(dense, SEQ, 2) == expected
    assert flops.flops_per_example(keeps_all, SEQ, 2) == expected


def test_flops_of_bert_base_at_128_tokens():
    config = tiny_config(vocab_size=30522, hidden_size=768, num_hidden_layers=12,
                         num_attention_heads=12, intermediate_size=3072,
                         max_position_embeddings=512)
    # per layer: 128 × (4 × 768² + 2 × 768 × 3072) + 2 × 12 × 128² × 64 = 931,135,488 MACs
    # 12 layers + pooler 768² + classifier 768 × 2 = 11,174,217,216 MACs
    assert flops.flops_per_example(config, 128, 2) == 22_348_434_432


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A dense tiny model, its PoWER variant (same weights), its export and a tiny SST-2 task."""
    root = tmp_path_factory.mktemp("benchmark")
    _, values = write_tiny_model(root / "dense")
    write_tiny_model(root / "power", tiny_config(**{RETENTION_CONFIG_KEY: [6, 3]}), values)
    write_sst2_task(root / "SST-2", rows=20)
    assert export.main(["--model_dir", str(root / "dense"), "--output_dir", str(root / "export"),
                        "--max_seq_length", str(SEQ)]) == 0
    return root


def read_rows(folder):
    with open(folder / "benchmark.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def run_benchmark(*arguments):
    return benchmark.main([str(argument) for argument in arguments]
                          + ["--max_seq_length", str(SEQ), "--iterations", "3",
                             "--threads", "1"])


def test_two_model_folders_with_references_exported_on_a_tiny_task(world, tmp_path, capsys):
    out = tmp_path / "out"
    status = run_benchmark(world / "dense", world / "power", "--task_name", "SST-2",
                           "--data_dir", world / "SST-2", "--batch_size", 4,
                           "--output_dir", out)
    assert status == 0
    printed = capsys.readouterr().out
    assert "| model | engine |" in printed and "threads: 1; 3 timed runs" in printed
    assert "not matmuls" in printed and "exported by deploy.export" in printed
    for name in benchmark.OUTPUT_FILES:
        assert (out / name).stat().st_size > 0, name
    rows = read_rows(out)
    assert list(rows[0]) == list(benchmark.COLUMNS)
    reference = out / benchmark.REFERENCE_DIR
    assert [(row["model"], row["engine"]) for row in rows] == [
        (str(world / "dense"), benchmark.ENGINE_TF),
        (str(reference / benchmark.FP32_ONNX), benchmark.ENGINE_FP32),
        (str(reference / benchmark.INT8_ONNX), benchmark.ENGINE_INT8),
        (str(world / "power"), benchmark.ENGINE_TF)]
    assert float(rows[0]["speedup"]) == 1.0 and float(rows[0]["flop_reduction"]) == 1.0
    assert float(rows[3]["flop_reduction"]) > 1.0  # PoWER keeps 6 then 3 of 16 tokens
    assert len({row["params"] for row in rows}) == 1  # same weights, fewer tokens, int8 too
    assert len({row["flops"] for row in rows[:3]}) == 1  # the exports are the dense model
    for row in rows:
        assert 0.0 <= float(row["dev_metric"]) <= 1.0
        assert 0 < float(row["latency_p50_ms"]) <= float(row["latency_p90_ms"])
        assert float(row["throughput"]) > 0 and float(row["disk_mb"]) > 0


def test_synthetic_sentences_with_the_reference_flag(world, tmp_path, capsys):
    out = tmp_path / "out"
    status = run_benchmark(world / "dense", "--reference_onnx", world / "export",
                           "--batch_size", 2, "--output_dir", out)
    assert status == 0
    assert "synthetic sentences" in capsys.readouterr().out
    rows = read_rows(out)
    assert [row["engine"] for row in rows] == [benchmark.ENGINE_TF, benchmark.ENGINE_FP32,
                                               benchmark.ENGINE_INT8]
    assert all(row["dev_metric"] == "" for row in rows)
    assert not (out / "benchmark.png").exists()  # no metric, no plot
    assert not (out / benchmark.REFERENCE_DIR).exists()


def test_an_onnx_baseline_and_its_model_folder_need_no_reference(world, tmp_path, capsys):
    out = tmp_path / "out"
    status = run_benchmark(world / "export" / benchmark.FP32_ONNX, world / "dense",
                           "--output_dir", out)
    assert status == 0
    assert "reference" not in capsys.readouterr().out.lower()
    rows = read_rows(out)
    assert [row["engine"] for row in rows] == [benchmark.ENGINE_FP32, benchmark.ENGINE_TF]
    assert float(rows[0]["speedup"]) == 1.0 and rows[0]["flops"] == rows[1]["flops"]


def test_without_an_output_folder_the_missing_reference_is_a_note(world, capsys):
    assert run_benchmark(world / "power") == 0
    assert f"No ONNX reference rows for {world / 'power'}" in capsys.readouterr().out


@pytest.mark.parametrize("arguments, flag", [
    (["{world}/missing"], "MODEL"),
    (["{world}/dense", "--batch_size", "0"], "--batch_size"),
    (["{world}/dense", "--task_name", "SST-2"], "--task_name"),
    (["{world}/dense", "--reference_onnx", "{world}"], "--reference_onnx"),
])
def test_bad_input_is_one_line_naming_the_flag(world, tmp_path, capsys, arguments, flag):
    out = tmp_path / "out"
    status = benchmark.main([argument.format(world=world) for argument in arguments]
                            + ["--output_dir", str(out)])
    lines = capsys.readouterr().err.strip().splitlines()
    assert status == 1
    assert lines[-1].startswith("deploy.benchmark: error: ") and flag in lines[-1]
    assert not out.exists()


def test_named_models_are_shown_by_name(tmp_path):
    write_tiny_model(tmp_path / "a", tiny_config())
    status = benchmark.main([f"dense={tmp_path / 'a'}", f"again={tmp_path / 'a'}",
                             "--iterations=1", "--batch_size=2", "--max_seq_length=8",
                             f"--output_dir={tmp_path / 'out'}"])
    assert status == 0
    with open(tmp_path / "out" / "benchmark.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert rows[0]["model"] == "dense" and rows[-1]["model"] == "again"


def test_disk_size_of_a_training_folder_leaves_its_optimizer_slots_out(tmp_path):
    """A training folder's checkpoint holds Adam's moments beside the weights; what ships, and
    what the table shows, is the weights alone."""
    _, weights = write_tiny_model(tmp_path / "clean", tiny_config())
    slots = {f"{name}/{slot}": value for name, value in weights.items()
             for slot in ("adam_m", "adam_v")}
    write_tiny_model(tmp_path / "training", tiny_config(), values={**weights, **slots})
    rows = [benchmark.folder_row(str(tmp_path / name)) for name in ("clean", "training")]
    assert rows[0].disk_bytes == rows[1].disk_bytes == sum(v.nbytes for v in weights.values())
    assert rows[0].params == rows[1].params


def test_openvino_rows_time_the_int8_files_with_the_same_dev_metric(world, tmp_path, capsys):
    pytest.importorskip("openvino", reason="openvino is an optional extra (pip install -e "
                                           ".[openvino])")
    static = tmp_path / "static"
    assert export.main(["--model_dir", str(world / "dense"), "--output_dir", str(static),
                        "--max_seq_length", str(SEQ), "--int8_mode", "static", "--task_name",
                        "SST-2", "--data_dir", str(world / "SST-2")]) == 0
    out = tmp_path / "out"
    status = run_benchmark(world / "dense", static, "--reference_onnx", world / "export",
                           "--openvino", "--task_name", "SST-2", "--data_dir", world / "SST-2",
                           "--output_dir", out)
    assert status == 0
    printed = capsys.readouterr().out
    assert "OpenVINO rows" in printed and "No OpenVINO row for" in printed
    assert "QAttention" in printed
    rows = read_rows(out)
    assert [row["engine"] for row in rows] == [
        benchmark.ENGINE_TF, benchmark.ENGINE_FP32, benchmark.ENGINE_INT8,
        benchmark.ENGINE_FP32, benchmark.ENGINE_INT8, "openvino int8"]
    assert rows[5]["model"] == rows[4]["model"] and float(rows[5]["throughput"]) > 0
    assert float(rows[5]["dev_metric"]) == pytest.approx(float(rows[4]["dev_metric"]), abs=0.1)


def test_without_openvino_its_rows_are_a_note(world, monkeypatch, capsys):
    monkeypatch.setattr(benchmark.openvino_engine, "PACKAGE", "no_such_package_here")
    assert run_benchmark(world / "export" / benchmark.INT8_ONNX, "--openvino") == 0
    printed = capsys.readouterr().out
    assert "OpenVINO rows left out: no_such_package_here not installed" in printed
    assert "openvino int8" not in printed
