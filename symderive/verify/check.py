"""Checking emitted code against references that share nothing with it: build seeded example
inputs from the sizes and domains the derivation declares; compute every forward value with the
oracle (``oracle``, straight from the index expressions, float64) and every gradient by torch
autograd through it (every intermediate retains its gradient); run the emitted torch and NumPy
forward and backward, and the emitted ``autograd.Function``, end to end; compare value by value
as makemore's ``cmp`` does (exact, ``allclose`` with its defaults, max difference); and check each
float input's gradient against central finite differences of the oracle's loss in float64.
"""
from __future__ import annotations

import types
from dataclasses import asdict, dataclass

import numpy as np
import sympy as sp
import torch

from ..algebra.grad import backward
from ..algebra.simplify import derive_backward
from ..codegen.emit import module_source
from ..program.ir import Assign, Program, ProgramError, lhs_index_set, with_body
from ..program.ops import OPS
from . import oracle

TARGETS = ("torch", "numpy")
RTOL, ATOL = 1e-5, 1e-8  # torch.allclose's defaults, as makemore's cmp uses them
# central differences: the step, relative to the input's magnitude, about float64's epsilon**(1/3)
# (it balances truncation against rounding: ~1e-10 of the terms in practice), and the tolerance
FD_STEP, FD_RTOL = 3e-6, 1e-6
FD_NOISE = 10 * torch.finfo(torch.float64).eps  # L's rounding, per unit of its weighted terms
ORACLE, FINITE_DIFFERENCES = "oracle", "finite differences"
DTYPES = {"float32": torch.float32, "float64": torch.float64}


@dataclass(frozen=True)
class Row:
    name: str
    target: str
    exact: bool
    approximate: bool
    maxdiff: float
    relmaxdiff: float
    reference: str = ORACLE

    def line(self) -> str:
        return (f"{self.name:15s} | exact: {self.exact!s:5} | "
                f"approximate: {self.approximate!s:5} | maxdiff: {self.maxdiff}")


@dataclass(frozen=True)
class Report:
    derivation: str
    dtype: str
    rows: tuple[Row, ...]  # gradients: each target's against each reference
    forward: tuple[Row, ...] = ()  # forward values: each target's against the oracle or a reference

    @property
    def ok(self) -> bool:
        return all(row.approximate for row in self.rows + self.forward)

    def as_json(self) -> dict:
        return {"derivation": self.derivation, "dtype": self.dtype, "ok": self.ok,
                "rows": [asdict(row) for row in self.rows],
                "forward": [asdict(row) for row in self.forward]}

    def __repr__(self) -> str:
        return self.table()

    def table(self) -> str:
        lines = []
        for rows, what in ((self.rows, "backward"), (self.forward, "forward")):
            for reference, target in dict.fromkeys((r.reference, r.target) for r in rows):
                section = [r for r in rows if (r.reference, r.target) == (reference, target)]
                against = {ORACLE: f"the oracle{' under torch autograd' * (what == 'backward')}",
                           FINITE_DIFFERENCES: "central finite differences"}.get(reference,
                                                                                  reference)
                dtype = "float64" if reference == FINITE_DIFFERENCES else self.dtype
                lines.append(f"{self.derivation}: emitted {target} {what} vs {against} ({dtype})")
                lines.extend(row.line() for row in section)
        verdict = "all approximately equal" if self.ok else "SOME VALUES DIFFER"
        lines.append(f"{self.derivation}: {len(self.rows) + len(self.forward)} rows, {verdict}")
        return "\n".join(lines)


def load_module(source: str, name: str) -> types.ModuleType:
    """Execute emitted source as a fresh module."""
    module = types.ModuleType(name)
    exec(compile(source, f"<generated {name}>", "exec"), module.__dict__)  # noqa: S102
    return module


def concrete_shape(program: Program, name: str) -> tuple[int, ...]:
    sizes = program.example_sizes()
    lhs = program.lhs(name)
    if not isinstance(lhs, sp.Indexed):
        return ()
    return tuple(int(sp.sympify(size).subs(sizes)) for size in program.shape(name))


