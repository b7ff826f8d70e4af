# Two entry points for a fresh clone: `make run` (the whole pipeline on the embedded sample)
# and `make test`. Both create .venv with the pinned stack first.
VENV := .venv
STAMP := $(VENV)/.installed
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
CORES ?= all

.PHONY: run test test-fast dvc-run sync pull clean

$(STAMP): pyproject.toml requirements.lock
	python3.11 -m venv $(VENV) 2>/dev/null || python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -c requirements.lock -e '.[test]'
	touch $@

run: $(STAMP)
	snakemake --cores $(CORES)

dvc-run: $(STAMP)
	dvc repro

# After `dvc repro`, `dvc pull`, `dvc exp run` or a git checkout: if DVC finds every stage up to
# date (outputs match their deps by content), tell Snakemake so: touch the outputs in DAG order
# and refresh its params records, so it does not rerun anything because of file times.
sync: $(STAMP)
	@dvc status --quiet || { echo "dvc status is not clean: run 'dvc repro' (or 'make run') first"; exit 1; }
	snakemake --touch --cores 1 --quiet

pull: $(STAMP)
	dvc pull
	$(MAKE) sync

test: $(STAMP)
	pytest -q -ra

test-fast: $(STAMP)
	pytest -q -ra -m "not slow"

clean:
	rm -rf .snakemake logs .resume data/sample data/raw data/prepared models/*/ reports/*/ reports/results.*
