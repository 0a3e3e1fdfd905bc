"""Checking emitted code against torch autograd: build seeded example inputs from the sizes and
domains the derivation declares, differentiate the emitted torch forward with autograd (every
intermediate retains its gradient), run the emitted torch and NumPy backward on the same values, and
compare gradient by gradient as makemore's ``cmp`` does (exact, ``allclose`` with its defaults, max
difference).
"""
from __future__ import annotations

import types
from dataclasses import asdict, dataclass

import numpy as np
import sympy as sp
import torch

from .derivation import derive_backward
from .emit import module_source
from .grad import backward
from .ir import Assign, Program, with_body

TARGETS = ("torch", "numpy")
RTOL, ATOL = 1e-5, 1e-8  # torch.allclose's defaults, as makemore's cmp uses them
DTYPES = {"float32": torch.float32, "float64": torch.float64}


@dataclass(frozen=True)
class Row:
    name: str
    target: str
    exact: bool
    approximate: bool
    maxdiff: float
    relmaxdiff: float
    reference: str = "autograd"

    def line(self) -> str:
        return (f"{self.name:15s} | exact: {self.exact!s:5} | "
                f"approximate: {self.approximate!s:5} | maxdiff: {self.maxdiff}")


@dataclass(frozen=True)
class Report:
    derivation: str
    dtype: str
    rows: tuple[Row, ...]
    forward: tuple[Row, ...] = ()  # forward outputs: NumPy's and each reference's against torch's

    @property
    def ok(self) -> bool:
        return all(row.approximate for row in self.rows + self.forward)

    def as_json(self) -> dict:
        return {"derivation": self.derivation, "dtype": self.dtype, "ok": self.ok,
                "rows": [asdict(row) for row in self.rows],
                "forward": [asdict(row) for row in self.forward]}

    def table(self) -> str:
        lines = []
        for reference in dict.fromkeys(row.reference for row in self.rows):
            for target in TARGETS:
                rows = [r for r in self.rows if r.target == target and r.reference == reference]
                if rows:
                    against = "torch autograd" if reference == "autograd" else reference
                    lines.append(f"{self.derivation}: emitted {target} backward vs {against} "
                                 f"({self.dtype})")
                    lines.extend(row.line() for row in rows)
        for row in self.forward:
            lines.append(f"{self.derivation}: forward, {row.target} vs {row.reference}: "
                         f"{row.line()}")
        verdict = "all approximately equal" if self.ok else "SOME VALUES DIFFER"
        lines.append(f"{self.derivation}: {len(self.rows)} rows, {verdict}")
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


def autograd_gradients(module, program: Program, inputs: dict, upstream: list) -> dict:
    """Gradients of every forward value by torch autograd through ``module.forward``."""
    leaves = {name: value.clone().requires_grad_(value.is_floating_point())
              for name, value in inputs.items()}
    values = module.forward(*leaves.values())
    for name, value in values.items():
        if name not in leaves and value.requires_grad:
            value.retain_grad()
    outputs = [values[name] for name in program.outputs]
    torch.autograd.backward(outputs, upstream or None)
    grads = {}
    for name, value in values.items():
        tensor = leaves.get(name, value)
        grads[name] = tensor.grad if tensor.grad is not None else torch.zeros_like(tensor)
    return grads


def compare(name: str, target: str, ours, reference: torch.Tensor, scale,
            label: str = "autograd") -> Row:
    """One ``cmp`` row. ``scale`` (a number or an array like ``reference``) is the magnitude the
    difference is measured against: the sum of |terms| for a gradient, |value| for a forward."""
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
    approximate = kind_ok and bool(torch.all(difference <= ATOL + RTOL * scale)) \
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
        return _bound(base, adjoints) ** exponent if exponent.is_positive else _abs(base) ** exponent
    if isinstance(expr, sp.Sum):
        return sp.Sum(_bound(expr.function, adjoints), *expr.limits)
    return _abs(expr)  # a function's value, a maximum: its magnitude


