"""The classifier library: a GLUE task, features, model_fn, Estimator, train / evaluate / predict.

Driven by a plain ``ClassifierSettings`` (no flags are read here): ``bert.run_classifier`` fills
it from Google's flags, and every method's entry point fills it from its own. Compression
methods change the run only through ``Method.build`` (see ``bert.methods``); several methods
compose in one run, and a model folder's config brings the methods its inference needs.

    classifier = Classifier(settings, [method, ...])
    classifier.run()            # do_train / do_eval / do_predict, as the settings say

Re-running into the same ``output_dir`` resumes from its last good checkpoint. Ctrl-C or
SIGTERM during training saves the current step before the run stops.
"""
import dataclasses
import json
import logging
import math
import os
import time
from typing import Optional, Sequence

import tensorflow as tf

from bert import (checkpoint, distribution, files, glue, methods, model_folder, modeling,
                  optimization, tasks, tokenization, training)
from bert.errors import UsageError
# The classifier's pieces, importable from here as before the split:
from bert.features import (SHUFFLE_BUFFER, Task, cached_features,  # noqa: F401
                           convert_example, file_fingerprint, input_fn_builder, truncate_pair)
from bert.model_fn import (CLASSIFIER_DROPOUT, HEAD_VARIABLES, HEAD_WEIGHTS,  # noqa: F401
                           TRAINING_LOSS_ALIAS, ModelFnSettings, _train_op, classifier_head,
                           create_model, model_fn_builder, task_metric_ops)
from bert.training_hooks import ProgressHook, StopOnSignalHook  # noqa: F401

tf1 = tf.compat.v1
log = logging.getLogger("bert")

EVAL_RESULTS_FILE = "eval_results.txt"
TEST_RESULTS_FILE = "test_results.tsv"
HPARAMS_FILE = "hparams.json"
SECONDS_PER_MINUTE = 60.0
MIN_SEQ_LENGTH = 3  # [CLS] x [SEP]


