# The two commands of the README: `make demo` (main job) and `make test` (tests).
# Both set up .venv first (tools/install.sh; quick when already done).
PY := .venv/bin/python
PYTEST_ARGS ?= -q

.PHONY: install test demo lint

install:
	bash tools/install.sh

test: install
	$(PY) -m pytest tests $(PYTEST_ARGS)

# Main job: Mask R-CNN + VMamba-T trained on the embedded demo dataset, then
# evaluated and drawn (tools/demo.py says where everything is).
demo: install
	$(PY) tools/demo.py

lint: install
	$(PY) -m flake8 mmvmamba kernels tools tests configs
