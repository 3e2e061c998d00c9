"""OUTPUT_DIR/report.md and report.png of a budget search: every candidate tried, its dev
metric and measured speed, and the one that shipped."""
import os

import matplotlib

matplotlib.use("Agg")  # files only: no display on a server
from matplotlib import pyplot  # noqa: E402  (after the backend is chosen)

from bert import files  # noqa: E402
from deploy import budget_select  # noqa: E402

REPORT_FILE = "report.md"
PLOT_FILE = "report.png"
PLOT_SIZE = (7, 5)
PLOT_DPI = 120


def _line(row, dense, reference, batch_size, stage):
    loss = budget_select.loss_points(row, reference)
    speedup = row.speed(batch_size) / dense.speed(batch_size)
    return (f"| {row.label} | {stage} | {row.engine} | {row.dev_metric:.4f} | {-loss:+.2f} | "
            f"{row.latency_ms:.2f} | {row.throughput:.1f} | {speedup:.2f} |")


def markdown(settings, tried, final_rows, dense, choice, shipped):
    reference = dense.dev_metric
    batch = settings.batch_size
    header = ("| candidate | measured in | engine | dev metric | Δ points | p50 ms (batch 1) | "
              f"examples/s (batch {batch}) | speed-up (batch {batch}) |\n|" + "---|" * 8)
    lines = ["# Budget search", "",
             f"Bound: at most {settings.max_loss:g} dev points below the fine-tuned model "
             f"({reference:.4f}); target: {settings.speedup:g}x the dense model in TensorFlow "
             f"at batch {batch}; beam {settings.beam}.", "",
             f"**{choice.verdict(settings.speedup, settings.max_loss)}**", "",
             f"Shipped: `{shipped}` ({choice.row.label}).", "",
             "## Every candidate, measured after its stage", "", header]
    # Stage rows against the dense row timed in the stage's own process, not the final one.
    for _, entry in sorted(tried.items()):
        lines.append(_line(entry.row, entry.stage_dense, reference, batch, entry.stage))
    lines += ["", "## Final round: exports of the beam, beside the dense references", "",
              header]
    lines += [_line(row, dense, reference, batch, "final") for row in final_rows]
    return "\n".join(lines) + "\n"


def plot(path, final_rows, dense, choice, batch_size, metric_name="dev metric"):
    figure, axes = pyplot.subplots(figsize=PLOT_SIZE)
    for row in final_rows:
        speedup = row.speed(batch_size) / dense.speed(batch_size)
        axes.scatter([speedup], [row.dev_metric],
                     marker="*" if row is choice.row else "o", s=120 if row is choice.row else 30)
        axes.annotate(row.label, (speedup, row.dev_metric), fontsize=7)
    axes.set_xlabel(f"speed-up vs the dense model (batch {batch_size})")
    axes.set_ylabel(metric_name)
    axes.grid(True, alpha=0.3)
    try:
        with files.atomic_path(path) as temp:
            figure.savefig(temp, format="png", dpi=PLOT_DPI, bbox_inches="tight")
    finally:
        pyplot.close(figure)


def write(root, settings, tried, final_rows, dense, choice, shipped):
    files.write_text_atomic(os.path.join(root, REPORT_FILE),
                            markdown(settings, tried, final_rows, dense, choice, shipped))
    plot(os.path.join(root, PLOT_FILE), final_rows, dense, choice, settings.batch_size)
