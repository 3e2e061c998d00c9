"""Search a smaller sub-architecture of the teacher against latency measured on this machine.

    python -m distill.search --model_dir runs/compress_MRPC/1_fine_tune/model \\
        --task_name MRPC --data_dir ../shared/glue/MRPC --speedup 3,4,6 \\
        --output_dir search_MRPC

Candidates are uniform, like Bort's: ⟨layers, heads, hidden, intermediate⟩ with layers in
1..L, heads in 1..A (the teacher's head size, so attention width = heads × head size), hidden
a multiple of the head size up to H, intermediate a multiple of --intermediate_step up to I.

Error proxy (no training per candidate): the share of the teacher's importance a candidate
keeps when distill.extract takes its most important units (``distill.importance``):

    kept = hidden_share(H')² × Σ_{l in top L' layers} [att_l·head_share_l(A')
                                                       + ffn_l·ffn_share_l(I')]
                             ÷ Σ_l (att_l + ffn_l)
    proxy error = 1 − kept

where head_share_l(A') is the share of layer l's head importance in its A' best heads (and
likewise for FFN neurons and hidden dimensions), att_l and ffn_l weigh the layer's blocks by
their own gradient importance, and the kept layers are the ones extraction keeps. The hidden
share is squared because a hidden dimension is both read by every kernel (what its score
measures) and written by every sub-block and the embeddings (what it does not), and the
writes are counted as mattering as much as the reads: on MRPC this ranked ten extracted
candidates by their dev loss with a Spearman correlation of 0.72, against 0.43 unsquared.

Latency is measured, not modelled: each measured candidate is built with random weights and
timed at every --batch_sizes at --seq_length with ``bert.timing``, interleaved round-robin with
the teacher in this process; its latency is reported as teacher reference × (candidate ÷
teacher in the same interleaving), the teacher reference being the median of all the teacher's
timings, so a load change on the machine moves both sides of a ratio alike. Which candidates
are measured (at most --max_measured, cached in --latency_cache so a re-run skips them):

1. a calibration set: at 1, ⌈L/2⌉ and L layers, the widest and a quarter-width candidate;
2. a cost model fitted to it, latency ≈ c0 + c1·layers + c2·FLOPs with non-negative terms
   (fixed overhead, per-layer overhead, arithmetic), predicts every candidate's latency at
   --budget_batch_size; only candidates predicted within PREDICTION_SLACK of the budgets'
   range are kept: one far above the largest budget cannot be chosen, and one far below the
   smallest cannot be either, since on a front less latency means more error;
3. the rest are sorted into Pareto fronts of (predicted latency, proxy error) — the first front,
   then the front of what is left, and so on — and measured front by front (a front larger
   than what is left of --max_measured is sampled evenly along predicted latency);
4. every other candidate of the grid found in the cache (timed by an earlier search) joins
   for free.

The front is then taken over the measured candidates: a candidate is kept only if no other is
both at most as slow and at most as wrong, and strictly better in one. For each budget the
chosen architecture is the measured one with the lowest proxy error within it.

Writes OUTPUT_DIR/front.md, front.csv (every measured candidate), front.png, importance.npz
(when computed here) and chosen_config.json — or chosen_config_<budget>.json per budget when
several are given — which ``distill.extract --config`` reads.
"""
import csv
import dataclasses
import io
import itertools
import json
import logging
import math
import os
import statistics
import sys
import tempfile

import matplotlib
import numpy as np
import tensorflow as tf

from bert import checkpoint, cli, flops, modeling, timing
from bert.errors import UsageError
from distill import importance as unit_importance
from distill.extract import CHOSEN_CONFIG_KEY, CHOSEN_IMPORTANCE_KEY, Sizes, student_config

matplotlib.use("Agg")  # files only: no display on servers
from matplotlib import pyplot  # noqa: E402  (after the backend is chosen)

tf1 = tf.compat.v1
log = logging.getLogger("distill")

PROGRAM = "distill.search"
DEFAULT_BATCH_SIZES = "1,32"
DEFAULT_ITERATIONS = 10
DEFAULT_MAX_MEASURED = 60
DEFAULT_INTERMEDIATE_STEP = 128
LATENCY_CACHE_FILE = "latency_cache.json"
CHOSEN_FILE = "chosen_config.json"
OUTPUT_FILES = ("front.md", "front.csv", "front.png")
HIDDEN_SHARE_EXPONENT = 2  # a hidden dimension is read and written: its share counts twice
PREDICTION_SLACK = 0.25  # how far (relative) the cost model's prediction may be off
CALIBRATION_WIDTH_DIVISOR = 4  # the narrow calibration candidates: a quarter of every width
MS_PER_SECOND = 1000.0
GIGA = 1e9
CSV_COLUMNS = ("layers", "heads", "hidden", "intermediate", "params", "flops", "proxy_error",
               "on_front", "chosen_for")