def term_magnitudes(program: Program, values: dict, upstream: list) -> dict:
    """For each gradient, elementwise, the sum of the magnitudes of the terms the chain rule adds
    to form it: what rounding errors are proportional to. A gradient that is analytically zero
    (b1 under batchnorm, the max shift of a softmax) is rounding noise in every implementation;
    it is measured against the terms whose cancellation produced it, not against its own noise.
    Computed by running the atomic backward with every term made non-negative."""
    chain = backward(program)
    adjoints = {s.name for s in chain.body} | {x.name for x in chain.inputs
                                               if x.name not in program.names}
    bounds = with_body(chain, [Assign(s.lhs, _bound(s.rhs, adjoints), s.accumulate)
                               for s in chain.body])
    module = load_module(module_source(program, bounds, "numpy"), f"{program.name}_bounds")
    as_numpy = {name: (value.double() if value.is_floating_point() else value).numpy()
                for name, value in values.items()}
    return module.backward(as_numpy, *(g.double().abs().numpy() for g in upstream))


def reference_gradients(forward, program: Program, inputs: dict, upstream: list):
    """Outputs and input gradients of an independent torch forward, by autograd."""
    leaves = {name: value.clone().requires_grad_(value.is_floating_point())
              for name, value in inputs.items()}
    outputs = forward(*leaves.values())
    outputs = list(outputs) if isinstance(outputs, (tuple, list)) else [outputs]
    torch.autograd.backward(outputs, upstream or None)
    grads = {name: leaf.grad for name, leaf in leaves.items() if leaf.grad is not None}
    return dict(zip(program.outputs, (o.detach() for o in outputs))), grads


def run_check(program: Program, dtype: str = "float32", seed: int = 0) -> Report:
    """Emit, run and compare; one row per gradient, target and reference, in the backward's
    order. The first reference is always autograd through the emitted torch forward; a
    derivation may add independent forwards (``F.batch_norm``) and closed forms."""
    torch_dtype = DTYPES[dtype]
    derived = derive_backward(program)
    modules = {target: load_module(module_source(program, derived, target),
                                   f"{program.name}_{target}") for target in TARGETS}
    inputs = example_inputs(program, torch_dtype, seed)
    upstream = upstream_adjoints(program, torch_dtype, seed)
    reference = autograd_gradients(modules["torch"], program, inputs, upstream)
    names = [adjoint[1:] for adjoint in derived.outputs]
    # an input the backward gives no gradient for is compared as zero, so a lost path shows
    missing = [x.name for x in program.inputs if not x.integer and x.name not in names]
    names += missing

    with torch.no_grad():
        torch_values = modules["torch"].forward(*inputs.values())
        torch_grads = modules["torch"].backward(torch_values, *upstream)
    bounds = term_magnitudes(program, torch_values, upstream)
    # a gradient no chain-rule term reaches (an unused input) is exactly zero on both sides
    measured = {name: torch.from_numpy(np.array(bounds.get(name, 0.0))) for name in names}
    # Both backwards run on the same forward values, so a row measures the backward alone; the
    # NumPy forward is compared with torch's separately, output by output.
    numpy_values = modules["numpy"].forward(*(x.numpy() for x in inputs.values()))
    numpy_grads = modules["numpy"].backward({k: v.numpy() for k, v in torch_values.items()},
                                            *(g.numpy() for g in upstream))
    for name in missing:
        torch_grads[name] = numpy_grads[name] = torch.zeros_like(inputs[name])
    forward_rows = [compare(name, "numpy", numpy_values[name], torch_values[name],
                            magnitude(torch_values[name]), "torch forward")
                    for name in program.outputs]
    references = [("autograd", reference)]
    for kind, label, function in program.references:
        if kind == "forward":
            outputs, grads = reference_gradients(function, program, inputs, upstream)
            forward_rows += [compare(name, "torch", torch_values[name], outputs[name],
                                     magnitude(outputs[name]), label) for name in outputs]
        else:
            with torch.no_grad():
                grads = function(torch_values, *upstream)
        references.append((label, grads))
    rows = []
    for label, grads_by_name in references:
        for target, ours in (("torch", torch_grads), ("numpy", numpy_grads)):
            rows += [compare(name, target, ours[name], grads_by_name[name], measured[name], label)
                     for name in names if name in grads_by_name]
    return Report(program.name, dtype, tuple(rows), tuple(forward_rows))
