# Two commands for a newcomer:  `make demo` (the main job end to end)  and  `make test`.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# GPU=1: TensorFlow with CUDA (tensorflow[and-cuda]) instead of the CPU-only wheel.
GPU ?= 0

.PHONY: setup demo test test-all benchmark clean

setup: $(STAMP)

# The project itself is installed editable (console scripts, method entry points) with the
# pinned requirements instead of its looser declared ones.
# requirements-nodeps.txt says why its packages are installed without their dependencies.
$(STAMP): requirements.txt requirements-nodeps.txt pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) (set PYTHON=...)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -r requirements-nodeps.txt
	$(PY) -m pip install --quiet --no-deps --editable .
	if [ "$(GPU)" = 1 ]; then $(PY) -m pip uninstall --quiet -y tensorflow-cpu && \
	  $(PY) -m pip install --quiet "tensorflow[and-cuda]==2.15.1"; fi
	touch $(STAMP)

demo: $(STAMP)
	PYTHON=$(PY) bash demo.sh

# CI's bounded set: every test but the long end-to-end ones marked `slow` (see pytest.ini).
test: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

test-all: $(STAMP)
	$(PY) -m pytest -q

benchmark: $(STAMP)
	$(PY) -m bert.benchmark --model_dir models/all-MiniLM-L6-v2

clean:
	rm -rf $(VENV) models demo_outputs
