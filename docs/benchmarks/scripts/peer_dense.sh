#!/bin/bash
# Our dense exports against the peer's (transformers -> torch.onnx -> ONNX Runtime INT8), in one
# deploy.benchmark process: all-MiniLM-L6-v2 with a random two-label head (speed does not depend
# on the head's values), synthetic sentences up to 128 tokens, batch 32, 2 threads.
# Needs the peer extra: .venv/bin/pip install -e .[peer]
#   BERT_PRUNING_MODEL_DIR  HF folder (default ../shared/models/all-MiniLM-L6-v2)
#   WORK_DIR                where the converted model goes (default /tmp/minilm)
#   OUT_DIR                 the table (default runs/bench_peer_dense; docs/benchmarks/peer_dense is a copy)
set -euo pipefail
cd "$(dirname "$0")/../../.."  # the repository root
WORK_DIR=${WORK_DIR:-/tmp/minilm}
OUT_DIR=${OUT_DIR:-runs/bench_peer_dense}
WORK_DIR="$WORK_DIR" bash docs/benchmarks/scripts/export_graph_counts.sh  # makes ${WORK_DIR}_with_head
.venv/bin/python -m deploy.benchmark "${WORK_DIR}_with_head" --max_seq_length 128 \
  --batch_size 32 --iterations "${ITERATIONS:-20}" --threads 2 --output_dir "$OUT_DIR" \
  --peer_reference
