"""Choosing in a budget search: which candidates stay within the loss bound, which go on to the
next stage, and which one ships. Pure functions over measured rows, so a resumed search that
reads the same recorded measurements makes the same choice."""
import csv
import dataclasses
from typing import Any, List, NamedTuple, Optional, Sequence

from bert.errors import InputError

METRIC_POINTS = 100.0  # metrics are shares (accuracy 0.85); the bound is in points (1.0 = 0.01)
DENSE = "dense"  # the fine-tuned model's label, a row of every measurement


@dataclasses.dataclass(frozen=True)
class Measured:
    """One benchmark row of a candidate: its dev metric and its speed at the budget's batch."""
    label: str
    engine: str
    dev_metric: float
    latency_ms: float  # p50 at batch 1
    throughput: float  # examples/s at the budget's batch size
    flop_reduction: Optional[float] = None

    def speed(self, batch_size):
        """Higher is faster: throughput for batches, 1/latency for single examples."""
        return self.throughput if batch_size > 1 else 1000.0 / self.latency_ms


class Tried(NamedTuple):
    """A candidate measured after its stage, with the dense row timed in the same process:
    its speed-up is against that row, not a dense timing from another moment."""
    candidate: Any
    row: Measured
    stage: str
    stage_dense: Measured


def read_benchmark_csv(path) -> List[Measured]:
    """deploy.benchmark's benchmark.csv as Measured rows (rows without a metric are refused:
    a budget search measures every row on the dev set)."""
    rows = []
    with open(path, encoding="utf-8", newline="") as handle:
        for record in csv.DictReader(handle):
            if not record["dev_metric"]:
                raise InputError(f"{path}: row {record['model']} has no dev metric")
            reduction = record.get("flop_reduction")
            rows.append(Measured(record["model"], record["engine"], float(record["dev_metric"]),
                                 float(record["latency_p50_ms"]), float(record["throughput"]),
                                 float(reduction) if reduction else None))
    return rows


def loss_points(row: Measured, reference: float):
    """Points of dev metric lost against the fine-tuned model (negative: a gain)."""
    return (reference - row.dev_metric) * METRIC_POINTS


def within_bound(rows: Sequence[Measured], reference: float, max_loss: float):
    return [row for row in rows if loss_points(row, reference) <= max_loss + 1e-9]


def fastest_first(rows: Sequence[Measured], batch_size):
    """By speed, ties by label: the same order on every run over the same measurements."""
    return sorted(rows, key=lambda row: (-row.speed(batch_size), row.label))


def beam(rows: Sequence[Measured], reference, max_loss, batch_size, width):
    """The ``width`` fastest candidates within the bound: the ones the next stage builds on."""
    return fastest_first(within_bound(rows, reference, max_loss), batch_size)[:width]


@dataclasses.dataclass(frozen=True)
class Choice:
    """What ships, and whether it meets the budget."""
    row: Measured
    speedup: float  # against the dense TF row at the budget's batch size
    meets_loss: bool
    meets_speed: bool

    def verdict(self, target_speedup, max_loss):
        if self.meets_loss and self.meets_speed:
            return (f"budget met: {self.row.label} runs {self.speedup:.2f}x the dense model "
                    f"(target {target_speedup:g}x) within {max_loss:g} points")
        if self.meets_loss:
            return (f"budget NOT met: the fastest model within {max_loss:g} points, "
                    f"{self.row.label}, runs {self.speedup:.2f}x (target {target_speedup:g}x); "
                    "shipping it as the best trade-off found")
        return (f"budget NOT met: no candidate stays within {max_loss:g} points; shipping the "
                f"most accurate, {self.row.label} ({self.speedup:.2f}x)")


def choose(rows: Sequence[Measured], dense: Measured, reference, max_loss, batch_size,
           target_speedup):
    """The fastest row within the loss bound; if none is, the most accurate one."""
    candidates = [row for row in rows if row is not dense]
    within = fastest_first(within_bound(candidates, reference, max_loss), batch_size)
    if within:
        row, meets_loss = within[0], True
    else:
        row = sorted(candidates, key=lambda item: (-item.dev_metric, item.label))[0]
        meets_loss = False
    speedup = row.speed(batch_size) / dense.speed(batch_size)
    return Choice(row, speedup, meets_loss, speedup >= target_speedup)
