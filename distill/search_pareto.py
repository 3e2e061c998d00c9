"""Pareto fronts of (latency, error) points, pure: which candidates distill.search measures
first, and which of the measured ones it keeps."""
import math

import numpy as np


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
