"""Shared test fixtures: where the real GLUE data and the real pretrained model live."""
import importlib.util
import os
import pathlib

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
SHARED_DIR = REPO_ROOT.parent / "shared"


def load_downloader():
    """datasets/download_glue.py, imported by its path: datasets/ is a data folder, not a
    package, and the script runs before the project's environment exists."""
    spec = importlib.util.spec_from_file_location(
        "download_glue", REPO_ROOT / "datasets" / "download_glue.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _dir_from_env(variable, default):
    return pathlib.Path(os.environ.get(variable, str(default)))


@pytest.fixture(scope="session")
def glue_dir():
    """Real GLUE tsv files (BERT_PRUNING_GLUE_DIR, default ../shared/glue); skips when absent."""
    path = _dir_from_env("BERT_PRUNING_GLUE_DIR", SHARED_DIR / "glue")
    if not path.is_dir():
        pytest.skip(f"real GLUE data not found at {path} (set BERT_PRUNING_GLUE_DIR)")
    return path


@pytest.fixture(scope="session")
def hf_model_dir():
    """The real all-MiniLM-L6-v2 in HuggingFace format (BERT_PRUNING_MODEL_DIR); skips when absent."""
    path = _dir_from_env("BERT_PRUNING_MODEL_DIR", SHARED_DIR / "models" / "all-MiniLM-L6-v2")
    if not (path / "model.safetensors").is_file():
        pytest.skip(f"pretrained model not found at {path} (set BERT_PRUNING_MODEL_DIR)")
    return path
