"""OpenVINO as a second engine for our ONNX exports: on this project's CPUs (AMD EPYC, AVX-512
VNNI) its INT8 ran the dense model about 1.3x faster than ONNX Runtime's.

An optional extra (``pip install -e .[openvino]``): without it ``missing_reason()`` says so and
the benchmark notes the rows it left out. OpenVINO reads the ONNX file as it is (our fused
com.microsoft ops and QDQ pairs included). Inference precision is pinned to f32: by default it
runs float layers in bf16 on CPUs that have it, which would change the model's numbers.
"""
import importlib.util

import numpy as np
import onnx

from deploy import inference

PACKAGE = "openvino"
ENGINE_NAME = "openvino"
DEVICE = "CPU"
# ONNX Runtime's dynamic-INT8 ops, which OpenVINO cannot convert (its INT8 reads QDQ pairs:
# deploy.export's static and learned modes).
UNCONVERTED_OPS = ("QAttention", "DynamicQuantizeMatMul", "MatMulIntegerToFloat",
                   "DynamicQuantizeLinear")


def missing_reason():
    """Why the OpenVINO rows cannot be made here, or None when they can."""
    if importlib.util.find_spec(PACKAGE) is None:
        return f"OpenVINO rows left out: {PACKAGE} not installed (pip install -e .[openvino])"
    return None


def unconverted_ops(onnx_file):
    """The ops of ``onnx_file`` that OpenVINO has no conversion for (sorted; empty: none)."""
    graph = onnx.load(onnx_file, load_external_data=False).graph
    return sorted({node.op_type for node in graph.node if node.op_type in UNCONVERTED_OPS})


class OpenVinoRunner:
    """An ONNX model compiled by OpenVINO for the CPU, with the call of the other runners:
    ``threads`` inference threads, one stream, f32 wherever the model is not INT8."""

    def __init__(self, onnx_file, threads=0):
        import openvino  # an optional extra: imported only when its rows are asked for

        config = {"INFERENCE_PRECISION_HINT": "f32", "NUM_STREAMS": "1",
                  "PERFORMANCE_HINT": "LATENCY"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = str(threads)
        self.model = openvino.Core().compile_model(onnx_file, DEVICE, config)
        self.request = self.model.create_infer_request()
        self.output = self.model.output(inference.LOGITS)

    def __call__(self, input_ids, input_mask, segment_ids):
        arrays = (input_ids, input_mask, segment_ids)
        results = self.request.infer({name: np.asarray(array, np.int32)
                                      for name, array in zip(inference.INPUT_NAMES, arrays)})
        return np.array(results[self.output])

    def close(self):
        del self.request, self.model
