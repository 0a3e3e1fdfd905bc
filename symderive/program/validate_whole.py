"""Validation of a program as a whole, mixed into ``validate.Checker``: its outputs, the adjoint
names the backward will use, the divisions by sizes that can be 0, and the memory its example
sizes ask ``check`` to allocate."""
from __future__ import annotations

import sympy as sp
from sympy.concrete.expr_with_limits import ExprWithLimits

from .ir import (
    free_indices,
    idx_size,
    indices_of,
    name_of,
)
from .names import RESERVED, derived_names
from .validate_names import _describe

# Example sizes are what ``check`` allocates: more elements than this in the inputs, statements
# and the largest intermediate a statement implies is refused rather than exhausting memory.
MEMORY_BUDGET = 2**26


class WholeProgramChecks:
    """Outputs, adjoint names, divisors and memory."""

    # -- outputs and adjoints --------------------------------------------------------------------
    def check_outputs(self):
        outputs = self.p.outputs
        if not outputs:
            self.fail("outputs", "declare the output with .loss(name) or .output(name, ...)")
        for position, name in enumerate(outputs):
            if name in outputs[:position]:
                self.fail("outputs", f"'{name}' is declared as an output twice; name it once")
            kind = self.kinds.get(name)
            if kind in ("a size", "a constant", "an index"):
                self.fail("outputs", f"'{name}' is {kind}, not a value a statement computes; "
                          "declare a statement's name as the output")
            if self.defined.get(name) == "input":
                self.fail("outputs", f"'{name}' is an input; an output must be computed by a "
                          f"statement (copy it, e.g. out[...] = {name}[...], if you need it)")
            if name not in self.defined:
                self.fail("outputs", f"output '{name}' is not defined by any statement")
        if self.p.loss and indices_of(self.p.lhs(outputs[0])):
            self.fail("loss", f"the loss '{outputs[0]}' must be a scalar (no indices); "
                      "sum or average it over its indices")
        floats = {x.name for x in self.p.inputs if not x.integer}
        if not floats:
            self.fail("inputs", "the program has no float input to differentiate; declare one "
                      "with .input(name[indices])")
        depends = self.dependencies()
        if self.p.loss and not depends[outputs[0]]:
            self.fail("loss", f"the loss '{outputs[0]}' does not depend on any float input "
                      f"({', '.join(sorted(floats))}), so it has no gradient; compute it from them")
        if not any(depends[name] for name in outputs):
            self.fail("outputs", "no output depends on a float input "
                      f"({', '.join(sorted(floats))}), so there is no gradient; compute an output "
                      "from them")

    def dependencies(self) -> dict[str, set]:
        """The float inputs each name depends on (through the values it reads, not labels)."""
        depends = {x.name: set() if x.integer else {x.name} for x in self.p.inputs}
        for s in self.p.body:
            reads = {name_of(a) for a in s.rhs.atoms(sp.Indexed)}
            reads |= {a.name for a in s.rhs.atoms(sp.Symbol)}
            found = set().union(*(depends.get(name, set()) for name in reads))
            depends[s.name] = depends.get(s.name, set()) | found
        return depends

    def check_adjoint_names(self):
        """The emitted code names each float array's adjoint (and, for a program the double
        backward is derived from, its first-order gradient and that gradient's adjoint) after
        it: such a name must be free, neither another program name nor one in ``RESERVED``."""
        for name, kind in list(self.kinds.items()):
            if kind != "an array" or self.p.integer(name):
                continue  # a label has no adjoint
            roles = (f"the adjoint of '{name}' in the backward",
                     f"the gradient of '{name}' in the double backward",
                     f"the adjoint of the gradient of '{name}' in the double backward")
            for derived, role in zip(derived_names(name, self.double), roles):
                if derived in self.kinds:
                    self.fail(f"name '{derived}'", f"{derived} is {self.kinds[derived]} whose "
                              f"name clashes with {role}; rename it")
                if derived in RESERVED:
                    self.fail(self.where_array(name), f"{role} would be named '{derived}', which "
                              f"the emitted module already uses; rename the array '{name}'")

    def where_array(self, name: str) -> str:
        found = self.p.input(name)
        if found is not None:
            return self.where_input(found)
        return self.where(next(s for s in self.p.body if s.name == name))

    def check_adjoints(self):
        adjoints = self.p.adjoints
        if adjoints in ("all", "inputs"):
            return
        if isinstance(adjoints, str) or not isinstance(adjoints, tuple):
            self.fail("adjoints", f"adjoints={adjoints!r} is not 'all', 'inputs' or a tuple of "
                      "names")
        for name in adjoints:
            if not isinstance(name, str):
                self.fail("adjoints", f"adjoints= takes names as strings, e.g. ('h',), not "
                          f"{_describe(name)}")
            if name not in self.defined:
                self.fail("adjoints", f"'{name}' is not an input or a statement of this program")
            if self.p.integer(name):
                self.fail("adjoints", f"'{name}' is an integer label; it has no adjoint")

    def check_divisors(self):
        """Refuse example sizes (and constants) under which a statement divides by zero, such as
        Bessel's 1/(n - 1) at n = 1: check would have no finite value to compare, and the
        fix is another example size, not other example values."""
        values = {**self.sizes, **dict(self.p.constants)}
        shown = ", ".join(f"{s}={v}" for s, v in values.items())
        for s in self.p.body:
            for power in s.rhs.atoms(sp.Pow):
                base, exponent = power.args
                if exponent.is_negative and base.free_symbols and \
                        base.free_symbols <= set(values) and base.xreplace(values) == 0:
                    self.fail(self.where(s), f"it divides by {base}, which is 0 at the example "
                              f"values ({shown}); choose example sizes where it is not, e.g. "
                              "a larger one (sizes stay symbolic in the emitted code)")

    # -- memory ----------------------------------------------------------------------------------
    def check_memory(self):
        """Refuse example sizes whose arrays, with the largest intermediate a statement implies,
        exceed the budget."""
        def count(sizes) -> int:
            total = 1
            for size in sizes:
                total *= int(sp.sympify(size).xreplace(self.sizes))
            return total

        def widest(expr) -> int:
            """The most elements a naive evaluation of ``expr`` spans: free and bound indices."""
            here = [k for k in free_indices(expr.function if isinstance(expr, ExprWithLimits)
                                            else expr)]
            best = count(idx_size(k) for k in here)
            return max([best] + [widest(arg) for arg in expr.args if isinstance(arg, sp.Expr)
                                 and not isinstance(arg, (sp.Idx, sp.Indexed))])

        total = 0
        shown = ", ".join(f"{s}={v}" for s, v in self.sizes.items())
        for x in self.p.inputs:
            total += count(self.p.shape(x.name))
            if total > MEMORY_BUDGET:
                self.fail(self.where_input(x), self.too_big(total, shown))
        for s in self.p.body:
            total += count(self.p.shape(s.name)) if not s.accumulate else 0
            largest = widest(s.rhs)
            if total + largest > MEMORY_BUDGET:
                self.fail(self.where(s), self.too_big(total + largest, shown))

    @staticmethod
    def too_big(elements: int, shown: str) -> str:
        return (f"at the example sizes ({shown}) it needs about {elements:,} array elements, more "
                f"than symderive allocates ({MEMORY_BUDGET:,}); choose smaller example sizes in "
                "sizes={...} (sizes stay symbolic in the emitted code)")
