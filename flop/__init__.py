"""FLOP structured pruning as a method of the classifier."""
import bert  # noqa: F401  (first: it sets TensorFlow's log level before TensorFlow loads)
