"""Normalisation over trailing axes as ATen's fused kernels (torch): a layer-norm-shaped
program's forward and its three gradients are one call each, as autograd's are.

A program normalises ``x[I, A]`` over its trailing indices ``A`` when it holds ``xhat[I, A] =
(x[I, A] - mu[I])*rstd[I]`` (``xc = x - mu`` named or not) and ``y = gamma[W]*xhat + beta[W]``
for inputs ``gamma``, ``beta`` over indices ``W`` of ``y``. Its backward then holds, by the chain
rule and the rules that give batchnorm's compact form, ``dx = rstd*(g - Sum_A(g)/N -
xhat*Sum_A(g*xhat)/N)`` with ``g = dy*gamma`` and ``N`` the number of elements ``A`` spans,
``dgamma = Sum(dy*xhat)`` and ``dbeta = Sum(dy)`` over the indices not in ``W``. That is exactly
what ATen's layer-norm backward computes from ``(dy, x, mu, rstd, gamma)`` for *any* ``mu`` and
``rstd`` constant along ``A`` (it forms ``xhat`` as ``(x - mu)*rstd``), where ``W`` is ``A``;
and its group-norm backward where ``x``'s axes are (batch, groups, channels of a group,
positions), normalised over the last two kinds with a gain per channel (``W`` the groups and
channels: GroupNorm, and InstanceNorm with one channel per group). Each backward statement is
checked equal to that form, its bound indices renamed canonically, before any is replaced; ``dx``
may add plain reads at its own indices (the adjoint of a residual branch ``x`` also feeds),
which are added to the kernel's ``dx``. Where
the forward's statistics are the biased mean and variance and ``rstd = (var + eps)**(-1/2)``,
the Function's forward is the matching forward kernel too, which returns ``y``, ``mu`` and
``rstd``. Batchnorm (over a leading axis) and Bessel's ``n - 1`` match neither; nothing names a
layer.
"""
from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from ..algebra.grad import adjoint_name
from ..algebra.terms import canonical_atom
from ..program.ir import Program, _same, idx_size, name_of
from .arrays import ArrayOp, ArrayRef, ArrayStatement, Item, Reshape
from .fuse import reserve_name


class LayerNormForward(ArrayOp):
    """``LayerNormForward(x, (d,), gamma, beta, eps)`` -> ``torch.native_layer_norm(x, (d,),
    gamma, beta, eps)``: ``(y, mean, rstd)``, the statistics with a kept axis per normalised one."""


class LayerNormBackward(ArrayOp):
    """``LayerNormBackward(dy, x, (d,), mu, rstd, gamma, beta)`` -> ATen's
    ``native_layer_norm_backward``: ``(dx, dgamma, dbeta)``."""


class GroupNormForward(ArrayOp):
    """``GroupNormForward(x, gamma, beta, N, C, HxW, group, eps)`` -> ``torch.native_group_norm``
    on ``x`` of shape ``(N, C, HxW)``: ``(y, mean, rstd)``, the statistics of shape
    ``(N, group)``."""


class GroupNormBackward(ArrayOp):
    """``GroupNormBackward(dy, x, mu, rstd, gamma, N, C, HxW, group)`` -> ATen's
    ``native_group_norm_backward``: ``(dx, dgamma, dbeta)`` of shapes ``(N, C, HxW)``, ``(C,)``."""


class Contiguous(ArrayOp):
    """``Contiguous(x)`` -> ``x.contiguous()``: the kernels read their operands' memory as laid
    out row-major (the group-norm ones without checking), so a view autograd hands in (an
    upstream adjoint expanded from a scalar loss's, a transposed one, a permuted input, an
    expanded gain) is copied first; a contiguous array is passed as it is."""