# Candidates and their proxy error --------------------------------------------------------------
def size_grid(step, limit):
    """Multiples of ``step`` up to ``limit``, and ``limit`` itself."""
    return sorted(set(range(step, limit + 1, step)) | {limit})


def enumerate_candidates(teacher, intermediate_step):
    layers = range(teacher.num_hidden_layers)
    max_heads = min(teacher.heads(i) for i in layers)
    max_intermediate = min(teacher.intermediate(i) for i in layers)
    return [Sizes(depth, heads, hidden, intermediate)
            for depth in range(1, teacher.num_hidden_layers + 1)
            for heads in range(1, max_heads + 1)
            for hidden in size_grid(teacher.head_size(0), teacher.hidden_size)
            for intermediate in size_grid(intermediate_step, max_intermediate)]


def _cumulative_share(scores):
    """share[k] = part of the total score in the k best units (share[0] = 0); a unit set
    with no score at all loses nothing when cut."""
    ordered = np.sort(np.asarray(scores, np.float64))[::-1]
    total = ordered.sum()
    if total <= 0:
        return np.ones(len(ordered) + 1)
    return np.concatenate([[0.0], np.cumsum(ordered) / total])


class ImportanceMass:
    """The proxy error of the module docstring, with the shares precomputed."""

    def __init__(self, importance):
        self.importance = importance
        self.heads = [_cumulative_share(h) for h in importance.heads]
        self.neurons = [_cumulative_share(n) for n in importance.neurons]
        self.hidden = _cumulative_share(importance.hidden)
        self.total = float(np.sum(importance.attention_blocks) + np.sum(importance.ffn_blocks))

    def error(self, sizes):
        kept = 0.0
        for layer in self.importance.top_layers(sizes.num_hidden_layers):
            kept += (self.importance.attention_blocks[layer]
                     * self.heads[layer][sizes.num_attention_heads]
                     + self.importance.ffn_blocks[layer]
                     * self.neurons[layer][sizes.intermediate_size])
        share = kept / self.total if self.total > 0 else 1.0
        hidden = self.hidden[sizes.hidden_size] ** HIDDEN_SHARE_EXPONENT
        return max(0.0, 1.0 - hidden * share)  # no rounding below 0


