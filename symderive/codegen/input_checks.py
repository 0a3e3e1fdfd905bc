"""The input checks every emitted module runs before it computes: each input's shape against the
derivation's (``check_shapes``), each label array's type and range (``check_labels``, with the torch
helper ``labels_in_range``), each input's and each constant's declared sign (``check_signs``, with
the torch helper ``signs_hold``, and ``check_constants``), so a call the derivation's assumptions
do not cover fails in one line instead of returning a wrong value."""
from __future__ import annotations

import sympy as sp

from ..program.ir import Program, ProgramError
from .codetext import array_shape, signature, size_lines, wrapped


def _shape_text(shape: tuple) -> str:
    return "(" + ", ".join(str(size) for size in shape) + ("," if len(shape) == 1 else "") + ")"


def check_shapes_function(program: Program, inputs: list[str]) -> list[str]:
    """``check_shapes``: each input's rank, then each axis against the sizes read from the first
    input that has them; a one-line ValueError names the input, its shape and the expected one."""
    shapes = {x: array_shape((program,), x) for x in inputs}
    used = set().union(*(_symbols_of(size) for shape in shapes.values() for size in shape))
    sizes, _ = size_lines((program,), inputs, used)
    message = f'f"{program.name}: input {{name}} has shape {{tuple(value.shape)}}; expected '
    ranks = [f'("{x}", {x}, {len(shape)}, "{_shape_text(shape)}")' for x, shape in shapes.items()]
    axes = [f'("{x}", {x}, {_shape_text(shape)}, "{_shape_text(shape)}")'
            for x, shape in shapes.items() if shape]
    lines = signature("check_shapes", inputs, [])
    lines.append('    """Raise a one-line ValueError when an input\'s shape is not the '
                 'derivation\'s."""')
    lines += wrapped("for name, value, rank, expected in (", ranks,
                     ",):" if len(ranks) == 1 else "):", "    ")
    lines += ["        if value.ndim != rank:",
              f"            raise ValueError({message}{{expected}}\")"]
    if axes and sizes:
        lines += ["    " + line for line in sizes]
        lines += wrapped("for name, value, shape, expected in (", axes,
                         ",):" if len(axes) == 1 else "):", "    ")
        lines += ["        if tuple(value.shape) != shape:",
                  f"            raise ValueError({message}{{expected}} = {{shape}}\")"]
    return lines


def check_labels_function(program: Program, inputs: list[str], target: str) -> list[str]:
    """``check_labels``: a one-line ValueError when a label input is not an integer array or holds
    a value outside ``range(classes)``. Indexing would read a label of -1 as the last class and a
    one-hot comparison would give a row of zeros, both without an error; F.cross_entropy raises.
    The upper bound is checked where its size can be read from the inputs' shapes."""
    labels = [x for x in program.inputs if x.integer]
    if not labels:
        return []

    def classes_known(x) -> bool:  # its number of classes is computed from the inputs' shapes
        try:
            size_lines((program,), inputs, _symbols_of(x.classes))
        except ProgramError:
            return False
        return True

    labels_bounded = [x for x in labels if classes_known(x)]
    sizes, _ = size_lines((program,), inputs, set().union(
        *(_symbols_of(x.classes) for x in labels_bounded)))
    bounded = len(labels_bounded) == len(labels)
    rows = [f'("{x.name}", {x.name}, {x.classes if x in labels_bounded else None})'
            for x in labels]
    where = f"{program.name}: labels {{name}}"
    if target == "torch":
        dtype_test = ("not isinstance(value, torch.Tensor) or "
                      "value.dtype not in (torch.int64, torch.int32)")
        dtype_text = "a tensor of int64 or int32"
        range_test = "not labels_in_range(value, classes)"
    else:
        dtype_test, dtype_text = 'value.dtype.kind not in "iu"', "integers"
        range_test = "value.size and (value.min() < 0 or " + \
            ("value.max() >= classes)" if bounded else
             "classes is not None and value.max() >= classes)")
    message = f'f"{where} must lie in range({{classes}}); some do not"'
    if not bounded:
        message += f' if classes is not None else f"{where} must not be negative"'
    lines = signature("check_labels", inputs, [])
    lines += ['    """Raise a one-line ValueError when a label is not an integer in '
              'range(classes):', '    indexing would read a label of -1 as the last class."""']
    lines += ["    " + line for line in sizes]
    lines += wrapped("for name, value, classes in (", rows,
                     ",):" if len(rows) == 1 else "):", "    ")
    lines += [f"        if {dtype_test}:",
              f'            raise ValueError(f"{where} must be {dtype_text}, not '
              f'{{type(value).__name__}} of {{value.dtype}}")',
              f"        if {range_test}:",
              f"            raise ValueError({message})"]
    return lines