@dataclass(frozen=True)
class Normalization:
    """One match: names, and the roles of ``x``'s axes. ``lead`` axes are ``I``; ``weight`` the
    positions of ``gamma``'s indices among ``x``'s; ``eps`` is set where the forward's
    statistics are exactly the kernel's (the forward kernel applies), else None."""

    x: str
    mu: str
    rstd: str
    xhat: str
    y: str
    gamma: str
    beta: str
    shape: tuple
    lead: int
    weight: tuple
    eps: sp.Expr | None

    @property
    def layer(self) -> bool:
        """The gain spans exactly the normalised axes: the layer-norm kernel."""
        return self.weight == tuple(range(self.lead, len(self.shape)))

    def group_sizes(self) -> tuple | None:
        """``(N, C, HxW, group)`` where the gain's axes are a run that ends the batch axes'
        groups and starts the normalised ones (the group-norm kernel's layout), else None."""
        first, last = self.weight[0], self.weight[-1] + 1
        if self.weight != tuple(range(first, last)) or first > self.lead or last < self.lead:
            return None
        size = lambda part: sp.Mul(*part)  # noqa: E731
        return (size(self.shape[:first]), size(self.shape[first:last]),
                size(self.shape[last:]), size(self.shape[first:self.lead]))


def _at(program: Program, name: str, indices: tuple) -> sp.Indexed:
    """``name[indices]`` with the program's own array symbol (its assumptions included)."""
    return program.lhs(name).base[indices]


def _canonical(expr: sp.Expr) -> sp.Expr:
    """``expr`` with each sum split over its summand's expanded terms, the factors free of the
    bound indices taken out (``Sum(dy*gamma[c], k) = gamma[c]*Sum(dy, k)``), and the bound
    indices renamed canonically: two ways of writing one sum compare equal."""
    def split(total: sp.Sum) -> sp.Expr:
        bound = [limit[0] for limit in total.limits]
        result = []
        for term in sp.Add.make_args(sp.expand(total.function)):
            factors = sp.Mul.make_args(term)
            inside = [f for f in factors if f.has(*bound)]
            outside = [f for f in factors if not f.has(*bound)]
            result.append(sp.Mul(*outside) * canonical_atom(sp.Sum(sp.Mul(*inside), *total.limits)))
        return sp.Add(*result)

    return expr.replace(lambda e: isinstance(e, sp.Sum), split)


def _equal(a: sp.Expr, b: sp.Expr) -> bool:
    return sp.expand(_canonical(a) - _canonical(b)) == 0


def _read(expr: sp.Expr, program: Program, indices: tuple, integer=False) -> str | None:
    """The name ``expr`` reads when it is a plain read of an array at exactly ``indices``."""
    if not isinstance(expr, sp.Indexed) or tuple(expr.indices) != tuple(indices):
        return None
    name = name_of(expr)
    return name if name in program.name_set and program.integer(name) == integer else None


def _centred(expr: sp.Expr, program: Program, full: tuple) -> tuple[str, str, int] | None:
    """``(x, mu, lead)`` for ``x[full] - mu[full[:lead]]``."""
    terms = sp.Add.make_args(expr)
    if len(terms) != 2:
        return None
    for a, b in (terms, terms[::-1]):
        x, negated = _read(a, program, full), -b
        if x is None or not isinstance(negated, sp.Indexed):
            continue
        lead = len(negated.indices)
        mu = _read(negated, program, full[:lead])
        if mu is not None and lead < len(full):
            return x, mu, lead
    return None


def _affine(statement, program: Program):
    """``(gamma, beta, xhat, weight)`` for ``y = gamma[W]*xhat[...] + beta[W]``, the gain and
    bias inputs, ``xhat`` read at ``y``'s indices."""
    full = tuple(statement.indices)
    terms = sp.Add.make_args(statement.rhs)
    if len(terms) != 2 or len(set(full)) != len(full):
        return None
    for bias, product in (terms, terms[::-1]):
        if not isinstance(bias, sp.Indexed) or not isinstance(product, sp.Mul) \
                or len(product.args) != 2 or program.input(name_of(bias)) is None:
            continue
        weight_indices = tuple(bias.indices)
        if not set(weight_indices) <= set(full):
            continue
        for gain, xhat in (product.args, product.args[::-1]):
            gamma = _read(gain, program, weight_indices)
            xhat_name = _read(xhat, program, full)
            if gamma and xhat_name and program.input(gamma) is not None \
                    and program.definition(xhat_name) is not None:
                return gamma, name_of(bias), xhat_name, tuple(full.index(k) for k in weight_indices)
    return None


