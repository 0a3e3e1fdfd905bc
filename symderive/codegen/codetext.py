"""Text shared by the emitters: lines wrapped at the emitted modules' width, function signatures,
and the lines that bind each size symbol the emitted code uses from an input's shape (``n =
x.shape[0]``, or solved from an axis whose length is linear in it)."""
from __future__ import annotations

import sympy as sp

from ..program.ir import Program, ProgramError

LINE_LENGTH = 99


def array_shape(programs: tuple[Program, ...], name: str) -> tuple:
    """The shape of the array ``name`` in the first of ``programs`` that has it (``()`` for a
    scalar)."""
    for program in programs:
        if name in program.names:
            lhs = program.lhs(name)
            return program.shape(name) if isinstance(lhs, sp.Indexed) else ()
    raise KeyError(name)


def size_lines(programs: tuple[Program, ...], arrays: list[str], used: set[str],
               fallback: list[str] = ()) -> tuple[list[str], list[str]]:
    """Lines binding each size symbol the code uses from the shape of the first array that has
    it, and the ``fallback`` arrays that had to be read because ``arrays`` lacked a size."""
    lines, bound, extra = [], set(), []
    sizes = [s for s, _ in programs[0].sizes if str(s) in used]
    for name in list(arrays) + list(fallback):
        if len(bound) == len(sizes):
            break
        shape = array_shape(programs, name)
        new = [(axis, size) for axis, size in enumerate(shape) if size in sizes and size not in bound]
        if not new:
            continue
        if name not in arrays:
            extra.append(name)
        if len(new) == len(shape):
            targets = ", ".join(str(size) for _, size in new)
            lines.append(f"{targets} = {name}.shape" if len(new) > 1 else
                         f"{targets} = {name}.shape[0]")
        else:
            lines.extend(f"{size} = {name}.shape[{axis}]" for axis, size in new)
        bound |= {size for _, size in new}
    for size in [s for s in sizes if s not in bound]:  # P of an axis P + U - 1, H of 2*H
        solved = _solve_size(programs, size, bound, list(arrays) + list(fallback))
        if solved is not None:
            name, line = solved
            lines.append(line)
            bound.add(size)
            if name not in arrays and name not in extra:
                extra.append(name)
    missing = [s for s in sizes if s not in bound]
    if missing:
        raise ProgramError(f"{programs[-1].name}: size {missing[0]} is not the length of any "
                           "input's axis, so the emitted code cannot read it; give an input an "
                           f"axis of size {missing[0]}")
    return lines, extra


def _solve_size(programs, size, bound: set, names: list[str]):
    """A line reading ``size`` from an axis whose length is linear in it and otherwise made of
    sizes already read (``P = x.shape[2] - (U - 1)`` for an axis of ``P + U - 1``, ``T =
    x.shape[1]//d`` for one of ``T*d``), with the array it reads; None if no axis is."""
    for name in names:
        for axis, length in enumerate(array_shape(programs, name)):
            length = sp.expand(length)
            if size not in length.free_symbols or not length.free_symbols - {size} <= bound \
                    or sp.degree(length, size) != 1:
                continue
            coeff, rest = length.coeff(size), sp.expand(length - length.coeff(size) * size)
            # a positive whole number of sizes already read: T of an axis of T*d, once d is read
            if coeff.is_positive is not True or coeff.is_integer is not True or \
                    not coeff.free_symbols <= bound:
                continue
            text = f"{name}.shape[{axis}]" + (f" - ({rest})" if rest != 0 else "")
            divisor = coeff if coeff.is_Integer or coeff.is_Symbol else f"({coeff})"
            return name, f"{size} = ({text})//{divisor}" if coeff != 1 else f"{size} = {text}"
    return None


def wrapped(opening: str, items: list[str], closing: str, indent: str = "") -> list[str]:
    """``opening + items + closing`` on one line, or one item a line when that is too long."""
    line = indent + opening + ", ".join(items) + closing
    if len(line) <= LINE_LENGTH:
        return [line]
    lines, current = [indent + opening], indent + "   "
    for item in items:
        if len(current) + len(item) + 2 > LINE_LENGTH and current.strip():
            lines.append(current)  # (an item longer than a line goes alone on its own)
            current = indent + "   "
        current += f" {item},"
    return lines + [current, indent + closing]


def signature(name: str, positional: list[str], keywords: list[str]) -> list[str]:
    items = positional + (["*", *keywords] if keywords else [])
    return wrapped(f"def {name}(", items, "):")


def tuple_lines(name: str, items) -> list[str]:
    quoted = [f'"{x}"' for x in items]
    return wrapped(f"{name} = (", quoted, ",)" if len(quoted) == 1 else ")")
