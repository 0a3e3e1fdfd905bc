"""The benchmark suite runs: ``python -m bench --quick --json`` prints well-formed rows with finite
positive ratios (timings themselves are never asserted: they belong to ``bench/results.md``)."""
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
KEYS = {"case", "shape", "dtype", "threads", "baseline", "ratio"}


@pytest.fixture(scope="module")
def rows():
    done = subprocess.run([sys.executable, "-m", "bench", "--quick", "--json"], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_rows_are_well_formed(rows):
    assert rows and all(KEYS <= set(row) for row in rows)
    assert all(row["threads"] == 1 for row in rows)  # measured with torch.set_num_threads(1)


def test_every_case_measured_a_finite_positive_ratio(rows):
    broken = [row for row in rows if not row["available"]]
    assert not broken, broken
    assert all(isinstance(row["ratio"], float) and math.isfinite(row["ratio"])
               and row["ratio"] > 0 for row in rows)


def test_quick_run_covers_the_cases_of_the_issue(rows):
    cases = " ".join(row["case"] for row in rows)
    for expected in ("batchnorm backward (bessel) torch", "batchnorm backward (biased) torch",
                     "batchnorm backward (bessel) numpy", "cross-entropy", "makemore",
                     "gated MLP", "derive+emit tanh+batchnorm MLP", "tanh chain",
                     "derive derivations/", "bytes allocated", "layer GRU cell",
                     "layer causal attention", "layer LayerNorm"):
        assert expected in cases, expected
    baselines = {row["baseline"] for row in rows}
    assert {"ATen native_batch_norm_backward", "F.cross_entropy + autograd",
            "hand-written numpy with out="} <= baselines


def test_a_failing_case_becomes_an_unavailable_row(monkeypatch):
    from bench import __main__ as runner

    class Broken:
        @staticmethod
        def cases(quick, repeat):
            return [("broken case", lambda: 1 / 0)]

    monkeypatch.setattr(runner, "MODULES", (Broken,))
    (row,) = runner.run(quick=True)
    assert row.case == "broken case" and row.ratio is None and not row.available
    assert "ZeroDivisionError" in row.note


def test_allocations_count_fresh_operator_results_once():
    """``bench.memory.allocated``: a new tensor counts its bytes; a view, an in-place update and
    an ``out=`` result count nothing; autograd's backward is seen too."""
    import torch

    from bench.memory import allocated

    x = torch.ones(1000)
    buffer = torch.empty(1000)
    assert allocated(lambda: x * 2) == 4000
    assert allocated(lambda: (x[:10], x.view(10, 100), buffer.add_(1),
                              torch.mul(x, 2, out=buffer))) == 0
    assert allocated(lambda: x.to_sparse()) == 0  # sparse: not counted, and no crash
    assert allocated(lambda: torch.empty(0).set_(x.untyped_storage())) == 0  # an alias
    leaf = torch.ones(1000, requires_grad=True)
    assert allocated(lambda: torch.autograd.grad((leaf * 3).sum(), leaf)) >= 2 * 4000