def _mean_of(expr: sp.Expr, axes: tuple, count: sp.Expr) -> sp.Expr | None:
    """The summand of ``expr = Sum(summand, *axes)/count`` (the axes in order, whole)."""
    for factor in sp.Mul.make_args(expr):
        if isinstance(factor, sp.Sum):
            if len(factor.limits) == len(axes) and all(
                    _same(hi - lo + 1, idx_size(k)) for (_, lo, hi), k in zip(factor.limits, axes)):
                renamed = factor.function.xreplace(
                    {limit[0]: k for limit, k in zip(factor.limits, axes)})
                return renamed if _equal(expr, sp.Sum(renamed, *axes) / count) else None
    return None


def _statistics_exact(found: dict, program: Program, full: tuple, lead: int, xc: str | None
                      ) -> sp.Expr | None:
    """``eps`` where ``mu`` is the mean of ``x`` over the trailing axes, ``rstd = (var +
    eps)**(-1/2)`` and ``var`` the mean of ``(x - mu)**2`` (through ``xc`` and a named square or
    not): the forward kernel's statistics. None otherwise."""
    axes, batch = full[lead:], full[:lead]
    count = sp.Mul(*[idx_size(k) for k in axes])
    mu_def, rstd_def = program.definition(found["mu"]), program.definition(found["rstd"])
    x = _at(program, found["x"], full)
    if tuple(mu_def.indices) != batch or tuple(rstd_def.indices) != batch:
        return None
    if (summand := _mean_of(mu_def.rhs, axes, count)) is None or summand != x:
        return None
    base, exponent = rstd_def.rhs.as_base_exp()
    if exponent != sp.Rational(-1, 2) or not isinstance(base, sp.Add) or len(base.args) != 2:
        return None
    for var, eps in (base.args, base.args[::-1]):
        constant = eps in {c for c, _ in program.constants} or eps.is_number and eps >= 0
        var_name = _read(var, program, batch)
        if not constant or var_name is None or program.definition(var_name) is None:
            continue
        squared = _mean_of(program.definition(var_name).rhs, axes, count)
        if squared is None:
            return None
        centred = x - _at(program, found["mu"], batch)
        square = _read(squared, program, full)  # a named square, xc2 = xc**2
        if square is not None and program.definition(square) is not None \
                and tuple(program.definition(square).indices) == full:
            squared = program.definition(square).rhs
        if xc is not None:
            squared = squared.xreplace({_at(program, xc, full): centred})
        return eps if _equal(squared, centred ** 2) else None
    return None


def normalizations(forward: Program) -> list[Normalization]:
    """Every normalisation over trailing axes followed by a gain and bias in ``forward``."""
    found = []
    for statement in forward.body:
        if statement.accumulate or forward.definition(statement.name) is not statement:
            continue
        affine = _affine(statement, forward)
        if affine is None:
            continue
        gamma, beta, xhat, weight = affine
        full = tuple(statement.indices)
        xhat_def = forward.definition(xhat)
        if tuple(xhat_def.indices) != full or not isinstance(xhat_def.rhs, sp.Mul) \
                or len(xhat_def.rhs.args) != 2:
            continue
        for scale, centred in (xhat_def.rhs.args, xhat_def.rhs.args[::-1]):
            xc = _read(centred, forward, full)
            if xc is not None:
                if forward.definition(xc) is None or tuple(forward.definition(xc).indices) != full:
                    continue
                centred = forward.definition(xc).rhs
            parts = _centred(centred, forward, full)
            if parts is None or not isinstance(scale, sp.Indexed):
                continue
            x, mu, lead = parts
            rstd = _read(scale, forward, full[:lead])
            if rstd is None or lead == 0 or forward.definition(rstd) is None \
                    or forward.definition(mu) is None \
                    or not all(_same(a, idx_size(k)) for a, k in zip(forward.shape(x), full)):
                continue
            names = {"x": x, "mu": mu, "rstd": rstd}
            found.append(Normalization(
                x, mu, rstd, xhat, statement.name, gamma, beta,
                tuple(idx_size(k) for k in full), lead, weight,
                _statistics_exact(names, forward, full, lead, xc)))
            break
    return [n for n in found if n.layer or n.group_sizes() is not None]


