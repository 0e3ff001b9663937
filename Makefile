# Two commands do everything on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
SAMPLE := resources/samples/digits_cnn.onnx

.PHONY: setup run test bench sample sample-vgg clean installer installer-test

setup: $(STAMP)

# Re-installs only when the project's dependency files change.
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

# Opens the desktop window on the bundled trained sample.
# First checks the system libraries Qt's xcb plugin needs (prints the install command if any
# are missing; QT_QPA_PLATFORM=offscreen skips it).
run: setup
	$(PY) -m app.qt_check
	$(VENV)/bin/modeldeck $(SAMPLE)

test: setup
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q

bench: setup
	$(PY) bench/inspect_bench.py

# Regenerates the sample model and its held-out data from scikit-learn's digits.
sample: setup
	$(PY) -m resources.samples.train_digits_cnn

# Regenerates the second sample (VGG-style CNN on digits at 32x32, ~0.45 GMAC, for optimize).
sample-vgg: setup
	$(PY) -m resources.samples.train_digits_vgg

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache

# The double-click install: a one-folder PyInstaller bundle dist/modeldeck/ and, on Linux,
# dist/modeldeck-linux-x86_64.tar.gz (runs without Python). See README "Install from the bundle".
installer: setup
	$(PY) -m pip install --quiet -c constraints.txt -e '.[installer]'
	installer/build.sh $(PY)

# Builds, then runs the frozen app headless: sample, profile on ONNX Runtime and OpenVINO,
# one pass, a report, the window offscreen. Not part of `make test` (the build takes minutes).
installer-test: installer
	rm -rf build/selftest
	QT_QPA_PLATFORM=offscreen env -u PYTHONPATH dist/modeldeck/modeldeck --self-test build/selftest
