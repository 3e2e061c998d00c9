"""Share of ONNX Runtime's kernel time per op type for one .onnx file, at batch 32 x 128
tokens (synthetic ids), 2 threads: what limits a row's speed beyond its FLOPs.

    .venv/bin/python docs/benchmarks/scripts/ort_profile.py runs/budget_MRPC/export/dense/model.onnx
"""
import collections
import json
import os
import sys
import tempfile

import numpy as np
import onnxruntime

from deploy import inference

BATCH, SEQ, THREADS, RUNS, SHOWN = 32, 128, 2, 6, 8
ID_RANGE = (1000, 2000)  # ordinary word pieces of an uncased BERT vocabulary


def feeds_for(session):
    rng = np.random.RandomState(0)
    feeds = {}
    for spec in session.get_inputs():
        dtype = np.int32 if "int32" in spec.type else np.int64
        if "mask" in spec.name:
            feeds[spec.name] = np.ones((BATCH, SEQ), dtype)
        elif "segment" in spec.name:
            feeds[spec.name] = np.zeros((BATCH, SEQ), dtype)
        else:
            feeds[spec.name] = rng.randint(*ID_RANGE, (BATCH, SEQ)).astype(dtype)
    return feeds


def main(path):
    options = onnxruntime.SessionOptions()
    options.enable_profiling = True
    options.profile_file_prefix = os.path.join(tempfile.gettempdir(), "ort_profile")
    options.intra_op_num_threads = THREADS
    options.add_session_config_entry(inference.ORT_SPINNING_KEY, "0")
    # The graph our runtime runs (deploy.inference.OnnxRunner's session options).
    session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"],
                                           disabled_optimizers=list(inference.SLOWER_FUSIONS))
    feeds = feeds_for(session)
    for _ in range(RUNS):
        session.run(None, feeds)
    profile = session.end_profiling()
    with open(profile) as handle:
        events = json.load(handle)
    os.remove(profile)
    per_op = collections.Counter()
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            per_op[event["args"]["op_name"]] += event["dur"]
    total = sum(per_op.values())
    for op, micros in per_op.most_common(SHOWN):
        print(f"{op:24s} {100 * micros / total:5.1f}%")


if __name__ == "__main__":
    main(sys.argv[1])
