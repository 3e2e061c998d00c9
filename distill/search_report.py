"""What distill.search writes: the front (front.md, front.csv, front.png) over the measured
candidates and, per budget, the chosen architecture (chosen_config.json, or
chosen_config_<budget>.json per budget when several are given) that distill.extract reads.
All of it or nothing: a budget no measured candidate meets fails before the first write."""
import csv
import io
import json
import os

import matplotlib

from bert import files
from bert.errors import UsageError
from distill.extract import CHOSEN_CONFIG_KEY, CHOSEN_IMPORTANCE_KEY, student_config
from distill.search_latency import GIGA
from distill.search_pareto import pareto_front
from distill.search_space import describe

matplotlib.use("Agg")  # files only: no display on servers
from matplotlib import pyplot  # noqa: E402  (after the backend is chosen)

CHOSEN_FILE = "chosen_config.json"
OUTPUT_FILES = ("front.md", "front.csv", "front.png")
CSV_COLUMNS = ("layers", "heads", "hidden", "intermediate", "params", "flops", "proxy_error",
               "on_front", "chosen_for")


def chosen_rows(rows, budgets, batch_size):
    """{budget label: the lowest-error measured row within it, or None}."""
    chosen = {}
    for budget in budgets:
        within = [row for row in rows if row.latency_ms[batch_size] <= budget.milliseconds]
        chosen[budget.label] = min(within, key=lambda r: (r.proxy_error, r.latency_ms[batch_size]),
                                   default=None)
    return chosen


def csv_text(rows, front, chosen, batch_sizes):
    columns = list(CSV_COLUMNS[:6]) + [f"latency_b{b}_ms" for b in batch_sizes] + [
        f"speedup_b{b}" for b in batch_sizes] + list(CSV_COLUMNS[6:])
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    on_front = {id(rows[i]) for i in front}
    for row in rows:
        labels = [label for label, pick in chosen.items() if pick is row]
        writer.writerow([row.sizes.num_hidden_layers, row.sizes.num_attention_heads,
                         row.sizes.hidden_size, row.sizes.intermediate_size,
                         row.entry["params"], row.flops]
                        + [f"{row.latency_ms[b]:.3f}" for b in batch_sizes]
                        + [f"{row.speedup[b]:.3f}" for b in batch_sizes]
                        + [f"{row.proxy_error:.5f}", int(id(row) in on_front), " ".join(labels)])
    return out.getvalue()


def markdown(rows, front, chosen, budgets, context):
    b = context["budget_batch_size"]
    batch_sizes = context["batch_sizes"]
    lines = ["# Sub-architecture search", "",
             f"teacher {context['teacher']}: {describe(context['teacher_sizes'])}, "
             f"{context['teacher_params']:,} params, {context['teacher_flops'] / GIGA:.2f} "
             "GFLOPs/example; latency (teacher reference, median of its interleaved runs): "
             + ", ".join(f"{context['teacher_ms'][size]:.2f} ms at batch {size}"
                         for size in batch_sizes) + f"; seq {context['seq_length']}.",
             f"{len(rows)} of {context['candidates']} candidates measured (random weights, "
             f"{context['iterations']} interleaved runs each); the front is over latency at "
             f"batch {b} and the proxy error (1 − importance kept; see distill.search).", "",
             "| layers | heads | hidden | intermediate | params | GFLOPs | "
             + " | ".join(f"ms b{size} | speed-up b{size}" for size in batch_sizes)
             + " | proxy error | chosen for |",
             "|---" * (8 + 2 * len(batch_sizes)) + "|"]
    for index in front:
        row = rows[index]
        labels = " ".join(label for label, pick in chosen.items() if pick is row)
        lines.append(
            f"| {row.sizes.num_hidden_layers} | {row.sizes.num_attention_heads} | "
            f"{row.sizes.hidden_size} | {row.sizes.intermediate_size} | "
            f"{row.entry['params']:,} | {row.flops / GIGA:.3f} | "
            + " | ".join(f"{row.latency_ms[size]:.2f} | x{row.speedup[size]:.2f}"
                         for size in batch_sizes)
            + f" | {row.proxy_error:.4f} | {labels} |")
    lines.append("")
    for budget in budgets:
        pick = chosen[budget.label]
        lines.append(f"- budget {budget.flag} ({budget.milliseconds:.2f} ms at batch {b}): "
                     + f"{describe(pick.sizes)}, {pick.latency_ms[b]:.2f} ms, proxy error "
                       f"{pick.proxy_error:.4f} → {context['chosen_files'][budget.label]}")
    return "\n".join(lines) + "\n"


