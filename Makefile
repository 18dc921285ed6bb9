# The two commands of the README: `make demo` (main job) and `make test` (tests).
# Both set up .venv first (tools/install.sh; quick when already done).
PY := .venv/bin/python
PYTEST_ARGS ?= -q

.PHONY: install test demo lint

install:
	bash tools/install.sh

test: install
	$(PY) -m pytest tests $(PYTEST_ARGS)

demo: install
	$(PY) -m pytest tests/test_engine/test_resume.py -q

lint: install
	$(PY) -m flake8 mmvmamba kernels tools tests configs
