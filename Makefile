# Two commands for a fresh machine with Python 3.11:
#   make demo   set up .venv and run the main job on data the project makes itself
#   make test   set up .venv and run the test suite (two pytest-xdist workers)
#   make test-fast  the suite without the tests marked slow, for the edit-test loop
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.requirements-installed

.PHONY: demo test test-fast benchmark clean

$(STAMP): requirements.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	@touch $(STAMP)

demo: $(STAMP)
	$(PY) -m launch.demo

# Two workers: most of a test's time is single-threaded XLA compilation, so two share the
# two cores of the CI machine well; they share one compilation cache (tests/conftest.py).
test: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist worksteal tests

test-fast: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist worksteal -m "not slow" tests

benchmark: $(STAMP)
	$(PY) -m launch.benchmark --config=configs/benchmark.py

clean:
	rm -rf $(VENV) work
