"""The peer reference: what a user gets free from the model's own framework.

The same dense weights are loaded into HuggingFace transformers' ``BertForSequenceClassification``,
exported with ``torch.onnx.export`` and quantized with ONNX Runtime's ``quantize_dynamic``
(per-channel INT8 weights). ``deploy.benchmark`` times these two rows in the same process as
ours, so every ratio can be read against the peer too.

transformers and torch are an optional extra (``pip install -e .[peer]``); without them
``missing_reason()`` says so and the benchmark notes the rows it left out.
"""
import importlib.util
import os

import numpy as np

from bert import checkpoint, convert_hf, files, modeling
from bert.errors import InputError
from deploy import inference

PEER_PACKAGES = ("torch", "transformers")
PEER_OPSET = 17  # the first opset with LayerNormalization, which the exporter then emits
FP32_ROW, INT8_ROW = "peer:fp32", "peer:int8"  # the benchmark's names of the two rows
FP32_ONNX = "model.onnx"
INT8_ONNX = "model.int8.onnx"
PEER_PIPELINE = "transformers BertForSequenceClassification -> torch.onnx.export -> " \
                "onnxruntime quantize_dynamic (per-channel QInt8)"
# transformers' classifier head -> ours; every other name goes through bert.convert_hf's mapping.
HEAD_NAMES = {"classifier.weight": "output_weights", "classifier.bias": "output_bias"}
# Config keys that make a model something transformers' dense BERT cannot express.
_NOT_DENSE_KEYS = ("kernel_ranks", "layers", "attention_head_size", "power_bert_retention",
                   "tr_bert")


def missing_reason():
    """Why the peer rows cannot be made here, or None when they can."""
    absent = [name for name in PEER_PACKAGES if importlib.util.find_spec(name) is None]
    if absent:
        return (f"peer reference rows left out: {', '.join(absent)} not installed "
                "(pip install -e .[peer])")
    return None


def our_name(hf_name):
    """Our checkpoint name of one of transformers' parameters (None: not a weight we hold):
    the head by name, the encoder by ``bert.convert_hf``'s mapping, the one mapping both ways."""
    return HEAD_NAMES.get(hf_name) or convert_hf.google_name(hf_name)


def hf_state_dict(hf_names, values):
    """{HF name: array} for transformers' ``hf_names``, from our ``values``: kernels [in, out]
    become Linear weights [out, in]. Names we do not hold are left out (load_state_dict says)."""
    state = {}
    for name in hf_names:
        ours = our_name(name)
        if ours in values:
            value = values[ours]
            state[name] = np.ascontiguousarray(value.T if ours.endswith("/kernel") else value)
    return state


def check_dense(bert_config, path):
    unsupported = [key for key in _NOT_DENSE_KEYS if key in bert_config.extra]
    if unsupported:
        raise InputError(f"{path}: the peer reference needs a dense BERT; its config has "
                         f"{', '.join(unsupported)}")


def hf_model(bert_config, values, num_labels):
    """transformers' BertForSequenceClassification holding our weights, in eval mode."""
    import torch
    import transformers

    hf_config = transformers.BertConfig(
        vocab_size=bert_config.vocab_size, hidden_size=bert_config.hidden_size,
        num_hidden_layers=bert_config.num_hidden_layers,
        num_attention_heads=bert_config.num_attention_heads,
        intermediate_size=bert_config.intermediate_size, hidden_act=bert_config.hidden_act,
        max_position_embeddings=bert_config.max_position_embeddings,
        type_vocab_size=bert_config.type_vocab_size, layer_norm_eps=modeling.LAYER_NORM_EPSILON,
        num_labels=num_labels)
    model = transformers.BertForSequenceClassification(hf_config).eval()
    state = {name: torch.from_numpy(value) for name, value in
             hf_state_dict(model.state_dict(), values).items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [name for name in missing if not name.endswith("position_ids")]
    if missing or unexpected:
        raise InputError(f"weights do not fit transformers' BERT: missing {missing}, "
                         f"unexpected {unexpected}")
    return model


class _Logits:
    """The classifier's logits alone, with our three inputs in our order."""

    def __init__(self, model):
        import torch

        class Wrapped(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.model = model

            def forward(self, input_ids, input_mask, segment_ids):
                return self.model(input_ids=input_ids, attention_mask=input_mask,
                                  token_type_ids=segment_ids).logits

        self.module = Wrapped().eval()


def export_peer(model_dir, output_dir, max_seq_length):
    """Export ``model_dir`` (a dense model folder) the peer's way into ``output_dir``:
    model.onnx (fp32) and model.int8.onnx. Returns the two paths."""
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model = inference.load_model_folder(model_dir, flag="model")
    check_dense(model.bert_config, model_dir)
    values = checkpoint.read_checkpoint(model.checkpoint_prefix)
    wrapped = _Logits(hf_model(model.bert_config, values, model.num_labels)).module
    os.makedirs(output_dir, exist_ok=True)
    fp32, int8 = (os.path.join(output_dir, name) for name in (FP32_ONNX, INT8_ONNX))
    example = torch.ones([1, max_seq_length], dtype=torch.int64)
    dynamic = {name: {0: "batch", 1: "sequence"} for name in inference.INPUT_NAMES}
    dynamic[inference.LOGITS] = {0: "batch"}
    with files.atomic_path(fp32) as temp, torch.no_grad():
        torch.onnx.export(wrapped, (example, example, torch.zeros_like(example)), temp,
                          input_names=list(inference.INPUT_NAMES),
                          output_names=[inference.LOGITS], dynamic_axes=dynamic,
                          opset_version=PEER_OPSET, dynamo=False)
    with files.atomic_path(int8) as temp:
        quantize_dynamic(fp32, temp, per_channel=True, weight_type=QuantType.QInt8)
    files.write_json_atomic(os.path.join(output_dir, inference.EXPORT_INFO),
                            {inference.EXPORT_SOURCE: os.path.realpath(model_dir),
                             "pipeline": PEER_PIPELINE})
    return fp32, int8
