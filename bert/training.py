"""The one Estimator training loop of every run that trains (the classifier, pre-training), so
each gets the same resumption, stop on a signal, NaN check and full-disk handling.

A run starts from its output folder's newest checkpoint that reads back whole. A stop signal
saves the current step and ends with ``Interrupted``; a loss that becomes NaN ends with
``TrainingDivergedError`` naming the step and the learning rate, keeping the last good
checkpoint; a full disk ends with one ``OSError`` (ENOSPC) after the half-written files of the
failed write are removed.
"""
import errno
import inspect
import logging
import os
import re
import signal
import time

import tensorflow as tf

from bert import checkpoint
from bert.errors import NO_SPACE_MESSAGE, Interrupted, TrainingDivergedError

tf1 = tf.compat.v1
log = logging.getLogger("bert")

TEMPORARY_NAME = re.compile(r"\.tmp[0-9a-f]+$")
GLOBAL_STEP = "global_step"
INPUT_FN_ARGUMENTS = ("params", "config", "input_context")  # what Estimator may pass


def remove_new_temporaries(folder, existing):
    """Remove the half-written files a failed write of this run left in ``folder`` (TF writes
    ``<name>.tmp<hex>`` files and ``<checkpoint>_temp`` folders, then renames them)."""
    checkpoint.remove_save_temporaries(folder)
    for name in set(os.listdir(folder)) - existing:
        if TEMPORARY_NAME.search(name):
            log.warning("removing %s, left by the failed write", os.path.join(folder, name))
            os.remove(os.path.join(folder, name))


def checkpoint_step(path):
    """The global step a checkpoint was saved at (0 without one)."""
    return 0 if path is None else int(tf.train.load_variable(path, GLOBAL_STEP))


def batches_per_step(config, input_context):
    """How many batches of one input pipeline one global step consumes."""
    if input_context is not None:  # a strategy: one batch per replica this pipeline feeds
        return input_context.num_replicas_in_sync // input_context.num_input_pipelines
    if config is not None and config.num_worker_replicas > 1:  # parameter servers: each
        return 1.0 / config.num_worker_replicas  # worker's step advances the global one
    return 1


def resumed_input(input_fn, start_step):
    """``input_fn`` with its stream started where step ``start_step`` left it: the batches the
    checkpoint's steps consumed are skipped, so a resumed run trains on the batches the
    uninterrupted run would (same seed, same order); dropout is keyed on the step (see
    ``bert.randomness``). The wrapper takes the same arguments, so Estimator calls it alike."""
    accepted = [name for name in INPUT_FN_ARGUMENTS
                if name in inspect.signature(input_fn).parameters]

    def from_step(**given):
        dataset = input_fn(**{name: value for name, value in given.items() if name in accepted})
        consumed = start_step * batches_per_step(given.get("config"), given.get("input_context"))
        return dataset.skip(int(consumed))

    if "input_context" in accepted:
        return lambda params=None, config=None, input_context=None: from_step(
            params=params, config=config, input_context=input_context)
    return lambda params=None, config=None: from_step(params=params, config=config)


def train_estimator(estimator, input_fn, max_steps, output_dir, stop_hook, learning_rate,
                    eval_spec=None):
    """Train ``estimator`` into ``output_dir`` up to ``max_steps``; returns the seconds spent.

    ``stop_hook`` is the ``StopOnSignalHook`` among the model_fn's training hooks (after the
    Estimator's NaN check, so its step count names the step before a NaN); ``learning_rate``
    is what the NaN message advises to lower. With ``eval_spec`` it runs
    ``tf.estimator.train_and_evaluate``, which in a cluster plays this task's role.
    """
    os.makedirs(output_dir, exist_ok=True)
    input_fn = resumed_input(input_fn, checkpoint_step(checkpoint.latest_good_checkpoint(
        output_dir, repair=estimator.config.is_chief)))
    start = time.time()
    before = set(os.listdir(output_dir))
    try:
        if eval_spec is None:
            estimator.train(input_fn, max_steps=max_steps)
        else:
            tf.estimator.train_and_evaluate(
                estimator, tf.estimator.TrainSpec(input_fn, max_steps=max_steps), eval_spec)
    except tf1.train.NanLossDuringTrainingError:
        raise TrainingDivergedError(
            f"the loss became NaN at step {stop_hook.last_step + 1}; lower the learning "
            f"rate (--learning_rate={learning_rate:g}); the last good checkpoint is kept: "
            f"{estimator.latest_checkpoint()}") from None
    except tf.errors.OpError as error:
        if NO_SPACE_MESSAGE not in error.message:
            raise
        remove_new_temporaries(output_dir, before)
        raise OSError(errno.ENOSPC, f"no space left on device while training into "
                                    f"{output_dir} ({error.message.splitlines()[0]}); the "
                                    "last complete checkpoint is kept") from None
    finally:
        stop_hook.restore()
    if stop_hook.signal_number is not None:
        name = signal.Signals(stop_hook.signal_number).name
        saved = estimator.latest_checkpoint()
        where = f"saved {saved}" if saved else "the chief keeps the checkpoints"  # a worker
        raise Interrupted(f"stopped by {name}; {where}; run the same command again to resume",
                          stop_hook.signal_number)
    return time.time() - start
