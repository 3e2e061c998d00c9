#!/bin/bash
# PoWER-BERT on the dense fine-tuned models (comparison rows for TR-BERT and distill).
cd "$(dirname "$0")/../../.."  # the repository root
# MRPC: the whole train set (from the previous stop's runs).
nice -n 10 .venv/bin/python -m power_bert.main --TASK mrpc --CHECKPOINT_PATH runs/compress_MRPC/1_fine_tune/model \
  --DATA_DIR ../shared/glue/MRPC --OUTPUT_DIR runs/power_MRPC --EPOCH 1 --MAX_SEQ_LENGTH 128 \
  --BENCHMARK_ITERATIONS 0 > runs/power_MRPC.log 2>&1
for task in STS-B SST-2; do
  nice -n 10 .venv/bin/python -m power_bert.main --TASK $task --CHECKPOINT_PATH runs/compress_$task/1_fine_tune/model \
    --DATA_DIR ../shared/glue/$task --OUTPUT_DIR runs/power_$task --EPOCH 1 --MAX_SEQ_LENGTH 128 \
    --MAX_TRAIN_EXAMPLES 2000 --BENCHMARK_ITERATIONS 0 > runs/power_$task.log 2>&1
done
