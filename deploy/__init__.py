"""Shipping: export (SavedModel, ONNX, INT8), the compound model, the deployment benchmark."""
import bert  # noqa: F401  (first: it sets TensorFlow's log level before TensorFlow loads)
