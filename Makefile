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
# from scratch (COCO box/mask mAP after every epoch), then evaluate the last
# checkpoint and draw its predictions; the last lines say where they are.
# PyTorch gets the cores that are free now (DEMO_THREADS overrides): a
# multi-threaded step that shares its cores with another busy process waits
# on descheduled threads and runs up to 10x slower than a one-thread step.
demo: install
	@threads=$${DEMO_THREADS:-$$($(PY) -c 'import os; \
	print(max(1, len(os.sched_getaffinity(0)) - round(os.getloadavg()[0])))')}; \
	echo "[mmvmamba] demo: $$threads PyTorch CPU thread(s) (DEMO_THREADS=N to change)"; \
	export OMP_NUM_THREADS=$$threads; set -e; start=$$(date +%s); \
	$(PY) tools/train.py $(DEMO_CFG) --work-dir $(DEMO_DIR); \
	$(PY) tools/test.py $(DEMO_CFG) $$(cat $(DEMO_DIR)/last_checkpoint) \
		--work-dir $(DEMO_DIR)/test --show-dir predictions; \
	train=$$(ls -td $(DEMO_DIR)/20*/ | head -1); \
	test=$$(ls -td $(DEMO_DIR)/test/20*/ | head -1); \
	echo; echo "[mmvmamba] demo done in $$(( $$(date +%s) - start )) s; COCO mAP on the validation images:"; \
	grep -hE "Epoch\(val\) \[[0-9]+\]\[[0-9]+/[0-9]+\] +coco/bbox_mAP" $${train}*.log \
		| sed -E 's/.*Epoch\(val\) \[([0-9]+)\].*coco\/bbox_mAP: ([0-9.]+) .*coco\/segm_mAP: ([0-9.]+) .*/  after epoch \1: box \2  mask \3/'; \
	echo "  metrics:  $${test}$$(basename $$test).json (final), $${train}vis_data/scalars.json (training curves)"; \
	echo "  pictures: $${test}predictions/ (final), $${train}vis_data/vis_image/ (during training)"

lint: install
	$(PY) -m flake8 mmvmamba kernels tools tests configs