def example_inputs(program: Program, dtype: torch.dtype, seed: int) -> dict[str, torch.Tensor]:
    """Seeded example values for every input, from the derivation's declared sizes and domains."""
    generator = torch.Generator().manual_seed(seed)
    sizes = program.example_sizes()
    values = {}
    for x in program.inputs:
        shape = concrete_shape(program, x.name)
        if x.integer:
            classes = int(sp.sympify(x.classes).subs(sizes))
            values[x.name] = torch.randint(0, classes, shape, generator=generator)
        elif x.init.kind == "uniform":
            values[x.name] = x.init.low + (x.init.high - x.init.low) * torch.rand(
                shape, generator=generator, dtype=dtype)
        else:
            values[x.name] = x.init.low + x.init.high * torch.randn(
                shape, generator=generator, dtype=dtype)
    return values


def upstream_adjoints(program: Program, dtype: torch.dtype, seed: int) -> list[torch.Tensor]:
    """Random upstream adjoints for a layer's outputs (a loss has adjoint 1 and needs none)."""
    if program.loss:
        return []
    generator = torch.Generator().manual_seed(seed + 1)
    return [torch.randn(concrete_shape(program, name), generator=generator, dtype=dtype)
            for name in program.outputs]


def compare(name: str, target: str, ours, reference: torch.Tensor, scale,
            label: str = "oracle", allowance=0.0) -> Row:
    """One ``cmp`` row. ``scale`` (a number or an array like ``reference``) is the magnitude the
    difference is measured against: the sum of |terms| for a gradient, |value| for a forward;
    ``allowance`` (elementwise) is added to the tolerance (``stress_rows``)."""
    if isinstance(ours, np.ndarray | np.generic):
        ours = torch.from_numpy(np.array(ours))  # a copy: broadcast views are read-only
    ours = torch.as_tensor(ours)
    # a float64 result from float32 inputs, or a gradient of the wrong shape, is a failure too
    kind_ok = ours.dtype == reference.dtype and ours.shape == reference.shape
    ours = torch.broadcast_to(ours.to(reference.dtype), reference.shape)
    difference = (ours - reference).abs()
    maxdiff = difference.max().item() if difference.numel() else 0.0
    scale = torch.maximum(reference.abs(), torch.as_tensor(scale, dtype=reference.dtype))
    # torch.allclose's test with its defaults, except that the relative part is taken against the
    # magnitude of the terms: an element that is small only because terms cancelled is held to
    # 1e-5 of the terms, not of its own rounding noise.
    allowance = torch.as_tensor(allowance, dtype=reference.dtype)
    approximate = kind_ok and bool(torch.all(difference <= ATOL + RTOL * scale + allowance)) \
        and not ours.isnan().any()
    largest = scale.max().item() if scale.numel() else 0.0
    return Row(name, target, bool(torch.equal(ours, reference)), approximate, maxdiff,
               maxdiff / largest if largest else 0.0, label)


def magnitude(tensor) -> float:
    tensor = torch.as_tensor(tensor)
    return tensor.abs().max().item() if tensor.numel() else 0.0


def _abs(expr: sp.Expr) -> sp.Expr:
    return sp.Abs(expr, evaluate=False)  # evaluated, Abs(exp(x)) becomes exp(re(x))


def _bound(expr: sp.Expr, adjoints: set[str]) -> sp.Expr:
    """``expr`` with every term made non-negative: forward values by their absolute value,
    adjoints by their own bounds, so sums add magnitudes instead of cancelling."""
    if isinstance(expr, (sp.Indexed, sp.Symbol)):
        return expr if str(expr.base.label if isinstance(expr, sp.Indexed) else expr) in adjoints \
            else _abs(expr)
    if expr.is_Number:
        return abs(expr)
    if isinstance(expr, sp.KroneckerDelta):
        return expr
    if isinstance(expr, (sp.Add, sp.Mul)):
        return expr.func(*[_bound(arg, adjoints) for arg in expr.args])
    if isinstance(expr, sp.Pow):
        base, exponent = expr.args
        return _bound(base, adjoints) ** exponent if exponent.is_positive else \
            _abs(base) ** exponent
    if isinstance(expr, sp.Sum):
        return sp.Sum(_bound(expr.function, adjoints), *expr.limits)
    return _abs(expr)  # a function's value, a maximum: its magnitude


