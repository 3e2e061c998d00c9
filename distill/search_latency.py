"""Measured latency of distill.search's candidates, and the cost model that picks which to
measure (see distill.search's docstring).

Latency is measured, not modelled: a candidate is built with random weights and timed
interleaved with the teacher in this process, so a load change on the machine moves both sides
of a ratio alike; the results are cached in a json file when the search ends well or is stopped.
"""
import dataclasses
import itertools
import json
import logging
import math
import os
import statistics

import numpy as np
import tensorflow as tf

from bert import checkpoint, files, modeling, timing
from bert.errors import UsageError
from distill.extract import Sizes, student_config
from distill.search_pareto import evenly_spaced, successive_fronts
from distill.search_space import describe

tf1 = tf.compat.v1
log = logging.getLogger("distill")

MS_PER_SECOND = 1000.0
GIGA = 1e9


def cache_key(sizes, head_size, seq_length, num_labels, teacher):
    return (f"layers={sizes.num_hidden_layers} heads={sizes.num_attention_heads} "
            f"head_size={head_size} hidden={sizes.hidden_size} "
            f"intermediate={sizes.intermediate_size} seq={seq_length} labels={num_labels} "
            f"teacher=L{teacher.num_hidden_layers}H{teacher.hidden_size}")


class LatencyMeter:
    """Times candidates (random weights) interleaved with the teacher. Results stay in memory
    until ``save`` writes them to the cache file: when the search has its outputs, or is
    stopped (it then resumes where it stopped); a search that fails writes nothing."""

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
        self.unsaved = False

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
        self.unsaved = True
        return entry

    def save(self):
        """Write the cache file if anything was timed since it was read."""
        if not self.unsaved:
            return
        os.makedirs(os.path.dirname(os.path.abspath(self.cache_path)), exist_ok=True)
        files.write_text_atomic(self.cache_path, json.dumps(self.cache, indent=1) + "\n")
        self.unsaved = False

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


class Measurements:
    """The rows measured so far and the teacher reference: the median of every teacher timing
    beside them, in ms per batch size, so each new measurement refines every row's latency."""

    def __init__(self, meter, batch_sizes):
        self.meter = meter
        self.batch_sizes = batch_sizes
        self.rows = []
        self.teacher_ms = {}

    def add(self, row):
        source = "cached" if self.meter.cached(row.sizes) else "timed"
        row.entry = self.meter.measure(row.sizes)
        self.rows.append(row)
        self.teacher_ms = {size: self.meter.teacher_reference([r.entry for r in self.rows], size)
                           * MS_PER_SECOND for size in self.batch_sizes}
        row.normalise(self.teacher_ms)
        log.info("%s %d: %s: %s", source, len(self.rows), describe(row.sizes), "  ".join(
                     f"b{size} {row.latency_ms[size]:.2f} ms x{row.speedup[size]:.2f}"
                     for size in self.batch_sizes))

    def normalise_all(self):
        """One reference for all, once every teacher timing is in."""
        for row in self.rows:
            row.normalise(self.teacher_ms)


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