def _residual(rest: sp.Expr, backward: Program, indices: tuple) -> list | None:
    """``rest`` as ``[(coefficient, name), ...]`` where it is a sum of numbers times plain reads
    of arrays at exactly ``indices`` (a residual branch's adjoint, ``dout[i, t, d]``), else None."""
    found = []
    for term in sp.Add.make_args(rest):
        number, read = term.as_coeff_Mul()
        name = _read(read, backward, indices)
        if name is None or not number.is_number:
            return None
        found.append((number, name))
    return found


def _backward_names(norm: Normalization, forward: Program, backward: Program
                    ) -> tuple[tuple[str, str, str], list] | None:
    """``((dx, dgamma, dbeta), residual)`` where ``backward`` assigns each once, as the form the
    kernels compute (see the module docstring), ``dx`` plus a sum of plain reads at its own
    indices where ``x`` also feeds another branch (a transformer block's ``x + attention(...)``:
    ``residual``, as ``_residual`` lists it, empty where there is none); None where any
    differs."""
    full = tuple(forward.definition(norm.y).indices)
    batch, axes = full[:norm.lead], full[norm.lead:]
    weight = tuple(full[k] for k in norm.weight)
    dy = adjoint_name(norm.y)
    if dy not in backward.name_set:
        return None
    fresh = tuple(sp.Idx(f"_norm{k}", idx_size(a)) for k, a in enumerate(axes))
    moved = dict(zip(axes, fresh))
    at = lambda name, indices: _at(backward, name, indices)  # noqa: E731
    g = at(dy, full) * at(norm.gamma, weight)
    g_moved = g.xreplace(moved)
    xhat, xhat_moved = at(norm.xhat, full), at(norm.xhat, full).xreplace(moved)
    count = sp.Mul(*[idx_size(k) for k in axes])
    rest = [k for k in full if k not in weight]
    summed = lambda e: sp.Sum(e, *[(k, 0, idx_size(k) - 1) for k in rest]) if rest else e  # noqa
    expected = {
        adjoint_name(norm.x): (full, at(norm.rstd, batch) * (
            g - sp.Sum(g_moved, *[(k, 0, idx_size(k) - 1) for k in fresh]) / count
            - xhat * sp.Sum(g_moved * xhat_moved, *[(k, 0, idx_size(k) - 1) for k in fresh])
            / count)),
        adjoint_name(norm.gamma): (weight, summed(at(dy, full) * xhat)),
        adjoint_name(norm.beta): (weight, summed(at(dy, full))),
    }
    residual: list = []
    for name, (indices, form) in expected.items():
        statements = [s for s in backward.body if s.name == name]
        if len(statements) != 1 or statements[0].accumulate \
                or tuple(statements[0].indices) != indices:
            return None
        rest = sp.expand(_canonical(statements[0].rhs) - _canonical(form))
        if rest != 0 and name == adjoint_name(norm.x):
            residual = _residual(rest, backward, indices) or []
            rest = 0 if residual else rest
        if rest != 0:
            return None
    return tuple(expected), residual


def _shape(norm: Normalization, positions) -> sp.Tuple:
    return sp.Tuple(*[norm.shape[k] for k in positions])


