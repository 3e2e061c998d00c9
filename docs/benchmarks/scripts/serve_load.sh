#!/bin/bash
# deploy.serve under deploy.loadtest at concurrency 1, 8 and 32, beside deploy.benchmark's
# in-process batch-1 / batch-32 figures for the same INT8 file and the same sentences.
# EXPORT: a deploy.export folder (default: make demo's distilled export in a fresh clone);
# DATA: the task folder whose dev.tsv sentences are sent.
set -eu
PY=${PY:-/work/main/.venv/bin/python}
ROOT=${ROOT:-/tmp/fresh22/main}
EXPORT=${EXPORT:-$ROOT/demo_outputs/SST-2/ship/distilled_export}
DATA=${DATA:-$ROOT/datasets/sample/SST-2}
OUT=${OUT:-/work/main/runs/serve}
SEQ=${SEQ:-64}
BATCH_TIMEOUT_MS=${BATCH_TIMEOUT_MS:-0}
mkdir -p "$OUT"
cut -f1 "$DATA/dev.tsv" | tail -n +2 > "$OUT/texts.txt"
echo "== $(date +%T) in-process (deploy.benchmark, 2 threads)"
$PY -m deploy.benchmark "distilled_int8=$EXPORT/model.int8.onnx" --task_name=SST-2 \
  --data_dir="$DATA" --max_seq_length=$SEQ --batch_size=32 --iterations=30 --threads=2 \
  --output_dir="$OUT/benchmark" > "$OUT/benchmark.log" 2>&1
grep "^| distilled_int8\|^| model" "$OUT/benchmark/benchmark.md"
echo "== $(date +%T) server (onnx_int8, 2 threads, batches up to 32 within $BATCH_TIMEOUT_MS ms)"
$PY -m deploy.serve --export_dir="$EXPORT" --engine=onnx_int8 --model_name=distilled \
  --port=0 --threads=2 --max_batch_size=32 --batch_timeout_ms=$BATCH_TIMEOUT_MS > "$OUT/serve.log" 2>&1 &
SERVER=$!
trap 'kill -TERM $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 120); do
  PORT=$(grep -o "127.0.0.1:[0-9]*" "$OUT/serve.log" | head -1 | cut -d: -f2 || true)
  [ -n "$PORT" ] && break
  sleep 1
done
URL="http://127.0.0.1:$PORT/v1/models/distilled:predict"
for spec in "1 400" "8 1600" "32 3200"; do
  set -- $spec
  echo "== $(date +%T) concurrency $1, $2 requests of 1 sentence"
  $PY -m deploy.loadtest --url="$URL" --concurrency=$1 --requests=$2 \
    --texts_file="$OUT/texts.txt" --json | tee "$OUT/load_c$1.txt"
done
curl -s "http://127.0.0.1:$PORT/v1/models/distilled/stats" > "$OUT/stats.json" || true
cat "$OUT/stats.json"; echo
kill -TERM $SERVER; wait $SERVER; echo "server exit $?"
trap - EXIT
echo "== $(date +%T) done"
