# The two commands of the README: `make demo` (main job) and `make test` (tests).
# Both set up .venv first (tools/install.sh; quick when already done).
PY := .venv/bin/python
PYTEST_ARGS ?= -q

.PHONY: install test demo lint

install:
	bash tools/install.sh

test: install
	$(PY) -m pytest tests $(PYTEST_ARGS)

DEMO_CFG := configs/demo/maskrcnn_vmamba_t_demo-shapes.py
DEMO_DIR := work_dirs/maskrcnn_vmamba_t_demo-shapes

# Main job: generate the demo shapes set, train Mask R-CNN + VMamba-T on it
# (COCO box/mask mAP every 3 epochs), then evaluate the last checkpoint and
# draw its predictions into $(DEMO_DIR)/<timestamp>/predictions/.
demo: install
	$(PY) tools/train.py $(DEMO_CFG) --work-dir $(DEMO_DIR)
	$(PY) tools/test.py $(DEMO_CFG) $$(cat $(DEMO_DIR)/last_checkpoint) \
		--work-dir $(DEMO_DIR) --show-dir predictions

lint: install
	$(PY) -m flake8 mmvmamba kernels tools tests configs