def _autograd(forward, program: Program, inputs: dict, upstream: list) -> tuple[dict, dict]:
    """Every value ``forward(leaves)`` returns by name, and its gradient by torch autograd: the
    outputs' adjoints are ``upstream`` (1 for a loss); intermediates retain their gradients."""
    leaves = {name: value.clone().requires_grad_(value.is_floating_point())
              for name, value in inputs.items()}
    values = forward(leaves)
    for name, value in values.items():
        if name not in leaves and value.requires_grad:
            value.retain_grad()
    roots = [(values[name], g) for name, g in zip(program.outputs, upstream or [None])
             if values[name].requires_grad]
    if roots:
        torch.autograd.backward([r for r, _ in roots], [g for _, g in roots] if upstream else None)
    grads = {}
    for name, value in values.items():
        tensor = leaves.get(name, value)
        grads[name] = tensor.grad if tensor.grad is not None else torch.zeros_like(tensor)
    return {name: value.detach() for name, value in values.items()}, grads


def oracle_gradients(program: Program, inputs: dict, upstream: list) -> tuple[dict, dict]:
    """Every value by the oracle and every gradient by autograd through it, in float64."""
    return _autograd(lambda leaves: oracle.evaluate(program, leaves), program,
                     _float64(inputs), [g.double() for g in upstream])


def autograd_gradients(module, program: Program, inputs: dict, upstream: list) -> dict:
    """Gradients of every value by torch autograd through an emitted ``module.forward``."""
    return _autograd(lambda leaves: module.forward(*leaves.values()), program, inputs,
                     upstream)[1]


def _float64(values: dict) -> dict:
    return {name: value.double() if value.is_floating_point() else value
            for name, value in values.items()}


def _drawn(init) -> str:
    if init.kind == "uniform":
        return f"uniform({init.low}, {init.high})"
    return f"normal({init.high})" if init.low == 0 else f"normal({init.high}, mean={init.low})"


def _domain_error(program: Program, statement: Assign, overflow: bool = False) -> ProgramError:
    """The first statement whose oracle value is not finite, and which inputs to draw elsewhere;
    ``overflow`` when the value is infinite though its inputs are finite (``exp(exp(x))``)."""
    depends: dict[str, set] = {x.name: {x.name} for x in program.inputs if not x.integer}
    for s in program.body:
        read = {str(a.base.label) for a in s.rhs.atoms(sp.Indexed)} | {
            a.name for a in s.rhs.atoms(sp.Symbol)}
        depends[s.name] = depends.get(s.name, set()).union(*(depends.get(r, set()) for r in read))
        if s is statement:
            break
    inputs = [x for x in program.inputs if x.name in depends[statement.name]]
    risky = list(dict.fromkeys(  # functions with a restricted domain: log, x**(1/2), x**-1
        OPS[type(f)].name for f in sp.preorder_traversal(statement.rhs) if type(f) in OPS
        and not (isinstance(f, sp.Pow) and f.exp.is_integer and f.exp.is_nonnegative)))
    where = f"inside {risky[0]}'s domain" if len(risky) == 1 else \
        f"inside the domains of {' and '.join(risky)}" if risky else "where it is finite"
    names = " and ".join(x.name for x in inputs)
    drawn = "; ".join(f"{x.name} is drawn from {_drawn(x.init)}" for x in inputs)
    advice = f"declare {names} with uniform(...) {where}, e.g. uniform(0.5, 2.0)" if inputs \
        else "change the statement"
    if overflow:
        return ProgramError(f"{program.name}: statement '{statement}' overflows to infinity in "
                            f"float64 on the example values{f' ({drawn})' if drawn else ''}; "
                            f"draw {names or 'the inputs'} from a narrower range or rescale "
                            "the statement")
    return ProgramError(f"{program.name}: statement '{statement}' is not finite on the example "
                        f"values{f' ({drawn})' if drawn else ''}; {advice}")