@dataclasses.dataclass
class ClassifierSettings:
    """Everything a classifier run needs; field names are Google's flag names."""
    task_name: str
    data_dir: str
    vocab_file: str
    bert_config_file: str
    output_dir: str
    init_checkpoint: Optional[str] = None
    do_lower_case: bool = True
    max_seq_length: int = 128
    do_train: bool = False
    do_eval: bool = False
    do_predict: bool = False
    train_batch_size: int = 32  # GLOBAL: split over the replicas of a distributed run
    eval_batch_size: int = 8
    predict_batch_size: int = 8
    learning_rate: float = 5e-5
    weight_decay: float = optimization.DEFAULT_WEIGHT_DECAY  # AdamW's decoupled decay rate
    num_train_epochs: float = 3.0
    num_train_steps: Optional[int] = None  # overrides epochs × examples / batch size when set
    warmup_proportion: float = 0.1
    num_warmup_steps: Optional[int] = None  # overrides warmup_proportion when set
    save_checkpoints_steps: int = 1000
    keep_checkpoint_max: int = 3
    max_train_examples: int = 0
    log_every_n_steps: int = 20
    seed: int = 12345
    evaluate_every_checkpoint: bool = False  # train_and_evaluate: eval after each checkpoint
    features_dir: Optional[str] = None  # where TFRecord features are cached (default output_dir)
    write_submission: bool = True  # GLUE submission file beside test_results.tsv
    # Overrides of the config's dropout (a method's run may train with other dropout).
    hidden_dropout_prob: Optional[float] = None
    attention_probs_dropout_prob: Optional[float] = None
    classifier_dropout: float = CLASSIFIER_DROPOUT  # the head's dropout (Google's fixed 0.1)
    # How training is spread (bert.distribution): none, mirrored, multi_worker, parameter_server.
    distribution: str = distribution.NONE
    devices: Sequence[str] = ()  # devices of "mirrored" (default: every GPU, else the CPU)

    def validate(self, bert_config):
        """Refuse values no run can use, naming the flag; writes nothing."""
        if not (self.do_train or self.do_eval or self.do_predict):
            raise UsageError("at least one of --do_train, --do_eval, --do_predict must be set")
        for name in ("task_name", "data_dir", "vocab_file", "bert_config_file", "output_dir"):
            if not getattr(self, name):
                raise UsageError(f"--{name} is required")
        tasks.canonical_task_name(self.task_name)
        if not os.path.isdir(self.data_dir):
            raise UsageError(f"--data_dir={self.data_dir}: folder not found")
        if not os.path.isfile(self.vocab_file):
            raise UsageError(f"--vocab_file={self.vocab_file}: file not found (expected "
                             "vocab.txt or a SentencePiece .model)")
        if os.path.isfile(self.output_dir):
            raise UsageError(f"--output_dir={self.output_dir} is a file; expected a folder")
        if not MIN_SEQ_LENGTH <= self.max_seq_length <= bert_config.max_position_embeddings:
            raise UsageError(f"--max_seq_length={self.max_seq_length}: must be in "
                             f"[{MIN_SEQ_LENGTH}, max_position_embeddings="
                             f"{bert_config.max_position_embeddings}]")
        for name in ("train_batch_size", "eval_batch_size", "predict_batch_size",
                     "save_checkpoints_steps", "keep_checkpoint_max", "log_every_n_steps"):
            if getattr(self, name) <= 0:
                raise UsageError(f"--{name}={getattr(self, name)}: must be positive")
        if not (math.isfinite(self.learning_rate) and self.learning_rate >= 0):
            raise UsageError(f"--learning_rate={self.learning_rate}: must be a number >= 0")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise UsageError(f"--weight_decay={self.weight_decay}: must be a number >= 0")
        if self.do_train and not self.num_train_epochs > 0:
            raise UsageError(f"--num_train_epochs={self.num_train_epochs}: must be positive")
        if not 0 <= self.warmup_proportion <= 1:
            raise UsageError(f"--warmup_proportion={self.warmup_proportion}: must be in [0, 1]")
        if self.num_warmup_steps is not None and self.num_warmup_steps < 0:
            raise UsageError(f"--num_warmup_steps={self.num_warmup_steps}: must be >= 0")
        if self.max_train_examples < 0:
            raise UsageError(f"--max_train_examples={self.max_train_examples}: must be >= 0")
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob",
                     "classifier_dropout"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value < 1.0:
                raise UsageError(f"--{name}={value}: must be in [0, 1)")
        distribution.check_cluster(self.distribution)
        if self.devices and self.distribution != distribution.MIRRORED:
            raise UsageError(f"devices {list(self.devices)} are for --distribution=mirrored")
        if self.init_checkpoint:
            try:
                checkpoint.verify_checkpoint(checkpoint.resolve_checkpoint(self.init_checkpoint))
            except FileNotFoundError as error:
                raise UsageError(str(error)) from None
        elif self.do_train:
            raise UsageError("--init_checkpoint is required with --do_train (fine-tuning "
                             "starts from a pretrained model)")

    def model_config(self):
        """The config file with this run's dropout overrides: what the run trains and ships."""
        config = modeling.BertConfig.from_json_file(self.bert_config_file)
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            if getattr(self, name) is not None:
                setattr(config, name, getattr(self, name))
        return config


def check_classifier_head(shapes, task_name, folder, flag):
    """A model used as it is (evaluated, scored, or teaching) must be fine-tuned on the task: a
    head with one row per label. ``shapes``: {variable name: shape} of the folder's checkpoint;
    UsageError naming ``--flag`` otherwise."""
    labels = tasks.get_processor(task_name).get_labels()
    needed = 1 if labels is None else len(labels)
    shape = shapes.get(HEAD_WEIGHTS)
    if shape is None:
        raise UsageError(f"--{flag}={folder}: no classifier head ({HEAD_WEIGHTS}); a model "
                         f"fine-tuned on {task_name} is expected")
    if shape[0] != needed:
        raise UsageError(f"--{flag}={folder}: the classifier head has {shape[0]} outputs, "
                         f"{task_name} needs {needed} (a model fine-tuned on this task is "
                         "expected)")