# Pareto fronts (pure) -----------------------------------------------------------------------------
def pareto_front(points):
    """Indices of the points (latency, error) no other point dominates — at most as slow and
    at most as wrong, strictly better in one — in order of latency."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], points[i][1]))
    front = []
    best_error = math.inf  # lowest error among strictly faster points
    position = 0
    while position < len(order):
        latency = points[order[position]][0]
        group = []
        while position < len(order) and points[order[position]][0] == latency:
            group.append(order[position])
            position += 1
        group_best = points[group[0]][1]
        if group_best < best_error:
            front += [i for i in group if points[i][1] == group_best]
            best_error = group_best
    return front


def successive_fronts(points):
    """The points in Pareto layers: the front, then the front of what is left, and so on."""
    left = list(range(len(points)))
    layers = []
    while left:
        front = [left[i] for i in pareto_front([points[i] for i in left])]
        layers.append(front)
        taken = set(front)
        left = [i for i in left if i not in taken]
    return layers


def evenly_spaced(items, values, count):
    """``count`` of the items whose values lie nearest to ``count`` equally spaced points from
    the lowest value to the highest (in the items' order): a dense stretch of a front gets no
    more measurements than a sparse one."""
    if count >= len(items):
        return list(items)
    values = np.asarray(values, np.float64)
    picked = set()
    for target in np.linspace(values.min(), values.max(), count):
        nearest = (j for j in np.argsort(np.abs(values - target), kind="stable")
                   if j not in picked)
        picked.add(int(next(nearest)))
    return [items[j] for j in sorted(picked)]


# Latency ------------------------------------------------------------------------------------------
def cache_key(sizes, head_size, seq_length, num_labels, teacher):
    return (f"layers={sizes.num_hidden_layers} heads={sizes.num_attention_heads} "
            f"head_size={head_size} hidden={sizes.hidden_size} "
            f"intermediate={sizes.intermediate_size} seq={seq_length} labels={num_labels} "
            f"teacher=L{teacher.num_hidden_layers}H{teacher.hidden_size}")


class LatencyMeter:
    """Times candidates (random weights) interleaved with the teacher; every result is cached
    in a json file as soon as it is measured, so a killed search resumes where it stopped."""

    def __init__(self, teacher_model, batch_sizes, seq_length, iterations, cache_path, scratch):
        self.teacher = teacher_model
        self.batch_sizes = batch_sizes
        self.seq_length = seq_length
        self.iterations = iterations
        self.cache_path = cache_path
        self.cache = {}
        if os.path.isfile(cache_path):
            try:
                with open(cache_path, encoding="utf-8") as handle:
                    self.cache = json.load(handle)
            except ValueError as error:
                raise UsageError(f"--latency_cache={cache_path}: not a latency cache "
                                 f"({error}); remove it to measure again") from None
        self.random_weights = os.path.join(scratch, "no_weights.ckpt")
        checkpoint.save_variables({}, self.random_weights)  # every variable keeps its init
        self.teacher_sessions = {}

    def key(self, sizes):
        return cache_key(sizes, self.teacher.bert_config.head_size(0), self.seq_length,
                         self.teacher.num_labels, self.teacher.bert_config)

    def cached(self, sizes):
        entry = self.cache.get(self.key(sizes))
        if entry and all(str(b) in entry["seconds"] for b in self.batch_sizes):
            return entry
        return None

    def measure(self, sizes):
        entry = self.cached(sizes)
        if entry:
            return entry
        config = student_config(self.teacher.bert_config, sizes)
        model = timing.TimedModel(config, self.random_weights, num_labels=self.teacher.num_labels)
        entry = {"seconds": {}, "teacher_seconds": {}}
        for batch_size in self.batch_sizes:
            if batch_size not in self.teacher_sessions:
                self.teacher_sessions[batch_size] = timing.InferenceSession(
                    self.teacher, batch_size, self.seq_length)
            session = timing.InferenceSession(model, batch_size, self.seq_length)
            try:
                entry["params"] = modeling.count_parameters(
                    v.shape.as_list() for v in session.graph.get_collection(
                        tf1.GraphKeys.GLOBAL_VARIABLES))
                teacher_seconds, seconds = timing.interleaved_medians(
                    [self.teacher_sessions[batch_size], session], self.iterations)
            finally:
                session.close()
            entry["seconds"][str(batch_size)] = seconds
            entry["teacher_seconds"][str(batch_size)] = teacher_seconds
        self.cache[self.key(sizes)] = entry
        modeling.write_text_atomic(self.cache_path, json.dumps(self.cache, indent=1) + "\n")
        return entry

    def teacher_reference(self, entries, batch_size):
        """Median of every teacher timing beside these entries, in seconds."""
        return statistics.median(entry["teacher_seconds"][str(batch_size)]
                                 for entry in entries)

    def close(self):
        for session in self.teacher_sessions.values():
            session.close()


@dataclasses.dataclass
class Row:
    """One candidate of the search: its sizes, cost and, once measured, its latencies."""
    sizes: Sizes
    flops: int
    proxy_error: float
    entry: dict = None
    latency_ms: dict = None  # batch size -> teacher-normalised ms per batch
    speedup: dict = None  # batch size -> teacher ÷ candidate in the same interleaving

    def normalise(self, teacher_ms):
        self.speedup = {b: self.entry["teacher_seconds"][str(b)] / self.entry["seconds"][str(b)]
                        for b in teacher_ms}
        self.latency_ms = {b: teacher_ms[b] / self.speedup[b] for b in teacher_ms}


def calibration_set(teacher, candidates):
    """Widest and quarter-width candidates at 1, ⌈L/2⌉ and L layers (those in the grid)."""
    grid = set(candidates)
    widest = max(candidates, key=lambda s: (s.num_attention_heads, s.hidden_size,
                                            s.intermediate_size))

    def narrowed(value, choices):
        target = value / CALIBRATION_WIDTH_DIVISOR
        return min(choices, key=lambda choice: (abs(choice - target), choice))

    heads = sorted({s.num_attention_heads for s in candidates})
    hiddens = sorted({s.hidden_size for s in candidates})
    intermediates = sorted({s.intermediate_size for s in candidates})
    narrow = (narrowed(widest.num_attention_heads, heads),
              narrowed(widest.hidden_size, hiddens),
              narrowed(widest.intermediate_size, intermediates))
    depths = sorted({1, math.ceil(teacher.num_hidden_layers / 2), teacher.num_hidden_layers})
    chosen = []
    for depth in depths:
        for width in ((widest.num_attention_heads, widest.hidden_size,
                       widest.intermediate_size), narrow):
            sizes = Sizes(depth, *width)
            if sizes in grid and sizes not in chosen:
                chosen.append(sizes)
    return chosen


def cost_terms(row):
    """1, layers, GFLOPs: the terms of the cost model (GFLOPs keep the terms of one scale)."""
    return np.array([1.0, row.sizes.num_hidden_layers, row.flops / GIGA])


def fit_cost_model(rows, batch_size):
    """Least-squares c0 + c1·layers + c2·FLOPs ≥ 0 termwise to measured latencies (ms), as
    neither a layer nor a FLOP can save time (noisy timings would otherwise fit a negative
    per-layer cost); returns predict(row).

    Non-negative least squares over three terms: the best unconstrained fit of each subset of
    terms whose coefficients all come out non-negative, the others held at zero."""
    features = np.array([cost_terms(row) for row in rows])
    target = np.array([row.latency_ms[batch_size] for row in rows])
    best_residual, coefficients = math.inf, np.zeros(features.shape[1])
    for terms in itertools.product((False, True), repeat=features.shape[1]):
        active = np.array(terms)
        if not active.any():
            continue
        fitted, *_ = np.linalg.lstsq(features[:, active], target, rcond=None)
        if np.any(fitted < 0):
            continue
        candidate = np.zeros(features.shape[1])
        candidate[active] = fitted
        residual = float(np.sum((features @ candidate - target) ** 2))
        if residual < best_residual:
            best_residual, coefficients = residual, candidate
    log.info("cost model at batch %d: %.3f ms + %.3f ms/layer + %.3f ms/GFLOP", batch_size,
             *coefficients)

    def predict(row):
        return float(coefficients @ cost_terms(row))
    return predict


def measurement_plan(rows, predicted, low_ms, high_ms, count):
    """Up to ``count`` rows not measured yet whose predicted latency is in [low_ms, high_ms],
    front by front."""
    eligible = [i for i, row in enumerate(rows)
                if row.entry is None and low_ms <= predicted[i] <= high_ms]
    points = [(predicted[i], rows[i].proxy_error) for i in eligible]
    plan = []
    for front in successive_fronts(points):
        if len(plan) >= count:
            break
        plan += evenly_spaced([eligible[i] for i in front], [points[i][0] for i in front],
                              count - len(plan))
    return plan


@dataclasses.dataclass
class Budget:
    """A latency budget in ms at the budget batch size, from --latency_budget_ms or
    --speedup (teacher reference ÷ speed-up)."""
    label: str
    flag: str
    milliseconds: float


def parse_numbers(text, flag):
    try:
        values = [float(part) for part in text.split(",")]
    except ValueError:
        values = []
    cli.require(values and all(math.isfinite(v) and v > 0 for v in values),
                f"--{flag}={text}: expected positive numbers separated by commas, e.g. 3,4,6")
    return values


def budgets_of(args, teacher_ms):
    budgets = []
    if args.latency_budget_ms:
        for value in parse_numbers(args.latency_budget_ms, "latency_budget_ms"):
            budgets.append(Budget(f"{value:g}ms", f"--latency_budget_ms={value:g}", value))
    if args.speedup:
        for value in parse_numbers(args.speedup, "speedup"):
            budgets.append(Budget(f"x{value:g}", f"--speedup={value:g}", teacher_ms / value))
    return budgets


# Outputs ------------------------------------------------------------------------------------------
def chosen_rows(rows, budgets, batch_size):
    """{budget label: the lowest-error measured row within it, or None}."""
    chosen = {}
    for budget in budgets:
        within = [row for row in rows if row.latency_ms[batch_size] <= budget.milliseconds]
        chosen[budget.label] = min(within, key=lambda r: (r.proxy_error, r.latency_ms[batch_size]),
                                   default=None)
    return chosen


def describe(sizes):
    return (f"{sizes.num_hidden_layers}L {sizes.num_attention_heads}A {sizes.hidden_size}H "
            f"{sizes.intermediate_size}I")


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
                     + (f"{describe(pick.sizes)}, {pick.latency_ms[b]:.2f} ms, proxy error "
                        f"{pick.proxy_error:.4f} → {context['chosen_files'][budget.label]}"
                        if pick else "no measured candidate within it"))
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
        if pick:
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
    checkpoint.copy_file_atomic(drawn, path)


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


# Program ------------------------------------------------------------------------------------------
def build_parser():
    parser = cli.ArgumentParser(prog=PROGRAM, description=__doc__)
    parser.add_argument("--model_dir", required=True, help="the fine-tuned teacher's folder")
    parser.add_argument("--output_dir", required=True, help="where the front, the chosen "
                                                            "config(s) and the cache go")
    parser.add_argument("--latency_budget_ms",
                        help="budget(s) in ms per batch of --budget_batch_size, e.g. 3.5 or 2,3")
    parser.add_argument("--speedup", help="budget(s) as speed-ups over the teacher, e.g. 3,4,6")
    parser.add_argument("--batch_sizes", default=DEFAULT_BATCH_SIZES,
                        help="batch sizes timed (default %(default)s)")
    parser.add_argument("--budget_batch_size", type=int, default=1,
                        help="the batch size of the budget and the front (default %(default)s)")
    parser.add_argument("--seq_length", type=int, default=unit_importance.DEFAULT_SEQ_LENGTH,
                        help="tokens per timed example (default %(default)s)")
    parser.add_argument("--iterations", type=int, default=DEFAULT_ITERATIONS,
                        help="timed runs per candidate and batch size (default %(default)s)")
    parser.add_argument("--max_measured", type=int, default=DEFAULT_MAX_MEASURED,
                        help="candidates timed at most, calibration included (default "
                             "%(default)s; 5-15 s each for MiniLM on 2 busy cores)")
    parser.add_argument("--intermediate_step", type=int, default=DEFAULT_INTERMEDIATE_STEP,
                        help="intermediate sizes searched: multiples of this (default "
                             "%(default)s)")
    parser.add_argument("--latency_cache",
                        help=f"json of measured latencies, shared across searches with the same "
                             f"teacher shape and --seq_length (reused whatever --iterations; "
                             f"default OUTPUT_DIR/{LATENCY_CACHE_FILE})")
    unit_importance.add_flags(parser)
    return parser


def validate(args):
    cli.require_output_dir(args.output_dir, "output_dir")
    cli.require(args.latency_budget_ms or args.speedup,
                "--latency_budget_ms or --speedup is required")
    args.batch_size_list = cli.parse_batch_sizes(args.batch_sizes, "batch_sizes")
    cli.require(args.budget_batch_size in args.batch_size_list,
                f"--budget_batch_size={args.budget_batch_size}: must be one of --batch_sizes="
                f"{args.batch_sizes}")
    for flag in ("iterations", "max_measured", "intermediate_step", "seq_length"):
        cli.require_in_range(getattr(args, flag), flag, 1)
    for flag in ("latency_budget_ms", "speedup"):
        if getattr(args, flag):
            parse_numbers(getattr(args, flag), flag)
    unit_importance.validate_flags(args)


def search(args, scratch):
    teacher_config, values, _ = unit_importance.read_teacher(args.model_dir)
    cli.require_in_range(args.seq_length, "seq_length", 1, teacher_config.max_position_embeddings)
    num_labels = values["output_weights"].shape[0] if "output_weights" in values \
        else timing.DEFAULT_LABELS
    saved_path = os.path.join(args.output_dir, unit_importance.IMPORTANCE_FILE)
    importance, importance_path = unit_importance.importance_for(
        args, args.model_dir, teacher_config, values, checkpoint.find_vocab(args.model_dir),
        saved_path)
    if importance_path is None:
        os.makedirs(args.output_dir, exist_ok=True)
        importance.save(saved_path)
        importance_path = os.path.abspath(saved_path)
    teacher_params = modeling.count_parameters(value.shape for value in values.values())
    del values  # the search times random weights; only the scores were needed
    mass = ImportanceMass(importance)
    candidates = enumerate_candidates(teacher_config, args.intermediate_step)
    rows = [Row(sizes, flops.flops_per_example(student_config(teacher_config, sizes),
                                               args.seq_length, num_labels), mass.error(sizes))
            for sizes in candidates]
    log.info("search: %d candidates; timing at most %d of them", len(rows), args.max_measured)
    os.makedirs(args.output_dir, exist_ok=True)
    teacher = timing.load_model_dir(args.model_dir, num_labels=num_labels)
    meter = LatencyMeter(teacher, args.batch_size_list, args.seq_length, args.iterations,
                         args.latency_cache or os.path.join(args.output_dir, LATENCY_CACHE_FILE),
                         scratch)
    b = args.budget_batch_size
    by_sizes = {row.sizes: row for row in rows}
    try:
        measured = []

        def measure(row):
            source = "cached" if meter.cached(row.sizes) else "timed"
            row.entry = meter.measure(row.sizes)
            measured.append(row)
            teacher_ms = {size: meter.teacher_reference([r.entry for r in measured], size)
                          * MS_PER_SECOND for size in args.batch_size_list}
            row.normalise(teacher_ms)
            log.info("%s %d: %s: %s", source, len(measured), describe(row.sizes), "  ".join(
                         f"b{size} {row.latency_ms[size]:.2f} ms x{row.speedup[size]:.2f}"
                         for size in args.batch_size_list))
            return teacher_ms

        for sizes in calibration_set(teacher_config, candidates)[:args.max_measured]:
            teacher_ms = measure(by_sizes[sizes])
        budgets = budgets_of(args, teacher_ms[b])
        predict = fit_cost_model(measured, b)
        predicted = [predict(row) for row in rows]
        window = [budget.milliseconds for budget in budgets]
        for index in measurement_plan(rows, predicted, min(window) * (1 - PREDICTION_SLACK),
                                      max(window) * (1 + PREDICTION_SLACK),
                                      args.max_measured - len(measured)):
            teacher_ms = measure(rows[index])
        for row in rows:  # what earlier searches timed on this grid joins the front for free
            if row.entry is None and meter.cached(row.sizes):
                teacher_ms = measure(row)
    finally:
        meter.close()
    for row in measured:  # one reference for all, now that every teacher timing is in
        row.normalise(teacher_ms)
    budgets = budgets_of(args, teacher_ms[b])
    return write_outputs(args, measured, budgets, dict(
        teacher=os.path.abspath(args.model_dir), teacher_config=teacher_config,
        teacher_sizes=Sizes(teacher_config.num_hidden_layers, teacher_config.heads(0),
                            teacher_config.hidden_size, teacher_config.intermediate(0)),
        teacher_params=teacher_params,
        teacher_flops=flops.flops_per_example(teacher_config, args.seq_length, num_labels),
        teacher_ms=teacher_ms, budget_batch_size=b, batch_sizes=args.batch_size_list,
        seq_length=args.seq_length, iterations=args.iterations, candidates=len(rows),
        importance_path=importance_path, scratch=scratch))


def write_outputs(args, rows, budgets, context):
    b = context["budget_batch_size"]
    front = pareto_front([(row.latency_ms[b], row.proxy_error) for row in rows])
    chosen = chosen_rows(rows, budgets, b)
    context["chosen_files"] = {budget.label: CHOSEN_FILE if len(budgets) == 1
                               else f"chosen_config_{budget.label}.json" for budget in budgets}
    for budget in budgets:
        if chosen[budget.label]:
            modeling.write_text_atomic(
                os.path.join(args.output_dir, context["chosen_files"][budget.label]),
                chosen_json(chosen[budget.label], budget, context))
    md_path, csv_path, png_path = (os.path.join(args.output_dir, name) for name in OUTPUT_FILES)
    report = markdown(rows, front, chosen, budgets, context)
    modeling.write_text_atomic(md_path, report)
    modeling.write_text_atomic(csv_path, csv_text(rows, front, chosen, context["batch_sizes"]))
    write_plot(png_path, rows, front, chosen, budgets, context)
    print(report)
    missing = [budget for budget in budgets if chosen[budget.label] is None]
    if missing:
        fastest = min(row.latency_ms[b] for row in rows)
        raise UsageError(f"{missing[0].flag}: no measured candidate within "
                         f"{missing[0].milliseconds:.2f} ms at batch {b} (fastest measured: "
                         f"{fastest:.2f} ms); the front is in {md_path}")


def run(args):
    validate(args)
    with tempfile.TemporaryDirectory(prefix="distill_search_") as scratch:
        search(args, scratch)


def main(argv=None):
    return cli.argparse_main(PROGRAM, build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
