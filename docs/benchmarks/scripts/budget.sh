#!/bin/bash
# Budget mode on MRPC, STS-B and SST-2 (a documented subset), one after another on idle cores:
# each run searches students (distill), token reduction on the fastest student within the
# bound (TR-BERT), exports the beam (fp32, dynamic and static INT8) and measures it beside our
# dense exports and the peer's (transformers -> torch.onnx -> ONNX Runtime INT8; needs the
# .[peer] extra). Writes runs/budget_<TASK>/report.md, the tables of ../budget.md.
#   BERT_PRUNING_MODEL_DIR  HF folder (default ../shared/models/all-MiniLM-L6-v2)
#   GLUE_DIR                GLUE tasks (default ../shared/glue)
#   WORK_DIR                where the converted model goes (default /tmp/minilm)
set -euo pipefail
cd "$(dirname "$0")/../../.."  # the repository root
HF_DIR=${BERT_PRUNING_MODEL_DIR:-../shared/models/all-MiniLM-L6-v2}
GLUE_DIR=${GLUE_DIR:-../shared/glue}
WORK_DIR=${WORK_DIR:-/tmp/minilm}
if [ ! -f "$WORK_DIR/bert_config.json" ]; then
  .venv/bin/python -m bert.convert_hf --hf_dir "$HF_DIR" --output_dir "$WORK_DIR"
fi
budget() {  # TASK OUTPUT_DIR extra flags...
  local task=$1 output=$2; shift 2
  .venv/bin/python -m deploy.compress --task_name "$task" --data_dir "$GLUE_DIR/$task" \
    --model_dir "$WORK_DIR" --output_dir "$output" --max_loss 1 --speedup 10 --beam 1 \
    --budget_methods distill,tr_bert "$@"
}
# MRPC: the whole train set, 128 tokens (no pair is cut).
budget MRPC runs/budget_MRPC --max_seq_length 128 --measure_iterations 20
# STS-B: the whole train set, 64 tokens (3.4% of the train pairs are longer and cut).
budget STS-B runs/budget_STS-B --max_seq_length 64
# SST-2: the first 2000 train sentences, 2 epochs, 64 tokens (the demo's subset).
budget SST-2 runs/budget_SST-2_distill --max_seq_length 64 --epochs 2 --max_train_examples 2000