def _first_not_finite(program: Program, values: dict) -> None:
    for statement in program.body:
        value = values[statement.name]
        if not torch.isfinite(value).all():
            raise _domain_error(program, statement, overflow=not value.isnan().any())


def term_magnitudes(program: Program, values: dict, upstream: list) -> dict:
    """For each gradient, elementwise, the sum of the magnitudes of the terms the chain rule adds
    to form it: what rounding errors are proportional to. A gradient that is analytically zero
    (b1 under batchnorm, the max shift of a softmax) is rounding noise in every implementation;
    it is measured against the terms whose cancellation produced it, not against its own noise.
    Computed by the oracle on the atomic backward with every term made non-negative, in float64."""
    chain = backward(program)
    adjoints = {s.name for s in chain.body} | {x.name for x in chain.inputs
                                               if x.name not in program.names}
    bounds = with_body(chain, [Assign(s.lhs, _bound(s.rhs, adjoints), s.accumulate)
                               for s in chain.body])
    arrays = _float64(values) | {"d" + name: g.double().abs()
                                 for name, g in zip(program.outputs, upstream)}
    with torch.no_grad():
        found = oracle.evaluate(bounds, arrays)
    return {name[1:]: found[name] for name in chain.outputs}


def reference_gradients(forward, program: Program, inputs: dict, upstream: list):
    """Outputs and input gradients of an independent torch forward, by autograd, computed in
    float64 from the same (already rounded) inputs and rounded to their dtype at the end, as the
    oracle's are: a float32 check then measures the emitted code's rounding, not the reference's
    own (torch's tanhshrink backward computes ``1 - (1 - tanh(x)**2)``, which loses the digits of
    small values)."""
    working = next((v.dtype for v in inputs.values() if v.is_floating_point()), torch.float64)
    leaves = {name: (value.double() if value.is_floating_point() else value.clone())
              .requires_grad_(value.is_floating_point()) for name, value in inputs.items()}
    outputs = forward(*leaves.values())
    outputs = list(outputs) if isinstance(outputs, (tuple, list)) else [outputs]
    torch.autograd.backward(outputs, [g.double() for g in upstream] or None)
    grads = {name: leaf.grad.to(working) for name, leaf in leaves.items() if leaf.grad is not None}
    return dict(zip(program.outputs, (o.detach().to(working) for o in outputs))), grads


CREATE_GRAPH = "function (create_graph)"


def function_rows(module, program: Program, inputs: dict, upstream: list, exact: dict,
                  sizes: dict, reference: dict, measured: dict) -> tuple[list[Row], list[Row]]:
    """The emitted ``autograd.Function`` (through the module's entry point named after the
    program): its outputs against the oracle's, and its gradients (``torch.autograd.grad`` with
    the same upstream adjoints) against the oracle's; where the module has a double backward,
    also the gradients under ``create_graph=True`` (target ``function (create_graph)``), which
    the Function computes through the derived ``gradients()`` instead of ``backward()``."""
    forward, rows = _function_gradients(module, program, inputs, upstream, exact, sizes,
                                        reference, measured, create_graph=False)
    if hasattr(module, "gradients"):
        rows += _function_gradients(module, program, inputs, upstream, exact, sizes, reference,
                                    measured, create_graph=True)[1]
    return forward, rows


