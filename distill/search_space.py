"""The candidates of distill.search and their proxy error (see distill.search's docstring).

Candidates are uniform, like Bort's: ⟨layers, heads, hidden, intermediate⟩; the proxy error is
the share of the teacher's importance a candidate loses when distill.extract keeps its most
important units, so no candidate is trained to be ranked.
"""
import math

import numpy as np

from distill.extract import Sizes

HIDDEN_SHARE_EXPONENT = 2  # a hidden dimension is read and written: its share counts twice
CALIBRATION_WIDTH_DIVISOR = 4  # the narrow calibration candidates: a quarter of every width


def size_grid(step, limit):
    """Multiples of ``step`` up to ``limit``, and ``limit`` itself."""
    return sorted(set(range(step, limit + 1, step)) | {limit})


def enumerate_candidates(teacher, intermediate_step):
    """Every uniform architecture within the teacher: heads keep the teacher's head size, hidden
    sizes are multiples of it, intermediate sizes multiples of ``intermediate_step``."""
    layers = range(teacher.num_hidden_layers)
    max_heads = min(teacher.heads(i) for i in layers)
    max_intermediate = min(teacher.intermediate(i) for i in layers)
    return [Sizes(depth, heads, hidden, intermediate)
            for depth in range(1, teacher.num_hidden_layers + 1)
            for heads in range(1, max_heads + 1)
            for hidden in size_grid(teacher.head_size(0), teacher.hidden_size)
            for intermediate in size_grid(intermediate_step, max_intermediate)]


def describe(sizes):
    return (f"{sizes.num_hidden_layers}L {sizes.num_attention_heads}A {sizes.hidden_size}H "
            f"{sizes.intermediate_size}I")


def _cumulative_share(scores):
    """share[k] = part of the total score in the k best units (share[0] = 0); a unit set
    with no score at all loses nothing when cut."""
    ordered = np.sort(np.asarray(scores, np.float64))[::-1]
    total = ordered.sum()
    if total <= 0:
        return np.ones(len(ordered) + 1)
    return np.concatenate([[0.0], np.cumsum(ordered) / total])


class ImportanceMass:
    """The proxy error of distill.search's docstring, with the shares precomputed."""

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
