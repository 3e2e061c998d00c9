"""The Prune OFA table (docs/benchmarks/prune_ofa.md) from the runs of prune_ofa.sh: per task
and sparsity, the measured sparsity, the dev metric of the dense, sparse fp32, QAT (fake-quant)
and INT8 ONNX models, and the sizes (stored and gzip'd) against the dense fp32 ONNX.

    python docs/benchmarks/scripts/prune_ofa_table.py runs > docs/benchmarks/prune_ofa.md
"""
import glob
import gzip
import json
import os
import re
import sys

# The dense fine-tuned model of each task (its teacher and starting point): budget mode's.
DENSE = {"MRPC": "budget_MRPC", "STS-B": "budget_STS-B", "SST-2": "budget_SST-2_distill"}
RECIPES = {"": "3 epochs, lr 5e-5, pruned over 70% of the steps",
           "long_": "6-8 epochs, lr 1e-4, pruned over 40% of the steps"}
METRICS = {"MRPC": "eval_f1", "STS-B": "eval_spearman", "SST-2": "eval_accuracy"}
MB = 1e6


def eval_results(path):
    with open(path) as handle:
        return dict(re.findall(r"^(\w+) = (\S+)$", handle.read(), re.MULTILINE))


def gzip_size(path):
    with open(path, "rb") as handle:
        return len(gzip.compress(handle.read(), 9))


def main(runs):
    print("| task | recipe | sparsity (target → measured) | dense fp32 | sparse fp32 | Δ points "
          "| QAT (fake-quant) | INT8 ONNX (learned ranges) | INT8 − QAT | INT8 − sparse fp32 "
          "| dense fp32 ONNX MB (gzip) | dense dynamic INT8 ONNX MB (gzip) "
          "| sparse INT8 ONNX MB (gzip) | dense fp32 ÷ sparse INT8 gzip |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for export_file in sorted(glob.glob(f"{runs}/ofa/*/export/export.json")):
        folder = os.path.dirname(os.path.dirname(export_file))
        recipe, task, target = re.match(r"(long_)?(.+)_(0\.\d+)$",
                                        os.path.basename(folder)).groups()
        recipe = recipe or ""
        metric, budget = METRICS[task], DENSE[task]
        dense = float(eval_results(f"{runs}/{budget}/1_fine_tune/training/eval_results.txt")[
            metric])
        dense_onnx = f"{runs}/{budget}/export/dense/model.onnx"
        dense_mb, dense_gz = os.path.getsize(dense_onnx) / MB, gzip_size(dense_onnx) / MB
        dense_int8 = f"{runs}/{budget}/export/dense/model.int8.onnx"
        int8_mb, int8_gz = os.path.getsize(dense_int8) / MB, gzip_size(dense_int8) / MB
        sparse = eval_results(f"{folder}/sparse/eval_results.txt")
        qat = eval_results(f"{folder}/qat/eval_results.txt")
        with open(f"{folder}/export/export.json") as handle:
            exported = json.load(handle)
        int8 = exported["dev"]["onnx_int8"]
        size = exported["sizes"]["model.int8.onnx"]
        measured = float(sparse["encoder_sparsity"])
        print(f"| {task} | {RECIPES[recipe]} | {target} → {measured:.4f} | "
              f"{dense:.4f} | {float(sparse[metric]):.4f} | "
              f"{100 * (float(sparse[metric]) - dense):+.2f} | {float(qat[metric]):.4f} | "
              f"{int8:.4f} | {100 * (int8 - float(qat[metric])):+.2f} | "
              f"{100 * (int8 - float(sparse[metric])):+.2f} | "
              f"{dense_mb:.1f} ({dense_gz:.1f}) | {int8_mb:.1f} ({int8_gz:.1f}) | "
              f"{size['bytes'] / MB:.1f} "
              f"({size['gzip_bytes'] / MB:.1f}) | {dense_mb / (size['gzip_bytes'] / MB):.1f}× |")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "runs")