def write_plot(path, rows, front, chosen, budgets, context):
    b = context["budget_batch_size"]
    figure, axes = pyplot.subplots(figsize=(7, 5))
    axes.scatter([r.latency_ms[b] for r in rows], [r.proxy_error for r in rows], s=12,
                 color="0.6", label="measured")
    front_rows = [rows[i] for i in front]
    axes.step([r.latency_ms[b] for r in front_rows], [r.proxy_error for r in front_rows],
              where="post", color="tab:red", marker="o", label="Pareto front")
    axes.scatter([context["teacher_ms"][b]], [0.0], marker="*", s=120, color="black",
                 label="teacher")
    for budget in budgets:
        axes.axvline(budget.milliseconds, linestyle="--", color="tab:blue", alpha=0.6)
        axes.annotate(budget.label, (budget.milliseconds, axes.get_ylim()[1]), fontsize=8,
                      rotation=90, va="top", ha="right")
    for label, pick in chosen.items():
        axes.annotate(label, (pick.latency_ms[b], pick.proxy_error), fontsize=8,
                      textcoords="offset points", xytext=(4, 4))
    axes.set_xlabel(f"latency at batch {b}, seq {context['seq_length']} (ms)")
    axes.set_ylabel("proxy error (1 − importance kept)")
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=8)
    drawn = os.path.join(context["scratch"], os.path.basename(path))
    try:
        figure.savefig(drawn, format="png", dpi=120, bbox_inches="tight")
    finally:
        pyplot.close(figure)
    files.copy_file_atomic(drawn, path)


def chosen_json(row, budget, context):
    b = context["budget_batch_size"]
    config = student_config(context["teacher_config"], row.sizes)
    return json.dumps({
        CHOSEN_CONFIG_KEY: config.to_dict(), CHOSEN_IMPORTANCE_KEY: context["importance_path"],
        "teacher": context["teacher"], "budget": budget.flag,
        "budget_ms": budget.milliseconds, "budget_batch_size": b,
        "latency_ms": {str(size): value for size, value in row.latency_ms.items()},
        "speedup": {str(size): value for size, value in row.speedup.items()},
        "teacher_latency_ms": {str(size): v for size, v in context["teacher_ms"].items()},
        "seq_length": context["seq_length"], "proxy_error": row.proxy_error,
        "params": row.entry["params"], "flops_per_example": row.flops}, indent=2) + "\n"


def chosen_within_budgets(rows, budgets, batch_size):
    """{budget label: the row chosen for it}; a budget no measured candidate meets is a
    UsageError, raised before anything is written."""
    chosen = chosen_rows(rows, budgets, batch_size)
    missing = [budget for budget in budgets if chosen[budget.label] is None]
    if missing:
        fastest = min(row.latency_ms[batch_size] for row in rows)
        raise UsageError(f"{missing[0].flag}: no measured candidate within "
                         f"{missing[0].milliseconds:.3g} ms at batch {batch_size} (fastest "
                         f"measured: {fastest:.3g} ms); nothing was written")
    return chosen


def write_outputs(output_dir, rows, budgets, chosen, context):
    """The front, the chosen config(s) (``chosen_within_budgets``) and the report."""
    b = context["budget_batch_size"]
    front = pareto_front([(row.latency_ms[b], row.proxy_error) for row in rows])
    context["chosen_files"] = {budget.label: CHOSEN_FILE if len(budgets) == 1
                               else f"chosen_config_{budget.label}.json" for budget in budgets}
    for budget in budgets:
        files.write_text_atomic(os.path.join(output_dir, context["chosen_files"][budget.label]),
                                chosen_json(chosen[budget.label], budget, context))
    md_path, csv_path, png_path = (os.path.join(output_dir, name) for name in OUTPUT_FILES)
    report = markdown(rows, front, chosen, budgets, context)
    files.write_text_atomic(md_path, report)
    files.write_text_atomic(csv_path, csv_text(rows, front, chosen, context["batch_sizes"]))
    write_plot(png_path, rows, front, chosen, budgets, context)
    print(report)
