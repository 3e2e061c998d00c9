#!/bin/bash
# TR-BERT rows of tr_bert_sst2.sh beside the dense teacher (TF, ONNX Runtime fp32/INT8) and
# PoWER-BERT: SST-2 dev, 64 tokens, batch 1 and 32. Run it alone: nothing else may share the cores.
set -euo pipefail
cd "$(dirname "$0")/../../.."  # the repository root
T=SST-2; O=runs/tr_bert8k_$T
.venv/bin/python -m deploy.benchmark dense=runs/compress_$T/1_fine_tune/model power=runs/power8k_$T/3_retrain/model \
  tr_a0.1=$O/alpha_0.1/train_rl/model tr_a0.03=$O/alpha_0.03/train_rl/model tr_joint_a0.1=$O/alpha_0.1/train_both/model \
  --task_name $T --data_dir ../shared/glue/$T --max_seq_length 64 --batch_size 32 --iterations 5 --threads 2 \
  --output_dir runs/bench_tr8k_$T
