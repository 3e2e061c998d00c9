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
several are given — which ``distill.extract --config`` reads. Nothing is written before every
budget has its choice: a failing search (a budget no measured candidate meets) leaves earlier
outputs byte-identical. Timings go to the latency cache when the search ends well or is stopped
(Ctrl-C, SIGTERM: the same command resumes). A --speedup must be above 1.
"""
import math
import sys
import tempfile

from bert import cli, tasks
from distill import importance as unit_importance
from distill.search_latency import Row, fit_cost_model, measurement_plan
from distill.search_pareto import evenly_spaced, pareto_front, successive_fronts
from distill.search_report import CHOSEN_FILE, OUTPUT_FILES
from distill.search_run import LATENCY_CACHE_FILE, SearchSettings, search
from distill.search_space import ImportanceMass, enumerate_candidates

# The search's parts, importable from the command's module too.
__all__ = ["CHOSEN_FILE", "LATENCY_CACHE_FILE", "OUTPUT_FILES", "ImportanceMass", "Row",
           "SearchSettings", "enumerate_candidates", "evenly_spaced", "fit_cost_model", "main",
           "measurement_plan", "pareto_front", "search", "successive_fronts"]

PROGRAM = "distill.search"
BUDGET_FLAGS = ("latency_budget_ms", "speedup")


def default(name):
    """A flag's default: the SearchSettings field's."""
    return cli.field_default(SearchSettings, name)


def build_parser():
    parser = cli.ArgumentParser(prog=PROGRAM, description=__doc__)
    parser.add_argument("--model_dir", required=True, help="the fine-tuned teacher's folder")
    parser.add_argument("--output_dir", required=True, help="where the front, the chosen "
                                                            "config(s) and the cache go")
    parser.add_argument("--latency_budget_ms",
                        help="budget(s) in ms per batch of --budget_batch_size, e.g. 3.5 or 2,3")
    parser.add_argument("--speedup", help="budget(s) as speed-ups over the teacher, e.g. 3,4,6")
    parser.add_argument("--batch_sizes", default=",".join(map(str, default("batch_sizes"))),
                        help="batch sizes timed (default %(default)s)")
    parser.add_argument("--budget_batch_size", type=int, default=default("budget_batch_size"),
                        help="the batch size of the budget and the front (default %(default)s)")
    parser.add_argument("--seq_length", type=int, default=default("seq_length"),
                        help="tokens per timed example (default %(default)s)")
    parser.add_argument("--iterations", type=int, default=default("iterations"),
                        help="timed runs per candidate and batch size (default %(default)s)")
    parser.add_argument("--max_measured", type=int, default=default("max_measured"),
                        help="candidates timed at most, calibration included (default "
                             "%(default)s; 5-15 s each for MiniLM on 2 busy cores)")
    parser.add_argument("--intermediate_step", type=int, default=default("intermediate_step"),
                        help="intermediate sizes searched: multiples of this (default "
                             "%(default)s)")
    parser.add_argument("--latency_cache",
                        help=f"json of measured latencies, shared across searches with the same "
                             f"teacher shape and --seq_length (reused whatever --iterations; "
                             f"default OUTPUT_DIR/{LATENCY_CACHE_FILE})")
    unit_importance.add_flags(parser)
    return parser


def parse_numbers(text, flag):
    try:
        values = [float(part) for part in text.split(",")]
    except ValueError:
        values = []
    cli.require(values and all(math.isfinite(v) and v > 0 for v in values),
                f"--{flag}={text}: expected positive numbers separated by commas, e.g. 3,4,6")
    return values


def settings_from_args(args):
    """The search's settings from the command line: the comma lists parsed, every value
    checked before anything is loaded."""
    budgets = {flag: tuple(parse_numbers(getattr(args, flag), flag) if getattr(args, flag)
                           else ()) for flag in BUDGET_FLAGS}
    settings = cli.settings_from_namespace(
        SearchSettings, args, **budgets,
        batch_sizes=tuple(cli.parse_batch_sizes(args.batch_sizes, "batch_sizes")),
        importance_settings=cli.settings_from_namespace(unit_importance.ImportanceSettings,
                                                        args))
    settings.validate()
    return settings


def run(args):
    cli.resolve_task_arguments(args)
    settings = settings_from_args(args)
    with tempfile.TemporaryDirectory(prefix="distill_search_") as scratch:
        search(settings, scratch)


def main(argv=None):
    return cli.argparse_main(PROGRAM, build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
