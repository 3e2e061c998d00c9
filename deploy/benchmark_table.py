"""The benchmark's table: one record per row, its cells, the csv and the plot."""
import csv
import io
import os

import matplotlib

from deploy import peer

matplotlib.use("Agg")  # files only: no display on a server
from matplotlib import pyplot  # noqa: E402  (after the backend is chosen)

from bert import files  # noqa: E402

BYTES_PER_MB = 1e6
ONNX_SUFFIX = ".onnx"
COLUMNS = ("model", "engine", "params", "flops", "flops_timed", "disk_mb", "dev_metric",
           "latency_p50_ms", "latency_p90_ms", "throughput", "speedup", "flop_reduction",
           "speedup_over_flop_reduction", "speedup_vs_peer_int8")
HEADINGS = ("model", "engine", "params", "FLOPs/example", "FLOPs/example timed", "disk MB",
            "dev {metric}",
            "p50 ms (batch 1)", "p90 ms (batch 1)", "examples/s (batch {batch})", "speed-up",
            "FLOP reduction", "speed-up ÷ FLOP reduction", "× peer INT8")


def records(rows):
    """One dict per row, keyed by COLUMNS; None where a value is unknown."""
    base = rows[0]
    peer_int8 = next((row for row in rows if row.name == peer.INT8_ROW), None)
    table = []
    for row in rows:
        speedup = row.throughput / base.throughput
        reduction = (base.flops_timed / row.flops_timed
                     if base.flops_timed and row.flops_timed else None)
        table.append(dict(zip(COLUMNS, (
            row.shown, row.engine, row.params, row.flops, row.flops_timed,
            row.disk_bytes / BYTES_PER_MB,
            row.dev_metric, *row.latency_ms, row.throughput, speedup, reduction,
            speedup / reduction if reduction else None,
            row.throughput / peer_int8.throughput if peer_int8 else None))))
    return table


def human(value):
    """7.02 k, 22.35 G: FLOP counts span tiny test models to BERT-large."""
    for factor, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= factor:
            return f"{value / factor:.2f} {prefix}"
    return f"{value:g}"


CELL_FORMATS = dict(params="{:,}".format, flops=human, flops_timed=human, disk_mb="{:.2f}".format,
                    dev_metric="{:.4f}".format, latency_p50_ms="{:.2f}".format,
                    latency_p90_ms="{:.2f}".format, throughput="{:.1f}".format,
                    speedup="{:.2f}".format, flop_reduction="{:.2f}".format,
                    speedup_over_flop_reduction="{:.2f}".format,
                    speedup_vs_peer_int8="{:.2f}".format)
MISSING_CELL = "–"


def csv_text(table):
    out = io.StringIO()
    writer = csv.DictWriter(out, COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows({key: "" if value is None else value for key, value in record.items()}
                     for record in table)
    return out.getvalue()


def write_plot(path, table, metric_name):
    """Dev metric against speed-up, one labelled point per row; written via a temp file."""
    figure, axes = pyplot.subplots(figsize=(7, 5))
    for record in table:
        axes.scatter(record["speedup"], record["dev_metric"])
        axes.annotate(f"{short_label(record['model'])} ({record['engine']})",
                      (record["speedup"], record["dev_metric"]),
                      textcoords="offset points", xytext=(4, 4), fontsize=8)
    axes.set_xlabel("speed-up vs the first row (throughput ratio)")
    axes.set_ylabel(f"dev {metric_name}")
    axes.grid(True, alpha=0.3)
    try:
        with files.atomic_path(path) as temp:
            figure.savefig(temp, format="png", dpi=120, bbox_inches="tight")
    finally:
        pyplot.close(figure)


# Program ----------------------------------------------------------------------------------------


def short_label(path):
    """'compact' for a folder, 'export/model.onnx' for a file: enough to tell points apart
    (a NAME=PATH argument's NAME is kept as it is)."""
    path = os.path.normpath(path)
    if path.endswith(ONNX_SUFFIX):
        return os.path.join(os.path.basename(os.path.dirname(path)), os.path.basename(path))
    return os.path.basename(path)
