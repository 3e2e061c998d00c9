"""Gradual magnitude pruning's schedule (Zhu & Gupta, 2017): the sparsity target grows as

    s_t = s_f + (s_i − s_f) · (1 − (t − t₀) / (t₁ − t₀))³      for t₀ ≤ t ≤ t₁

fast at first, while the network still has redundant weights, slowly at the end. Masks are
recomputed every ``frequency`` steps from t₀ and at t₁, then frozen (the pattern is locked).
"""
import dataclasses

import tensorflow as tf

from bert.errors import UsageError

UNSTRUCTURED = "1x1"
BLOCKS = {UNSTRUCTURED: (1, 1), "1x4": (1, 4), "4x1": (4, 1)}  # (rows, columns) of a block
SCHEDULE_POWER = 3


@dataclasses.dataclass(frozen=True)
class PruningSchedule:
    """Flag names are the field names with ``pruning_`` where the issue's recipe has them."""
    initial_sparsity: float = 0.0
    final_sparsity: float = 0.0
    pruning_start: int = 0  # t₀: the first mask update (a step count)
    pruning_end: int = 0  # t₁: the last one; the masks are frozen after it
    pruning_frequency: int = 100  # steps between mask updates
    block: str = UNSTRUCTURED

    @property
    def prunes(self):
        return self.final_sparsity > 0

    def validate(self):
        """Refuse what no run can use, naming the flag."""
        for name in ("initial_sparsity", "final_sparsity"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise UsageError(f"--{name}={value}: must be in [0, 1)")
        if self.initial_sparsity > self.final_sparsity:
            raise UsageError(f"--initial_sparsity={self.initial_sparsity} is above "
                             f"--final_sparsity={self.final_sparsity}: the schedule only grows")
        if self.pruning_start < 0:
            raise UsageError(f"--pruning_start={self.pruning_start}: must be >= 0")
        if self.pruning_end < self.pruning_start:
            raise UsageError(f"--pruning_end={self.pruning_end}: must be >= --pruning_start="
                             f"{self.pruning_start}")
        if self.pruning_frequency < 1:
            raise UsageError(f"--pruning_frequency={self.pruning_frequency}: must be >= 1")
        if self.block not in BLOCKS:
            raise UsageError(f"--block={self.block}: expected one of {', '.join(BLOCKS)}")

    def check_steps(self, num_train_steps, flag="num_train_epochs"):
        """The schedule must end inside the run, else the target sparsity is never reached."""
        if self.prunes and self.pruning_end > num_train_steps:
            raise UsageError(f"--pruning_end={self.pruning_end} is after the run's last step "
                             f"{num_train_steps} (see --{flag}): the final sparsity would never "
                             "be reached")

    def target(self, step):
        """s_t in Python (the reference of the graph's ``target_tensor``)."""
        if step < self.pruning_start:
            return self.initial_sparsity
        span = max(self.pruning_end - self.pruning_start, 1)
        progress = min(1.0, (step - self.pruning_start) / span)
        return (self.final_sparsity + (self.initial_sparsity - self.final_sparsity)
                * (1.0 - progress) ** SCHEDULE_POWER)

    def is_update_step(self, step):
        return (self.pruning_start <= step <= self.pruning_end
                and ((step - self.pruning_start) % self.pruning_frequency == 0
                     or step == self.pruning_end))

    def target_tensor(self, step):
        """s_t for an int64 step tensor."""
        step = tf.cast(step, tf.float64)
        span = float(max(self.pruning_end - self.pruning_start, 1))
        progress = tf.clip_by_value((step - self.pruning_start) / span, 0.0, 1.0)
        target = (self.final_sparsity + (self.initial_sparsity - self.final_sparsity)
                  * (1.0 - progress) ** SCHEDULE_POWER)
        return tf.cast(target, tf.float32)

    def update_step_tensor(self, step):
        """True at the steps where the masks are recomputed."""
        step = tf.cast(step, tf.int64)
        inside = tf.logical_and(step >= self.pruning_start, step <= self.pruning_end)
        on_beat = tf.logical_or(
            tf.equal(tf.math.floormod(step - self.pruning_start, self.pruning_frequency), 0),
            tf.equal(step, self.pruning_end))
        return tf.logical_and(inside, on_beat)
