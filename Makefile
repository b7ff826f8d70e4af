# Two entry points for a fresh clone: `make run` (the whole pipeline on the embedded sample)
# and `make test`. Both create .venv with the pinned stack first.
VENV := .venv
STAMP := $(VENV)/.installed
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
CORES ?= all

.PHONY: run report test test-fast mutate dvc-run sync pull clean

$(STAMP): pyproject.toml requirements.lock
	python3.11 -m venv $(VENV) 2>/dev/null || python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -c requirements.lock -e '.[test]'
	touch $@

run: $(STAMP)
	snakemake --cores $(CORES)

# Snakemake's self-contained HTML report of the finished run: the results table and every figure,
# with each rule's code, params and runtimes (open reports/report.html in a browser)
report: $(STAMP)
	snakemake --report reports/report.html

# the params and any folder source checked first, by the project's own reader: DVC reads both
# itself before any stage runs (a params file whose YAML aliases expand to billions of values
# exhausts its memory; a FIFO in a folder source stalls its hashing)
dvc-run: $(STAMP)
	imgclf check-params
	dvc repro

# After `dvc repro`, `dvc pull`, `dvc exp run` or a git checkout: if DVC finds every stage up to
# date (outputs match their deps by content), tell Snakemake so: touch the outputs in DAG order,
# so it does not rerun anything because of file times. `imgclf tidy` refuses files dated in the
# future (Snakemake would remove outputs as clock skew; --keep-incomplete too keeps what a failed
# touch would remove) and removes what killed runs left beside the outputs (DVC may restore an
# output from its run cache without running the stage that would have removed them).
sync: $(STAMP)
	@imgclf check-params > /dev/null
	@dvc status --quiet || { echo "dvc status is not clean: run 'dvc repro' (or 'make run') first"; exit 1; }
	imgclf tidy
	snakemake --touch --keep-incomplete --cores 1 --quiet

pull: $(STAMP)
	dvc pull
	$(MAKE) sync

# Two pytest-xdist workers: the shared pipeline run and every test of it on one, the other
# modules on the other (the scheduler is in tests/conftest.py).
test: $(STAMP)
	pytest -q -ra -n 2 --random-order-bucket=module

test-fast: $(STAMP)
	pytest -q -ra -m "not slow" --random-order-bucket=module

# Mutation testing of the cores that decide numbers and reruns ([tool.mutmut] in pyproject.toml): prints
# mutmut's last lines, the score per module and every surviving mutant with its reason, records them
# in bench/records/mutation-<date>.log (with the digest of what it scored, which
# `python tools/mutation_score.py --check` and the suite compare with the work tree), and fails when
# mutmut fails, a target is missed or a survivor has no reason. MUTANTS='imgclf.evaluate.*' runs and
# scores only the mutants it matches, and records nothing. CI=true: Hypothesis's derandomized profile, so a
# rerun of the same tree gives the same record.
mutate: $(STAMP)
	$(VENV)/bin/pip install --quiet -c requirements.lock -e '.[mutate]'
	rm -rf mutants
	mkdir -p logs
	python tools/mutation_score.py --digest > logs/mutation-digest
	CI=true IMGCLF_SLURM=off mutmut run --max-children $(or $(JOBS),2) $(if $(MUTANTS),'$(MUTANTS)') > logs/mutmut.log 2>&1; \
	  status=$$?; tr '\r' '\n' < logs/mutmut.log | grep -v '^\s*$$' | tail -n 5; exit $$status
	python tools/mutation_score.py $(if $(MUTANTS),--only '$(MUTANTS)',--record bench/records/mutation-$$(date +%F).log --scored $$(cat logs/mutation-digest))

clean:
	rm -rf mutants .snakemake logs .resume data/sample data/raw data/prepared models/*/ reports/*/ reports/results.*
