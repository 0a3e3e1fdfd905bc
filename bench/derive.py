"""How long each derivation takes (the ``seconds`` of ``symderive derive --json``), against SymPy's
own ``diff`` of the same forward, fully inlined, run in the same process. SymPy's result is the
unsimplified KroneckerDelta sum; ours is the compact form, so the ratio is the price of the rules.

    python bench/derive.py
"""
import statistics
import time
from pathlib import Path

import sympy as sp

from symderive.derivation import load
from symderive.ir import name_of
from symderive.simplify import derive_gradients

DERIVATIONS = Path(__file__).resolve().parent.parent / "derivations"


def inlined_output(program) -> sp.Expr:
    """The output written in terms of the inputs alone, as SymPy alone would see the layer."""
    expr = program.lhs(program.outputs[0])
    for statement in reversed(program.body):
        mapping = {}
        for read in expr.atoms(sp.Indexed):
            if name_of(read) == statement.name:
                mapping[read] = statement.rhs.xreplace(dict(zip(statement.lhs.indices, read.indices)))
        expr = expr.xreplace(mapping) if mapping else expr
        if isinstance(statement.lhs, sp.Symbol) and expr == statement.lhs:
            expr = statement.rhs
    return expr


def sympy_diff(program):
    out = inlined_output(program)
    return [sp.diff(out, sp.IndexedBase(x.name)[tuple(sp.Idx(f"{k}_", k.upper + 1)
                                                      for k in x.indices)])
            for x in program.inputs if not x.integer]


def median_seconds(function, repeat: int = 3) -> float:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main():
    print(f"{'derivation':22} {'ours (s)':>9} {'sympy.diff (s)':>15} {'ratio':>6} "
          f"{'ours ops':>9} {'sympy ops':>10}")
    for name in ("cross_entropy", "batchnorm", "batchnorm_biased", "layernorm",
                 "makemore_mlp_layers"):
        program = load(DERIVATIONS / f"{name}.py")
        ours = median_seconds(lambda program=program: derive_gradients(program))
        baseline = median_seconds(lambda program=program: sympy_diff(program))
        ops = sum(sp.count_ops(g.expr) for g in derive_gradients(program))
        sympy_ops = sum(sp.count_ops(d) for d in sympy_diff(program))
        print(f"{name:22} {ours:9.3f} {baseline:15.3f} {ours / baseline:6.2f} {ops:9} "
              f"{sympy_ops:10}")


if __name__ == "__main__":
    main()