# Run --------------------------------------------------------------------------------------------
def format_eval_results(result, train_seconds=None, eval_seconds=None):
    """Google's ``key = value`` lines plus the seed's train_time/eval_time in minutes."""
    lines = [f"{key} = {result[key]}" for key in sorted(result)]
    if train_seconds is not None:
        lines.append(f"train_time: {train_seconds / SECONDS_PER_MINUTE:.6f}min")
    if eval_seconds is not None:
        lines.append(f"eval_time: {eval_seconds / SECONDS_PER_MINUTE:.6f}min")
    return "\n".join(lines) + "\n"


def write_hparams_summary(output_dir, hparams):
    """All hyper-parameters once, as a TensorBoard text summary (and a json beside it)."""
    os.makedirs(output_dir, exist_ok=True)
    files.write_text_atomic(os.path.join(output_dir, HPARAMS_FILE),
                            json.dumps(hparams, indent=2, sort_keys=True, default=str) + "\n")
    table = "\n".join(f"| {key} | {value} |" for key, value in sorted(hparams.items()))
    with tf.Graph().as_default():
        summary = tf1.summary.text("hyperparameters",
                                   tf.constant("| flag | value |\n|---|---|\n" + table))
        with tf1.Session() as session:
            writer = tf1.summary.FileWriter(output_dir)
            writer.add_summary(session.run(summary), 0)
            writer.close()


