"""Session hooks of every training run: progress with ETA, and a clean stop on a signal."""
import logging
import signal
import time

import tensorflow as tf

tf1 = tf.compat.v1
log = logging.getLogger("bert")

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class ProgressHook(tf1.train.SessionRunHook):
    """Logs step, loss, examples/s and ETA: long runs must show where they are."""

    def __init__(self, loss, total_steps, batch_size, every_n_steps):
        self._loss = loss
        self._total = total_steps
        self._batch = batch_size
        self._every = max(1, every_n_steps)
        self._start = None
        self._steps_run = 0
        self._last_step = 0

    def begin(self):
        self._step_tensor = tf1.train.get_global_step()

    def before_run(self, run_context):
        return tf1.train.SessionRunArgs([self._step_tensor, self._loss])

    def after_run(self, run_context, run_values):
        step, loss = run_values.results
        step += 1  # the global step was read before this step's update
        self._steps_run += 1
        self._last_step = step
        now = time.time()
        if self._start is None:
            self._start, self._first_step = now, step
            return
        if step % self._every == 0 and step > self._first_step:
            rate = (step - self._first_step) / (now - self._start)
            eta = (self._total - step) / rate if rate > 0 else float("inf")
            log.info("step %d/%d  loss %.4f  %.1f examples/s  ETA %dm%02ds", step,
                     self._total, loss, rate * self._batch, eta // 60, eta % 60)

    def end(self, session):
        # In a cluster several processes advance one global step: say what this one did.
        log.info("this process ran %d training steps (global step %d)", self._steps_run,
                 self._last_step)


class StopOnSignalHook(tf1.train.SessionRunHook):
    """SIGINT/SIGTERM end training after the current step; the Estimator's checkpoint saver
    then writes that step, so nothing trained is lost and a re-run resumes from it.

    It also counts finished steps: when the Estimator's NaN check fails a step, ``last_step``
    still names the step before it."""

    def __init__(self):
        self.signal_number = None
        self.last_step = 0
        self._previous = {}

    def begin(self):
        self._step_tensor = tf1.train.get_global_step()
        for number in STOP_SIGNALS:
            self._previous[number] = signal.signal(number, self._on_signal)

    def before_run(self, run_context):
        return tf1.train.SessionRunArgs(self._step_tensor)

    def _on_signal(self, number, frame):
        if self.signal_number is not None:  # a second signal: stop now, without saving
            raise KeyboardInterrupt
        self.signal_number = number
        log.info("%s received: saving the current step, then stopping",
                 signal.Signals(number).name)

    def after_run(self, run_context, run_values):
        self.last_step = int(run_values.results) + 1
        if self.signal_number is not None:
            run_context.request_stop()

    def end(self, session):
        self.restore()

    def restore(self):
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous = {}
