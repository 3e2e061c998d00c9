"""A model folder, loaded for inference as its config describes it, and its inputs.

Every exported or timed model is built here: the config's own dense factory (compact kernel
ranks) plus the methods its config names (e.g. PoWER-BERT's retention configuration, found
through ``bert.methods.from_config``), with token inputs of dynamic batch *and* length, so a
batch is padded only to its longest example.
"""
import dataclasses

import numpy as np
import onnxruntime
import tensorflow as tf

from bert import checkpoint, cli, distribution, methods, model_folder, modeling, tokenization
from bert.classifier import classifier_head, convert_example
from bert.features import HEAD
from bert.model_fn import HEAD_WEIGHTS
from bert.squad_model import HEAD_WEIGHTS as SQUAD_HEAD_WEIGHTS
from bert.errors import InputError
from bert.glue import InputExample

tf1 = tf.compat.v1

FOLDER_EXPECTED = "a model folder with bert_config.json, vocab and a checkpoint"
INPUT_NAMES = ("input_ids", "input_mask", "segment_ids")
LOGITS = "logits"
EXPORT_INFO = "export.json"  # beside every export: what it was made from, and how
EXPORT_SOURCE = "source_model_dir"  # export.json's key naming the exported model folder
ONNX_INTEGER_TYPES = {"tensor(int32)": np.int32, "tensor(int64)": np.int64}
ORT_SPINNING_KEY = "session.intra_op.allow_spinning"
# ONNX Runtime's graph rewrites that slow our exports down on CPU. SkipLayerNormFusion: its fused
# kernel ran ~3x slower than the Add + LayerNormalization it replaces; without it the dense INT8
# MiniLM export ran 1.13-1.24x faster (batch 32 and 1, seq 128, 2 threads, onnxruntime 1.32).
SLOWER_FUSIONS = ("SkipLayerNormFusion",)


@dataclasses.dataclass
class ModelFolder:
    """What inference needs to know about a model folder with a classifier head."""
    path: str
    bert_config: modeling.BertConfig
    checkpoint_prefix: str
    vocab_file: str
    num_labels: int  # 1 for regression (STS-B)

    @property
    def method_list(self):
        return methods.from_config(self.bert_config)

    @property
    def float_method_list(self):
        """The methods of its float graph: without a simulated INT8 (that is the INT8 file's)."""
        return [method for method in self.method_list if not method.simulates_int8]

    def tokenizer(self, do_lower_case=True):
        return tokenization.create_tokenizer(self.vocab_file, do_lower_case)


def load_model_folder(path, flag="model_dir"):
    """A model folder (config, vocab, checkpoint with Google's head ``output_weights``), its
    checkpoint read whole: a truncated one is one line here, not a traceback at restore."""
    model = model_folder.load(path, flag, FOLDER_EXPECTED, verify_weights=True)
    stored = checkpoint.list_checkpoint(model.checkpoint_prefix)
    cli.require(SQUAD_HEAD_WEIGHTS not in stored,
                f"--{flag}={path}: a SQuAD model (span head {SQUAD_HEAD_WEIGHTS}); "
                "deploy.export_squad exports it")
    cli.require(HEAD_WEIGHTS in stored, f"--{flag}={path}: the checkpoint has no classifier "
                                        f"head ({HEAD_WEIGHTS}); fine-tune it first")
    return ModelFolder(path, model.bert_config, model.checkpoint_prefix, model.vocab_file,
                       int(stored[HEAD_WEIGHTS][0]))


def build_logits(model: ModelFolder, input_ids, input_mask, segment_ids, simulated_int8=True):
    """Logits of the model in the current graph (variables to be restored from its checkpoint);
    ``simulated_int8=False`` leaves out a method that simulates INT8 (the float graph)."""
    method_list = model.method_list if simulated_int8 else model.float_method_list
    hooks = methods.build_all(method_list, model.bert_config, False)
    bert = modeling.BertModel(model.bert_config, False, input_ids, input_mask, segment_ids,
                              dense_factory=hooks.dense_factory,
                              token_selector=hooks.token_selector)
    return classifier_head(bert.pooled_output, model.num_labels, False)


