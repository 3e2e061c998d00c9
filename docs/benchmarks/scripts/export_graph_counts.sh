#!/bin/bash
# Node types of the ONNX export of all-MiniLM-L6-v2: tf2onnx's graph as converted (before) and
# deploy.export's model.onnx (after deploy.onnx_fusions.optimize). The converted model gets a
# random two-label head (export needs one; it changes no count).
#   BERT_PRUNING_MODEL_DIR  HF folder (default ../shared/models/all-MiniLM-L6-v2)
#   WORK_DIR                where the converted model goes (default /tmp/minilm)
set -euo pipefail
cd "$(dirname "$0")/../../.."  # the repository root
HF_DIR=${BERT_PRUNING_MODEL_DIR:-../shared/models/all-MiniLM-L6-v2}
WORK_DIR=${WORK_DIR:-/tmp/minilm}
if [ ! -f "$WORK_DIR/bert_config.json" ]; then
  .venv/bin/python -m bert.convert_hf --hf_dir "$HF_DIR" --output_dir "$WORK_DIR"
fi
TF_CPP_MIN_LOG_LEVEL=3 .venv/bin/python -W ignore - "$WORK_DIR" <<'PYTHON'
import os
import sys

import numpy as np

from bert import checkpoint, model_folder
from deploy import export, inference, onnx_fusions, onnx_graph

NUM_LABELS, SEED, HEAD_STDDEV = 2, 0, 0.02
source = sys.argv[1]
with_head = f"{source.rstrip('/')}_with_head"
if not os.path.isdir(with_head):
    folder = model_folder.load(source, "model_dir", "a converted model folder")
    values = checkpoint.read_checkpoint(folder.checkpoint_prefix)
    hidden = folder.bert_config.hidden_size
    values["output_weights"] = np.random.RandomState(SEED).normal(
        0.0, HEAD_STDDEV, [NUM_LABELS, hidden]).astype(np.float32)
    values["output_bias"] = np.zeros([NUM_LABELS], np.float32)
    checkpoint.write_model_folder(with_head, folder.bert_config, folder.vocab_file, values,
                                  step="export_graph_counts", source=source)
runner = inference.TensorFlowRunner(inference.load_model_folder(with_head))
with export.quiet_converters():
    model = export.convert_to_onnx(runner)
    before = onnx_graph.op_counts(model)
    rewrites = onnx_fusions.optimize(model, export.static_shapes(runner))
after = onnx_graph.op_counts(model)
runner.close()
print(f"{'op type':<26}{'before':>8}{'after':>8}")
for op in sorted(set(before) | set(after), key=lambda op: (-before.get(op, 0), op)):
    print(f"{op:<26}{before.get(op, 0):>8}{after.get(op, 0):>8}")
print(f"{'nodes':<26}{sum(before.values()):>8}{sum(after.values()):>8}")
print("rewrites: " + ", ".join(f"{name} {count}" for name, count in rewrites.items()))
PYTHON
