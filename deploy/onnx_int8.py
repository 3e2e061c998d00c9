"""INT8 copies of an fp32 ONNX export, quantized by ONNX Runtime.

* ``dynamic``: INT8 weights; each activation's scale is found at run time, call by call.
  A fused ``Attention`` becomes ``QAttention``.
* ``static``: INT8 weights and activation scales fixed once from calibration batches (tokenized
  train examples), as QuantizeLinear / DequantizeLinear pairs that ONNX Runtime runs as INT8
  kernels. Every MatMul is quantized; ONNX Runtime has no static INT8 Attention, so a packed
  Attention is first split into its q / k / v MatMuls and a MultiHeadAttention.

On all-MiniLM-L6-v2 (2 cores, seq 128) static ran at 0.83-0.87x the speed of dynamic, with
about 3x its mean logit error; keeping the 6 MatMuls after GELU (a long-tailed input) in fp32
cut that error to dynamic's but made static 25% slower again.
"""
import onnx
from onnxruntime import quantization

from deploy import onnx_fusions

DYNAMIC, STATIC = "dynamic", "static"
MODES = (DYNAMIC, STATIC)
STATIC_OPS = ["MatMul"]


class TokenBatches(quantization.CalibrationDataReader):
    """Calibration feeds: one {input name: int32 [batch, seq]} per batch, each read once."""

    def __init__(self, feeds):
        self._feeds = iter(feeds)

    def get_next(self):
        return next(self._feeds, None)


def write_dynamic(fp32_path, path, per_channel):
    quantization.quantize_dynamic(fp32_path, path, per_channel=per_channel,
                                  weight_type=quantization.QuantType.QInt8)


def write_static(fp32_path, path, feeds, per_channel):
    """Calibrated on ``feeds`` (MinMax; it holds every calibrated tensor of every batch in
    memory), asymmetric UINT8 activations and INT8 weights, the pairing ONNX Runtime's x86
    INT8 kernels take."""
    model = onnx.load(fp32_path)
    onnx_fusions.unpack_attention(model)
    quantization.quantize_static(
        model, path, TokenBatches(feeds), quant_format=quantization.QuantFormat.QDQ,
        op_types_to_quantize=STATIC_OPS, per_channel=per_channel,
        activation_type=quantization.QuantType.QUInt8,
        weight_type=quantization.QuantType.QInt8)


def write(mode, fp32_path, path, per_channel, feeds=None):
    """``fp32_path`` quantized in ``mode`` (one of MODES) to ``path``; ``feeds`` calibrate
    the static mode."""
    if mode == STATIC:
        write_static(fp32_path, path, feeds, per_channel)
    else:
        write_dynamic(fp32_path, path, per_channel)