class Classifier:
    """One model, one task, one output folder: train, evaluate and predict with the methods.

    ``methods`` are the run's own methods; the model config's methods (e.g. a PoWER-BERT
    retention configuration) are added unless ``config_methods=False``.
    """

    def __init__(self, settings: ClassifierSettings, method_list: Sequence = (),
                 config_methods=True, bert_config=None):
        self.settings = settings
        if not settings.bert_config_file or not os.path.isfile(settings.bert_config_file):
            raise UsageError(f"--bert_config_file={settings.bert_config_file}: file not found "
                             "(expected the model's bert_config.json)")
        self.bert_config = bert_config or settings.model_config()
        settings.validate(self.bert_config)
        distribution.log_devices()
        tokenization.check_vocab_matches_config(settings.vocab_file,
                                                self.bert_config.vocab_size)
        own = list(method_list)
        if config_methods:
            own += methods.from_config(self.bert_config, exclude=own)
        self.methods = own
        self.task = Task(settings.task_name, settings.data_dir, settings.vocab_file,
                         settings.do_lower_case, settings.max_seq_length,
                         settings.features_dir or settings.output_dir, settings.init_checkpoint)
        self.train_examples = []
        self.num_train_steps = 0
        self.num_warmup_steps = 0
        if settings.do_train:
            self.train_examples = self.task.examples("train", settings.max_train_examples)
            self.num_train_steps = settings.num_train_steps or max(1, int(
                len(self.train_examples) / settings.train_batch_size * settings.num_train_epochs))
            self.num_warmup_steps = (settings.num_warmup_steps
                                     if settings.num_warmup_steps is not None
                                     else int(self.num_train_steps * settings.warmup_proportion))
        # Every other split the run reads is read now too: a bad row fails before anything is
        # written, not after the training it follows.
        self._dev_examples = self.task.examples("dev") if settings.do_eval else None
        self._test_examples = self.task.examples("test") if settings.do_predict else None
        self._progress = None

    # Pieces ---------------------------------------------------------------------------------
    @property
    def dev_examples(self):
        if self._dev_examples is None:
            self._dev_examples = self.task.examples("dev")
        return self._dev_examples

    @property
    def test_examples(self):
        if self._test_examples is None:
            self._test_examples = self.task.examples("test")
        return self._test_examples

    def model_fn(self, extra_training_hooks=()):
        s = self.settings
        settings = ModelFnSettings(
            self.task.name, self.task.num_labels, self.task.is_regression, s.init_checkpoint,
            self.num_train_steps, self.num_warmup_steps, s.learning_rate, s.train_batch_size,
            s.log_every_n_steps, s.classifier_dropout, s.weight_decay)
        return model_fn_builder(self.bert_config, settings, self.methods, extra_training_hooks)

    def estimator(self, seed=None, extra_training_hooks=(), keep_checkpoint_max=None,
                  strategy=None):
        """The Estimator of this run; ``strategy`` distributes its training (evaluation and
        prediction run on one device). TF_CONFIG, when set, places it in its cluster."""
        s = self.settings
        cpus = distribution.cpu_device_count(s.devices)
        session_config = (tf1.ConfigProto(device_count={"CPU": cpus}, allow_soft_placement=True)
                          if cpus > 1 else None)  # mirrored over several CPU devices
        run_config = tf.estimator.RunConfig(
            model_dir=s.output_dir, save_checkpoints_steps=s.save_checkpoints_steps,
            keep_checkpoint_max=keep_checkpoint_max or s.keep_checkpoint_max,
            tf_random_seed=s.seed if seed is None else seed, log_step_count_steps=None,
            save_summary_steps=s.log_every_n_steps, train_distribute=strategy,
            session_config=session_config)
        return tf.estimator.Estimator(model_fn=self.model_fn(extra_training_hooks),
                                      config=run_config)

    def _train_strategy(self):
        """The run's strategy, after checking that the global batch splits over its replicas."""
        s = self.settings
        strategy = distribution.train_strategy(s.distribution, s.devices)
        replicas = distribution.replicas_in_sync(s.distribution, strategy)
        if s.train_batch_size % replicas:
            raise UsageError(f"--train_batch_size={s.train_batch_size} (the global batch) must "
                             f"be a multiple of the {replicas} replicas of --distribution="
                             f"{s.distribution}")
        if s.distribution == distribution.PARAMETER_SERVER:
            log.info("distribution %s: every worker (%d) trains whole batches of %d, "
                     "asynchronously; task %s", s.distribution, distribution.num_workers(),
                     s.train_batch_size, distribution.task_type())
        else:
            where = (f"task {distribution.task_type()}" if distribution.task_type() else
                     ", ".join(strategy.extended.worker_devices) if strategy else "one device")
            log.info("distribution %s: %d replica(s) in sync, global batch %d = %d per replica "
                     "(%s)", s.distribution, replicas, s.train_batch_size,
                     s.train_batch_size // replicas, where)
        return strategy

    def dev_input_fn(self):
        return self.task.input_fn("dev", self.dev_examples, self.settings.eval_batch_size,
                                  False)

    def hparams(self):
        values = dataclasses.asdict(self.settings)
        for method in self.methods:
            values.update(method.hparams())
        values["methods"] = ",".join(method.name for method in self.methods) or "fine_tune"
        return values

    def checkpoint_to_use(self):
        """What was trained here; for eval/predict-only runs, the given checkpoint."""
        if tf.train.latest_checkpoint(self.settings.output_dir):
            return None
        if self.settings.init_checkpoint:
            return checkpoint.resolve_checkpoint(self.settings.init_checkpoint)
        raise UsageError(f"nothing to evaluate: {self.settings.output_dir} has no checkpoint "
                         "and no --init_checkpoint was given")

    # Steps ----------------------------------------------------------------------------------
    def train(self, max_steps=None, seed=None, exporters=(), keep_checkpoint_max=None,
              train_input=None):
        """Train to ``max_steps`` (default: all epochs), resuming from the last good checkpoint.

        ``train_input`` replaces the task's training input_fn: a method whose hooks read extra
        per-example features (e.g. TR-BERT's token importance) brings records that carry them.

        Returns the seconds spent. Raises Interrupted after saving the current step when a
        stop signal arrives, and TrainingDivergedError when the loss stops being finite.
        """
        s = self.settings
        strategy = self._train_strategy()
        max_steps = max_steps or self.num_train_steps
        stop_hook = StopOnSignalHook()
        estimator = self.estimator(seed, [stop_hook, *distribution.session_hooks(s.distribution)],
                                   keep_checkpoint_max, strategy)
        train_input = train_input or self.task.input_fn(
            "train", self.train_examples, s.train_batch_size, True, s.max_train_examples,
            s.seed if seed is None else seed)
        log.info("training on %d examples to step %d (batch %d, %g epochs)",
                 len(self.train_examples), max_steps, s.train_batch_size, s.num_train_epochs)
        eval_spec = None
        # In a cluster train_and_evaluate starts this task's server and plays its role
        # (chief, worker, ps, evaluator); the evaluator task evaluates each checkpoint.
        if (s.evaluate_every_checkpoint and s.do_eval
                or s.distribution in distribution.CLUSTER_DISTRIBUTIONS):
            eval_spec = tf.estimator.EvalSpec(self.dev_input_fn(), steps=None,
                                              exporters=list(exporters), throttle_secs=0,
                                              start_delay_secs=0)
        return training.train_estimator(estimator, train_input, max_steps, s.output_dir,
                                        stop_hook, s.learning_rate, eval_spec)

    def evaluate(self, checkpoint_path=None, write=True, train_seconds=None):
        """Full dev-set metrics; writes eval_results.txt unless ``write`` is False."""
        estimator = self.estimator()
        start = time.time()
        result = estimator.evaluate(self.dev_input_fn(),
                                    checkpoint_path=checkpoint_path or self.checkpoint_to_use())
        result = {key: (value.item() if hasattr(value, "item") else value)
                  for key, value in result.items()}
        if write:
            text = format_eval_results(result, train_seconds, time.time() - start)
            path = os.path.join(self.settings.output_dir, EVAL_RESULTS_FILE)
            files.write_text_atomic(path, text)
            log.info("eval results (%s):\n%s", path, text)
        return result

    def predict(self, checkpoint_path=None):
        """Write test_results.tsv (scores) and the GLUE submission file for the test split."""
        s = self.settings
        test_examples = self.test_examples
        predict_input = self.task.input_fn("test", test_examples, s.predict_batch_size, False)
        outputs = list(self.estimator().predict(
            predict_input, checkpoint_path=checkpoint_path or self.checkpoint_to_use()))
        if self.task.is_regression:
            rows = [f"{out['predictions']:.6f}" for out in outputs]
        else:
            rows = ["\t".join(f"{p:.6f}" for p in out["probabilities"]) for out in outputs]
        os.makedirs(s.output_dir, exist_ok=True)
        files.write_text_atomic(os.path.join(s.output_dir, TEST_RESULTS_FILE),
                                "\n".join(rows) + "\n")
        written = [TEST_RESULTS_FILE]
        if s.write_submission:
            submission = os.path.join(s.output_dir, tasks.submission_file_name(self.task.name))
            glue.write_submission(submission, self.task.processor, test_examples,
                                  [out["predictions"] for out in outputs])
            written.append(os.path.basename(submission))
        log.info("wrote %s in %s (%d test examples)", " and ".join(written), s.output_dir,
                 len(outputs))
        return outputs

    def describe_output_dir(self):
        """The config and vocabulary beside the checkpoints: output_dir is then a model folder
        that export, benchmark, factorize or a teacher flag take as it is."""
        os.makedirs(self.settings.output_dir, exist_ok=True)
        model_folder.copy_config_and_vocab(self.settings.output_dir, self.bert_config,
                                           self.settings.vocab_file)

    def run(self, exporters=()):
        """do_train, do_eval and do_predict as the settings say; returns the eval result."""
        s = self.settings
        train_seconds = None
        if s.do_train:
            if distribution.is_chief():
                write_hparams_summary(s.output_dir, self.hparams())
                self.describe_output_dir()
            train_seconds = self.train(exporters=exporters)
        if not distribution.is_chief():
            log.info("%s task done; the chief evaluates and writes the results",
                     distribution.task_type())
            return None
        result = self.evaluate(train_seconds=train_seconds) if s.do_eval else None
        if s.do_predict:
            self.predict()
        return result