def norm_backward(statements: list[ArrayStatement], forward: Program, backward: Program,
                  taken: set[str]) -> tuple[list[ArrayStatement], list[str]]:
    """The lowered ``backward`` with each normalisation's three gradients one kernel call, and
    the forward values it now reads (``x``, ``mu``, ``beta``). Side condition, checked as well
    as the forms: each gradient is one statement of the lowered code, and none from the first to
    the last of them assigns an array the kernel reads, so the call placed at the first sees
    what each statement saw."""
    extra: list[str] = []
    for norm in normalizations(forward):
        found = _backward_names(norm, forward, backward)
        names, residual = found if found is not None else ((), [])
        positions = [[k for k, s in enumerate(statements) if s.name == n] for n in names]
        if found is None or any(len(p) != 1 or statements[p[0]].accumulate for p in positions):
            continue
        first, last = min(p[0] for p in positions), max(p[0] for p in positions)
        reads = {adjoint_name(norm.y), norm.x, norm.mu, norm.rstd, norm.gamma, norm.beta}
        if any(s.name in reads for s in statements[first:last + 1]):
            continue
        dy, x, mu, rstd, gamma, beta = (ArrayRef(n) for n in (
            adjoint_name(norm.y), norm.x, norm.mu, norm.rstd, norm.gamma, norm.beta))
        c = Contiguous
        grads = reserve_name(f"{norm.x}_norm_grads", taken)
        rank = len(norm.shape)
        if norm.layer:
            call = LayerNormBackward(c(dy), c(x), _shape(norm, range(norm.lead, rank)), c(mu),
                                     c(rstd), c(gamma), c(beta))
            parts = [Item(ArrayRef(grads), k) for k in range(3)]
        else:
            n, channels, hw, group = norm.group_sizes()
            flat, stats = sp.Tuple(n, channels, hw), sp.Tuple(n, group)
            call = GroupNormBackward(c(Reshape(dy, flat)), c(Reshape(x, flat)),
                                     c(Reshape(mu, stats)), c(Reshape(rstd, stats)),
                                     c(Reshape(gamma, sp.Tuple(channels))), n, channels, hw,
                                     group)
            parts = [Reshape(Item(ArrayRef(grads), 0), _shape(norm, range(rank)))] + [
                Reshape(Item(ArrayRef(grads), k), _shape(norm, norm.weight)) for k in (1, 2)]
        # a residual branch's adjoint is added to the kernel's dx where dx's statement was
        parts[0] = sp.Add(parts[0], *[number * ArrayRef(name) for number, name in residual])
        replaced = dict(zip(names, parts))
        statements = statements[:first] + [ArrayStatement(grads, call)] + [
            ArrayStatement(s.name, replaced[s.name]) if s.name in replaced else s
            for s in statements[first:]]
        extra += [norm.x, norm.mu, norm.beta]
    return statements, extra


def norm_forward(statements: list[ArrayStatement], forward: Program, taken: set[str]
                 ) -> list[ArrayStatement]:
    """The lowered ``forward`` with each normalisation whose statistics are the kernel's
    computed by the forward kernel: ``mu`` and ``rstd`` (reshaped to their own axes) and ``y``
    read from its result, the call placed where ``mu`` was; what nothing else reads of the chain
    (``xc``, ``var``, ``xhat``) is then left to be dropped. Side condition, checked: ``mu``,
    ``rstd`` and ``y`` are one statement each, ``x`` is assigned before ``mu`` and not again."""
    for norm in normalizations(forward):
        where = {n: [k for k, s in enumerate(statements) if s.name == n]
                 for n in (norm.mu, norm.rstd, norm.y, norm.x)}
        if norm.eps is None or any(len(where[n]) != 1 for n in (norm.mu, norm.rstd, norm.y)) \
                or len(where[norm.x]) > 1 or where[norm.x] and where[norm.x][0] > where[norm.mu][0]:
            continue
        x, gamma, beta = ArrayRef(norm.x), ArrayRef(norm.gamma), ArrayRef(norm.beta)
        result = reserve_name(f"{norm.y}_norm", taken)
        rank = len(norm.shape)
        c = Contiguous
        if norm.layer:
            call = LayerNormForward(c(x), _shape(norm, range(norm.lead, rank)), c(gamma),
                                    c(beta), norm.eps)
            y = Item(ArrayRef(result), 0)
        else:
            n, channels, hw, group = norm.group_sizes()
            call = GroupNormForward(c(Reshape(x, sp.Tuple(n, channels, hw))),
                                    c(Reshape(gamma, sp.Tuple(channels))),
                                    c(Reshape(beta, sp.Tuple(channels))), n, channels, hw, group,
                                    norm.eps)
            y = Reshape(Item(ArrayRef(result), 0), _shape(norm, range(rank)))
        batch = _shape(norm, range(norm.lead))
        replaced = {norm.mu: Reshape(Item(ArrayRef(result), 1), batch),
                    norm.rstd: Reshape(Item(ArrayRef(result), 2), batch), norm.y: y}
        at = where[norm.mu][0]
        statements = statements[:at] + [ArrayStatement(result, call)] + [
            ArrayStatement(s.name, replaced[s.name]) if s.name in replaced else s
            for s in statements[at:]]
    return statements


__all__ = ["Contiguous", "GroupNormBackward", "GroupNormForward", "LayerNormBackward",
           "LayerNormForward", "Normalization", "norm_backward", "norm_forward", "normalizations"]
