"""BERT-Pruning's core: one BERT, the classifier library, and what every method shares."""
import os

# TF's C++ start-up notices (oneDNN, CPU features) are INFO lines on stderr in every command;
# keep warnings and errors. Set before TensorFlow is first imported; a user's setting wins.
TF_CPP_INFO_HIDDEN = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", TF_CPP_INFO_HIDDEN)
