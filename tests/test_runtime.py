"""What train and evaluate take from the command line and the params before anything runs: the
thread count (results on CPU depend on it, so both engines must use the same) and the seed."""

import pytest

from imgclf import runtime
from imgclf.errors import PipelineError


def test_threads_come_from_the_flag_then_the_experiment_then_the_machine():
    assert runtime.threads(3, {"threads": 1}) == 3  # Snakemake's --threads
    assert runtime.threads(None, {"threads": 2}) == 2  # a DVC run: the experiment's param
    assert runtime.threads(0, {"threads": 2}) == 2
    assert runtime.threads(None) == runtime.threads(None, {"threads": None}) == runtime.available_cores()  # prepare


def test_the_seed_is_the_flag_or_the_experiments_first():
    assert runtime.seed(None, {"seeds": [4, 5]}) == 4
    assert runtime.seed(5, {"seeds": [4, 5]}) == 5 and runtime.seed(0, {"seeds": [4]}) == 0
    with pytest.raises(PipelineError, match=r"^--seed: -1 is negative$"):
        runtime.seed(-1, {"seeds": [4]})