def encode(tokenizer, pairs, max_seq_length, truncation=HEAD):
    """(input_ids, input_mask, segment_ids) int32 arrays of ``[(text_a, text_b or None)]``,
    truncated as in training (``features.convert_example``), padded to the longest example of
    the batch (not to max_seq_length)."""
    features = [convert_example(InputExample(str(index), text_a, text_b, 0.0), None,
                                max_seq_length, tokenizer, truncation)
                for index, (text_a, text_b) in enumerate(pairs)]
    longest = max(sum(feature["input_mask"]) for feature in features)
    return tuple(np.array([feature[name][:longest] for feature in features], np.int32)
                 for name in INPUT_NAMES)


class TensorFlowRunner:
    """The model's logits in one TF session with [batch, length] placeholders, restored once
    (``simulated_int8``: see ``build_logits``)."""

    def __init__(self, model: ModelFolder, threads=0, simulated_int8=True):
        distribution.log_devices()
        self.graph = tf.Graph()
        with self.graph.as_default():
            self.inputs = [tf1.placeholder(tf.int32, [None, None], name) for name in INPUT_NAMES]
            self.logits = tf.identity(build_logits(model, *self.inputs,
                                                   simulated_int8=simulated_int8), LOGITS)
            saver = tf1.train.Saver()
            session_config = tf1.ConfigProto(intra_op_parallelism_threads=threads,
                                              inter_op_parallelism_threads=threads)
            self.session = tf1.Session(graph=self.graph, config=session_config)
            saver.restore(self.session, model.checkpoint_prefix)

    def __call__(self, input_ids, input_mask, segment_ids):
        return self.session.run(self.logits, dict(zip(self.inputs, (input_ids, input_mask,
                                                                    segment_ids))))

    def close(self):
        self.session.close()


class OnnxRunner:
    """An ONNX model's logits in one onnxruntime session, with the same call as TensorFlowRunner.

    ``threads`` intra-op threads and one inter-op thread (a BERT graph is a chain: parallel
    branches buy nothing), every graph optimisation but SLOWER_FUSIONS, CPU only. Idle threads
    sleep instead of spinning: a spinning pool takes the cores of whatever runs next (another
    model timed side by side); on 2 cores it nearly halved the measured speed of interleaved
    sessions.
    """

    def __init__(self, onnx_file, threads=0):
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.add_session_config_entry(ORT_SPINNING_KEY, "0")
        try:
            self.session = onnxruntime.InferenceSession(
                onnx_file, options, providers=["CPUExecutionProvider"],
                disabled_optimizers=list(SLOWER_FUSIONS))
        except Exception as error:  # onnxruntime's own types: InvalidProtobuf, Fail, ...
            raise InputError(f"{onnx_file}: onnxruntime cannot load it "
                             f"({str(error).strip().splitlines()[0]})") from None
        types = {node.name: node.type for node in self.session.get_inputs()}
        if set(types) != set(INPUT_NAMES):
            raise InputError(f"{onnx_file}: inputs are {sorted(types)}, expected "
                             f"{list(INPUT_NAMES)}")
        # Our exports read int32 ids, torch's int64: each session gets the type it declares.
        self.dtypes = [ONNX_INTEGER_TYPES.get(types[name], np.int32) for name in INPUT_NAMES]

    def __call__(self, input_ids, input_mask, segment_ids):
        arrays = (input_ids, input_mask, segment_ids)
        return self.session.run([LOGITS], {name: np.asarray(array, dtype) for name, array, dtype
                                           in zip(INPUT_NAMES, arrays, self.dtypes)})[0]

    def close(self):
        """Sessions free their memory when dropped; kept so both runners close alike."""
        del self.session