def _function_gradients(module, program: Program, inputs: dict, upstream: list, exact: dict,
                        sizes: dict, reference: dict, measured: dict, create_graph: bool
                        ) -> tuple[list[Row], list[Row]]:
    target = CREATE_GRAPH if create_graph else "function"
    entry = getattr(module, program.name)  # the Function's outputs, without its saved values
    leaves = {name: value.clone().requires_grad_(value.is_floating_point())
              for name, value in inputs.items()}
    outputs = entry(*leaves.values())
    outputs = tuple(outputs) if isinstance(outputs, (tuple, list)) else (outputs,)
    forward = [compare(name, target, value.detach(), exact[name], sizes[name])
               for name, value in zip(program.outputs, outputs)]
    floats = [name for name, leaf in leaves.items() if leaf.requires_grad]
    grads = torch.autograd.grad(outputs, [leaves[name] for name in floats],
                                upstream or [torch.ones_like(outputs[0])], allow_unused=True,
                                create_graph=create_graph)
    rows = [compare(name, target, torch.zeros_like(leaves[name]) if g is None else g.detach(),
                    reference[name], measured[name]) for name, g in zip(floats, grads)]
    return forward, rows


def forward_terms(program: Program, values: dict) -> dict:
    """For each forward value, elementwise, the sum of the magnitudes of the terms its statement
    adds, its operands taken at their exact values: what the rounding of that statement is
    proportional to (a loss that is analytically 0 is measured against what cancelled)."""
    scalars = dict(program.sizes) | dict(program.constants)
    terms = {x.name: values[x.name].abs() for x in program.inputs if not x.integer}
    for s in program.body:
        bound = oracle.evaluate_expression(_bound(s.rhs, set()), lhs_index_set(s.lhs), values,
                                           scalars)
        terms[s.name] = bound.reshape(values[s.name].shape)
    return terms


def _loss(program: Program, values: dict, upstream: list) -> float:
    """A loss program's loss; for a layer, the sum of each output times its upstream adjoint."""
    if program.loss:
        return values[program.outputs[0]].item()
    return sum((values[o] * g).sum().item() for o, g in zip(program.outputs, upstream))


def finite_difference_rows(module, program: Program, inputs: dict, upstream: list,
                           measured: dict, noise: float, seed: int) -> list[Row]:
    """Per float input x, in float64: the emitted torch backward's ``<dL/dx, u>`` along a seeded
    random direction u against ``(L(x + hu) - L(x - hu))/2h``, L being the oracle forward's loss
    (for a layer, the sum of each output times its upstream adjoint). Judged to ``FD_RTOL`` of
    ``<terms of dL/dx, |u|>``, the chain-rule magnitudes that rounding is proportional to, plus
    the estimate's own rounding, ``noise/h`` (``noise`` bounds the rounding of L: what is left of a
    loss that is analytically constant, whose chain-rule terms are all zero)."""
    inputs, upstream = _float64(inputs), [g.double() for g in upstream]
    with torch.no_grad():
        grads = module.backward(module.forward(*inputs.values()), *upstream)
        rows = []
        for position, x in enumerate(x for x in program.inputs if not x.integer):
            value = inputs[x.name]
            generator = torch.Generator().manual_seed(seed + 2 + position)
            u = torch.randn(value.shape, generator=generator, dtype=torch.float64)
            h = FD_STEP * max(magnitude(value), 1.0) / max(magnitude(u), 1e-12)
            ends = [_loss(program, oracle.evaluate(program, inputs | {x.name: value + step}),
                          upstream) for step in (h * u, -h * u)]
            estimate = (ends[0] - ends[1]) / (2 * h)
            ours = (torch.as_tensor(grads.get(x.name, 0.0)) * u).sum().item()
            scale = (torch.broadcast_to(measured[x.name], u.shape) * u.abs()).sum().item()
            difference = abs(ours - estimate)
            rows.append(Row(x.name, "torch", False, difference <= FD_RTOL * scale + noise / h,
                            difference, difference / scale if scale else 0.0,
                            FINITE_DIFFERENCES))
    return rows