def _symbols_of(size) -> set[str]:
    return {str(symbol) for symbol in sp.sympify(size).free_symbols}


def checks_call(program: Program, inputs: list[str]) -> list[str]:
    """The calls that check a call's inputs: shapes, then labels and declared signs where the
    program has any."""
    arguments = ", ".join(inputs)
    signed = [name for name, _, _ in _input_promises(program)]
    return [f"check_shapes({arguments})"] + \
        [f"check_labels({arguments})"] * any(x.integer for x in program.inputs) + \
        [f"check_signs({', '.join(signed)})"] * bool(signed)


# What a constant's SymPy assumptions promise, as the comparison the emitted code checks: the
# rules may rely on them (``eps > 0`` folds ``(v + eps)**(-1/2)``; ``delta > 0`` orders the
# breakpoints of a case split), so a call that breaks one must fail, not return a wrong value.
_PROMISES = (("is_positive", "> 0"), ("is_nonnegative", ">= 0"), ("is_negative", "< 0"),
             ("is_nonpositive", "<= 0"))


def _input_promises(program: Program) -> list[tuple[str, str, str]]:
    """``(input, test, declared)`` for each float input declared with a sign
    (``IndexedBase("x", positive=True)``): ``("x", "> 0", "positive")``."""
    found = []
    for x in program.inputs:
        if x.integer:
            continue
        promise = next(((test, attribute[len("is_"):]) for attribute, test in _PROMISES
                        if getattr(x.lhs, attribute)), None)
        if promise:
            found.append((x.name, *promise))
    return found


def check_signs_function(program: Program, target: str) -> list[str]:
    """``check_signs``: a one-line ValueError when an input breaks the sign it is declared with.
    The rules rely on it (SymPy itself folds ``sqrt(x**2)*x`` to ``x**2`` for a positive ``x``),
    so a call that breaks it must fail, not return a value computed from a broken assumption."""
    promises = _input_promises(program)
    if not promises:
        return []
    lines = signature("check_signs", [name for name, _, _ in promises], [])
    lines.append('    """Raise a one-line ValueError when an input breaks the sign it is declared '
                 'with."""')
    for name, test, declared in promises:
        extreme = f"{name}.min()" if test[0] == ">" else f"{name}.max()"
        broken = f'not signs_hold({name}, "{test}")' if target == "torch" else \
            f"{name}.size and not {extreme} {test}"  # one pass; NaN passes no comparison
        lines += [f"    if {broken}:",
                  f'        raise ValueError("{program.name}: input {name} must be {test} '
                  f'(declared {declared}; the derivation relies on it), some entries are not")']
    return lines


def _constant_promises(program: Program) -> list[tuple[str, str]]:
    found = []
    for symbol, _ in program.constants:
        test = next((text for attribute, text in _PROMISES if getattr(symbol, attribute)), None)
        if test:
            found.append((str(symbol), test))
    return found


def check_constants_function(program: Program) -> list[str]:
    """``check_constants``: a one-line ValueError when a constant breaks its declared sign."""
    promises = _constant_promises(program)
    if not promises:
        return []
    lines = signature("check_constants", [name for name, _ in promises], [])
    lines.append('    """Raise a one-line ValueError when a constant breaks what the derivation '
                 'assumed of it."""')
    for name, test in promises:
        lines += [f"    if not {name} {test}:",
                  f'        raise ValueError(f"{program.name}: constant {name} must be {test} '
                  f'(declared so; the derivation relies on it), got {{{name}!r}}")']
    return lines


def constants_call(program: Program) -> list[str]:
    promises = _constant_promises(program)
    return [f"check_constants({', '.join(name for name, _ in promises)})"] if promises else []
