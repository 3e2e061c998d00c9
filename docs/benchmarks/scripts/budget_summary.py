"""One summary table of budget-mode runs, from each run's report.md and final benchmark.csv:
the shipped model against the fine-tuned one, our dense TF model and the peer's dense INT8.

    .venv/bin/python docs/benchmarks/scripts/budget_summary.py MRPC=runs/budget_MRPC \
        STS-B=runs/budget_STS-B SST-2=runs/budget_SST-2_distill
"""
import csv
import os
import re
import sys

POINTS = 100.0
SHIPPED = re.compile(r"^Shipped: `[^`]*` \((.+)\)\.$", re.MULTILINE)
FLOAT_ENGINES = ("tf", "onnxruntime fp32")
DENSE, PEER_INT8, OUR_DENSE_INT8 = "dense", "peer:int8", "dense:dynamic"


def summary_row(task, run):
    with open(os.path.join(run, "report.md"), encoding="utf-8") as handle:
        report = handle.read()
    shipped = SHIPPED.search(report).group(1)
    verdict = next(line.strip("*") for line in report.splitlines() if line.startswith("**"))
    with open(os.path.join(run, "measure", "final", "benchmark.csv"), encoding="utf-8") as handle:
        rows = {row["model"]: row for row in csv.DictReader(handle)}
    dense, chosen, peer = rows[DENSE], rows[shipped], rows[PEER_INT8]
    ratio = float(chosen["speedup_over_flop_reduction"])
    float_ratios = [float(row["speedup_over_flop_reduction"]) for row in rows.values()
                    if row["engine"] in FLOAT_ENGINES and row["model"] != DENSE
                    and not row["model"].startswith("peer")]
    delta = (float(chosen["dev_metric"]) - float(dense["dev_metric"])) * POINTS
    return (f"| {task} | {float(dense['dev_metric']):.4f} | {shipped} | "
            f"{float(chosen['dev_metric']):.4f} ({delta:+.2f}) | "
            f"{float(chosen['throughput']) / float(dense['throughput']):.2f} | "
            f"{float(dense['latency_p50_ms']) / float(chosen['latency_p50_ms']):.2f} | "
            f"{float(chosen['throughput']) / float(peer['throughput']):.2f} | "
            f"{float(rows[OUR_DENSE_INT8]['throughput']) / float(peer['throughput']):.2f} | "
            f"{ratio:.2f}; float rows {min(float_ratios):.2f}–{max(float_ratios):.2f} | "
            f"{verdict.split(':')[0]} |")


def main(arguments):
    print("| task | fine-tuned | shipped | dev (Δ points) | × dense TF, batch 32 | "
          "× dense TF, batch 1 (p50) | × peer INT8, batch 32 | our dense INT8 × peer INT8 | "
          "speed-up ÷ FLOP reduction | verdict |")
    print("|" + "---|" * 10)
    for argument in arguments:
        task, run = argument.split("=", 1)
        print(summary_row(task, run))


if __name__ == "__main__":
    main(sys.argv[1:])