# Where float32 shows what a formula does with cancellation, and the example values do not: every
# input drawn from normal(...) moved by a large common offset (differences of inputs stay small,
# their squares expanded would cancel), or scaled up with every uniform(...) input at the nearer
# end of its range (confident probabilities against targets of 0 and 1, saturated steps). Each
# is (label, how a normal input moves, whether uniform inputs go to their ends).
STRESS = (("inputs + 1000", lambda value: value + 1000.0, False),
          ("inputs x 8, uniform ones at their ends", lambda value: 8 * value, True))


def _stressed(program: Program, inputs: dict, move, ends: bool) -> dict:
    moved = {}
    for x in program.inputs:
        value = inputs[x.name]
        if not x.integer and x.init.kind == "normal":
            value = move(value)
        elif not x.integer and ends:
            middle = (x.init.low + x.init.high) / 2
            value = torch.where(value < middle, x.init.low, x.init.high).to(value.dtype)
        moved[x.name] = value
    return moved
# How much worse than the statement-by-statement chain rule in float32 a gradient may round there:
# another order of summation or a rearrangement costs a few digits' worth (measured on every
# derivation and example, 6 seeds: at most 18.5x, NumPy's einsum adding the batch rows in turn),
# an expansion that cancels loses them wholesale (the gaussian NLL's expanded square: 450000x).
STRESS_FACTOR = 64.0


def stress_rows(modules: dict, program: Program, inputs: dict, upstream: list, names: list
                ) -> list[Row]:
    """float32 rows at the ``STRESS`` points: each target's gradients (its own float32 forward
    feeding its backward) against the float64 oracle there, allowed ``torch.allclose``'s
    tolerance on the value plus ``STRESS_FACTOR`` times the error of the oracle's own float32
    chain rule at the same point (what any implementation of these statements loses there),
    elementwise and at least its typical error relative to the chain-rule magnitudes. A point where the float64 oracle is not finite (exp of a moved input) gives no rows:
    there is no truth to compare with."""
    rows = []
    for label, move, ends in STRESS:
        moved = _stressed(program, inputs, move, ends)
        exact, truth = oracle_gradients(program, moved, upstream)
        if not all(torch.isfinite(v).all() for v in list(exact.values()) + list(truth.values())
                   if v.is_floating_point()):
            continue
        _, chained = _autograd(lambda leaves: oracle.evaluate(program, leaves, torch.float32),
                               program, moved, upstream)
        measured = term_magnitudes(program, exact, upstream)
        with torch.no_grad():
            ours = {"torch": modules["torch"].backward(modules["torch"].forward(*moved.values()),
                                                       *upstream)}
        with np.errstate(all="ignore"):
            values = modules["numpy"].forward(*(x.numpy() for x in moved.values()))
            ours["numpy"] = modules["numpy"].backward(values, *(g.numpy() for g in upstream))
        for target, grads in ours.items():
            for name in names:
                if grads.get(name) is None or name not in truth:
                    continue
                # what the chain rule loses at each element, and at least what it typically
                # loses relative to the chain-rule magnitudes (its 90th percentile: one element's
                # small error is luck, a few saturated elements' large ones are not typical).
                # The magnitudes alone would allow too much here: they bound a difference of
                # moved inputs by their sum, which the chain rule never rounds at
                scale = torch.broadcast_to(torch.as_tensor(measured.get(name, 0.0),
                                                           dtype=torch.float64), truth[name].shape)
                error = (chained[name].double() - truth[name]).abs()
                typical = torch.quantile((error / scale)[scale > 0], 0.9).item() \
                    if (scale > 0).any() else 0.0
                rows.append(compare(name, target, grads[name], truth[name].float(), 0.0,
                                    f"the oracle at {label}", allowance=STRESS_FACTOR *
                                    torch.maximum(error, typical * scale)))
    return rows


def run_check(program: Program, dtype: str = "float32", seed: int = 0,
              sources: dict[str, str] | None = None) -> Report:
    """Emit, run and compare. Gradient rows: each gradient the backward computes (in its order,
    then any float input it left out, compared as zero), per target, against autograd through the
    oracle, then against each reference the derivation declares; the ``autograd.Function``'s input
    gradients; one finite-difference row per float input. Forward rows: every forward value of each
    target against the oracle, the Function's outputs, and each declared reference forward's.
    Raises ProgramError when the example values leave a function's domain. ``sources`` (target ->
    module text) checks those modules, e.g. the generated files as written, instead of emitting."""
    working = DTYPES[dtype]
    inputs = example_inputs(program, working, seed)
    upstream = upstream_adjoints(program, working, seed)
    exact, exact_grads = oracle_gradients(program, inputs, upstream)
    _first_not_finite(program, exact)
    reference = {name: g.to(working) for name, g in exact_grads.items()}
    derived = derive_backward(program)
    # the first order only: the double backward is checked by gradgradcheck (pytest --symderive)
    sources = sources or {}
    modules = {target: load_module(sources.get(target) or module_source(
        program, derived, target, double=False), f"{program.name}_{target}") for target in TARGETS}
    names = [adjoint[1:] for adjoint in derived.outputs]
    # an input the backward gives no gradient for is compared as zero, so a lost path shows
    missing = [x.name for x in program.inputs if not x.integer and x.name not in names]
    names += missing
    bounds = term_magnitudes(program, exact, upstream)
    # a gradient no chain-rule term reaches (an unused input) is exactly zero on both sides
    measured = {name: bounds.get(name, torch.tensor(0.0, dtype=torch.float64))
                for name in names}
    terms = forward_terms(program, exact)
    sizes = {name: max(magnitude(exact[name]), magnitude(value)) for name, value in terms.items()}
    # first-order rounding of L: each value's terms, weighted by how much L depends on it
    noise = FD_NOISE * sum((exact_grads[name].abs() * value).sum().item()
                           for name, value in terms.items())

    # each target end to end: its own forward values feed its own backward
    with torch.no_grad():
        torch_values = modules["torch"].forward(*inputs.values())
        torch_grads = modules["torch"].backward(torch_values, *upstream)
    with np.errstate(all="ignore"):
        numpy_values = modules["numpy"].forward(*(x.numpy() for x in inputs.values()))
        numpy_grads = modules["numpy"].backward(numpy_values, *(g.numpy() for g in upstream))
    for name in missing:
        torch_grads[name] = numpy_grads[name] = torch.zeros_like(inputs[name])
    statements = list(dict.fromkeys(s.name for s in program.body))
    exact_working = {name: value.to(working) if value.is_floating_point() else value
                     for name, value in exact.items()}
    forward_rows = [compare(name, target, values[name], exact_working[name], sizes[name])
                    for target, values in (("torch", torch_values), ("numpy", numpy_values))
                    for name in statements]
    function_forward, function_grads = function_rows(
        modules["torch"], program, inputs, upstream, exact_working, sizes, reference, measured)
    forward_rows += function_forward

    references = [(ORACLE, reference)]
    for kind, label, function in program.references:
        if kind == "forward":
            outputs, grads = reference_gradients(function, program, inputs, upstream)
            forward_rows += [compare(name, "torch", torch_values[name], outputs[name],
                                     magnitude(outputs[name]), label) for name in outputs]
        else:
            with torch.no_grad():
                grads = function(exact_working, *upstream)
        references.append((label, grads))
    rows = []
    for label, grads_by_name in references:
        for target, ours in (("torch", torch_grads), ("numpy", numpy_grads)):
            rows += [compare(name, target, ours[name], grads_by_name[name], measured[name], label)
                     for name in names if name in grads_by_name]
    rows += function_grads
    rows += finite_difference_rows(modules["torch"], program, inputs, upstream, measured, noise,
                                   seed)
    if working == torch.float32:
        rows += stress_rows(modules, program, inputs, upstream, names)
    return Report(program.name, dtype, tuple(rows), tuple(forward_rows))
