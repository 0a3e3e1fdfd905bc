"""Emission: a forward program and its backward as one standalone, readable module per target.
``forward(*inputs, **constants)`` checks its inputs and returns every forward value by name;
``backward(values, *upstream, **constants, wanted=...)`` returns the adjoints it computes, skipping
statements only unwanted gradients need; a loss's backward takes the loss's adjoint (``dloss``,
default 1). The torch module also holds the autograd Functions (``functions``) and, where it can
be derived, the double backward.
"""
from __future__ import annotations

import re

import sympy as sp

from ..algebra.double import PREFIX, derive_double
from ..algebra.grad import adjoint_name
from ..algebra.simplify import cycle_collection_paused
from ..program.ir import Program, ProgramError
from ..program.names import emitted_names
from .arrays import ArrayRef, ArrayStatement, holds_array
from .codetext import signature, size_lines, tuple_lines, wrapped
from .extents import Extents
from .files import HEADER, checked_origin
from .functions import Pair, autograd_functions, function_tables
from .fuse import (
    fused,
    saved_indices,
    saved_reductions,
    shared_reductions,
    shared_subexpressions,
)
from .helpers import helpers
from .input_checks import (
    check_constants_function,
    check_labels_function,
    check_shapes_function,
    check_signs_function,
    checks_call,
    constants_call,
)
from .lower import lower
from .normalization import norm_backward, norm_forward
from .printing import PRINTERS
from .specialize import seeded, softmax_adjoints, specialized


def _names_in(statements: list[ArrayStatement]) -> set[str]:
    return {s.name for s in statements} | {str(x) for s in statements
                                           for x in s.code.atoms(sp.Symbol)}


def reuse_earlier(statements: list[ArrayStatement], extents=None) -> list[ArrayStatement]:
    """Where a later statement recomputes an earlier statement's whole value, read the earlier
    name instead: ``dhprebn`` then uses ``dbngain`` rather than summing ``bnraw*dhpreact`` again.
    Only names assigned once qualify, so a value is never read after it was accumulated into.
    A statement whose reads cancel under the reuse (``2*a2*(1 - a2**2) - da0 + 2*s`` with ``da0``
    that product leaves ``2*s``) would lose the shape the cancelled terms gave it: with
    ``extents`` (``fuse.Extents``), a reuse that changes the statement's extent, or leaves it
    unknown, is not made; without, one that leaves no array read at all."""
    assigned = [s.name for s in statements]
    known: dict[sp.Expr, sp.Symbol] = {}
    result = []
    for s in statements:
        # a whole value equal to an earlier one is recomputed, not aliased to it
        code = s.code.xreplace(known) if known and s.code not in known else s.code
        if code is not s.code and (not holds_array(code) and holds_array(s.code) or
                                   extents is not None and (extents(code) is None or
                                                            extents(code) != extents(s.code))):
            # the reads cancelled (``-da0 + da2*(1 - a2**2)`` with ``da0`` that product is 0):
            # a number, or a smaller array, has not the statement's shape, so it is computed
            # as written
            code = s.code
        result.append(ArrayStatement(s.name, code, s.accumulate))
        # a statement that reads its own name (``da = da + ...``, an upstream adjoint updated in
        # place) overwrote what its code read: a later copy of that code is not its value
        if assigned.count(s.name) == 1 and not isinstance(s.code, sp.Symbol) and s.code.args \
                and s.name not in {str(x) for x in s.code.atoms(sp.Symbol)}:
            known[s.code] = ArrayRef(s.name)
    return result


def _body(printer, statements: list[ArrayStatement]) -> list[str]:
    return [line for s in statements for line in printer.statement(s.name, s.code, s.accumulate)]




def _placement(body: list[str], source: str) -> list[str]:
    """``dtype``/``device`` lines for a body that makes arrays from scratch (zeros, one-hot rows,
    aranges), taken from ``source``, a float array in scope."""
    text = "\n".join(body)
    return [f"{word} = {source}.{word}" for word in ("dtype", "device")
            if re.search(rf"\b{word}\b", text)]




def _keywords(program: Program) -> list[str]:
    """The named constants as keyword arguments defaulting to the derivation's values."""
    return [f"{symbol}={symbol}" for symbol, _ in program.constants]


def _wanted(statements: list[ArrayStatement], gradients: list[str]) -> list[frozenset | None]:
    """Per statement, the gradients that need it (None: all of them), so a backward asked for
    some gradients skips the statements only the others read. A name counts as read by whatever
    reads any statement assigning it, so the guard of every statement of one name is the same."""
    need: dict[str, set[str]] = {"d" + g: {g} for g in gradients}
    changed = True
    while changed:  # a name assigned twice may gain a reader after its last statement was seen
        changed = False
        for s in reversed(statements):
            for read in _names_in([s]) - {s.name}:
                known = need.setdefault(read, set())
                added = need.get(s.name, set()) - known
                known |= added
                changed |= bool(added)
    return [None if need.get(s.name, set()) >= set(gradients) or not need.get(s.name)
            else frozenset(need[s.name]) for s in statements]


def _guarded_body(printer, statements: list[ArrayStatement], gradients: list[str]) -> tuple[
        list[str], set[str]]:
    """The backward's lines, each statement that only some gradients need under an ``if`` on
    ``wanted``; and the gradients so guarded (returned only when wanted)."""
    lines, guarded, current = [], set(), None
    for s, guard in zip(statements, _wanted(statements, gradients)):
        body = printer.statement(s.name, s.code, s.accumulate)
        if guard is None:
            lines += body
            current = None
            continue
        if guard != current:  # the shorter of "any of these" and "any but those"
            others = [f'"{g}"' for g in gradients if g not in guard]
            names = [f'"{g}"' for g in gradients if g in guard]
            lines.append(f"if wanted - {{{', '.join(others)}}}:"
                         if len(names) > 4 and len(others) < len(names)
                         else f"if wanted & {{{', '.join(names)}}}:")
            current = guard
        lines += ["    " + line for line in body]
        if s.name[1:] in gradients and s.name.startswith("d"):
            guarded.add(s.name[1:])
    if any(line.startswith("if wanted") for line in lines):
        lines.insert(0, "wanted = set(wanted)")
    return lines, guarded


def _pair(forward: Program, backward: Program, printer, names=("forward", "backward"),
          check: bool = False) -> Pair:
    # fewest full-size passes (codegen.fuse); only the backward updates arrays in place
    forward_code = fused(reuse_earlier(lower(forward), Extents((forward,))), (forward,),
                         update=False, backward=backward)
    backward_lowered, seed, scaled = _seeded(forward, lower(backward, forward), names)
    if hasattr(printer, "_print_SoftmaxAdjoint"):  # ATen's fused softmax backward kernels
        backward_lowered = softmax_adjoints(backward_lowered, Extents((backward, forward)))
    program_names = emitted_names(forward, backward)
    norm_reads: list[str] = []
    if hasattr(printer, "_print_LayerNormBackward"):  # ATen's fused normalisation backward
        backward_lowered, norm_reads = norm_backward(
            backward_lowered, forward, backward,
            program_names | {s.name for s in (*backward_lowered, *forward_code)})
    backward_code = fused(reuse_earlier(backward_lowered, Extents((backward, forward))),
                          (backward, forward),
                          distribute=printer.target == "torch")  # addcmul broadcasts
    taken = {s.name for s in backward_code} | {s.name for s in forward_code} | program_names
    # what the forward computes already is saved, not computed again (before the backward's
    # own shared parts are named, so a saved one is read, not copied into a name)
    forward_code, backward_code, forward_reads = saved_reductions(forward_code, backward_code,
                                                                  taken)
    forward_reads += norm_reads
    if hasattr(printer, "_print_MaxWithIndices"):  # maxima and their indices in one call
        forward_code, backward_code, more = saved_indices(forward_code, backward_code, taken)
        forward_reads += more
    backward_code = shared_subexpressions(shared_reductions(backward_code, taken), taken)
    forward_code = shared_reductions(forward_code, taken | {s.name for s in backward_code})
    inputs = [x.name for x in forward.inputs]
    floats = [x.name for x in forward.inputs if not x.integer]
    upstream_names = {adjoint_name(x) for x in forward.outputs} if not forward.loss else set()
    upstream = [x.name for x in backward.inputs if x.name in upstream_names]
    gradients = [name[1:] for name in backward.outputs]
    keywords = _keywords(forward)

    forward_body = _body(printer, forward_code)
    sizes, _ = size_lines((forward,), inputs, _names_in(forward_code))
    forward_body = sizes + _placement(forward_body, floats[0]) + forward_body
    if check:
        forward_body[:0] = checks_call(forward, inputs)
    forward_body = constants_call(forward) + forward_body
    forward_body += wrapped("return {", [f'"{x}": {x}' for x in dict.fromkeys(
        inputs + [s.name for s in forward.body] + forward_reads)], "}")

    backward_body, guarded = _guarded_body(printer, backward_code, gradients)
    backward_names = _names_in(backward_code)  # once: the double backward has ~600 inputs
    saved = [x.name for x in backward.inputs if x.name not in upstream
             and x.name in backward_names]
    sizes, extra = size_lines((backward, forward), saved + upstream, backward_names,
                              floats)
    saved += extra
    source = next((x for x in saved + upstream if not forward.integer(x)), floats[0])
    placement = _placement(backward_body, source)
    if placement and source not in saved + upstream:
        saved.append(source)
    # made by the forward's code (not a source of sizes or placement), read by the backward
    saved += [x for x in dict.fromkeys(forward_reads) if x not in saved]
    backward_body = constants_call(forward) + [f'{x} = values["{x}"]' for x in saved] + sizes \
        + placement + backward_body
    result = {x: f"{seed}*d{x}" if scaled else f"d{x}" for x in gradients}
    backward_body += wrapped("return {", [
        f'"{x}": {result[x]} if "{x}" in wanted else None' if x in guarded else
        f'"{x}": {result[x]}' for x in gradients], "}")

    lean = _lean_forward(forward, forward_code, printer, inputs, keywords, saved) \
        if names[0] == "forward" else []
    head = signature(names[0], inputs, keywords)
    head.append('    """Every forward value by name: inputs, intermediates and outputs."""'
                if names[0] == "forward" else
                '    """The first-order gradients (grad_<name>) and every value they read, by name."""')
    first = head + ["    " + line for line in forward_body]
    table = "GRADIENTS" if names[1] == "backward" else "DOUBLE_GRADIENTS"
    second = signature(names[1], ["values", *upstream] + ([f"{seed}=1.0"] if seed else []),
                       keywords + [f"wanted={table}"])
    given = "" if forward.loss else " and " + ", ".join(upstream)
    given = f" and {seed}" if seed else given
    second.append(f'    """The adjoints of {table} (those in ``wanted``), from the forward values'
                  f'{given}."""')
    second += ["    " + line for line in backward_body]
    return Pair(first, second, saved, upstream, gradients, lean, seed)


def _seeded(forward: Program, statements: list[ArrayStatement], names) -> tuple[
        list[ArrayStatement], str, bool]:
    """A loss's first-order backward taking the loss's adjoint (``dloss``, default 1) and folding
    it into its small factors (``specialize.seeded``), that parameter's name, and
    whether the returned gradients must be scaled by it instead (the fold refused); the
    statements as they are and "" where it does not apply (a layer, the double backward)."""
    if not forward.loss or names[0] != "forward":
        return statements, "", False
    seed = adjoint_name(forward.outputs[0])
    found = seeded(statements, forward.names, sp.Symbol(seed))
    # where the fold is refused the backward still takes the seed, scaling what it returns
    return (statements, seed, True) if found is None else (found, seed, False)


def _needed(statements: list[ArrayStatement], names: list[str]) -> list[ArrayStatement]:
    """The statements ``names`` depend on, in order: what is left of a forward when only some of
    its values are wanted. Every statement of a needed name is kept (an accumulated name)."""
    needed, kept = set(names), []
    for s in reversed(statements):
        if s.name in needed:
            kept.append(s)
            needed |= _names_in([s]) - {s.name}
    return kept[::-1]


def _specialized_needed(code: list[ArrayStatement], wanted: list[str], forward: Program,
                        printer) -> list[ArrayStatement]:
    """What ``wanted`` needs of ``code``, with the fused library kernels the printer spells
    (``codegen.specialize``) where they leave fewer statements needed and add none."""
    kept = _needed(code, wanted)
    if not hasattr(printer, "_print_Softmax"):
        return kept
    candidate = specialized(code, Extents((forward,)))
    if hasattr(printer, "_print_LayerNormForward"):
        candidate = norm_forward(candidate, forward, emitted_names(forward) | {
            s.name for s in code})
    fewer = _needed(candidate, wanted)
    introduced = {s.name for s in candidate} - {s.name for s in code}  # the kernels' results
    names, fewer_names = {s.name for s in kept}, {s.name for s in fewer} - introduced
    return fewer if fewer_names < names else kept


def _lean_forward(forward: Program, code: list[ArrayStatement], printer, inputs: list[str],
                  keywords: list[str], saved: list[str]) -> list[str]:
    """``lean_forward``: the forward cut to the outputs and the values the backward reads, which
    is all the Function needs (``forward`` returns every value, for checks and users); empty
    where nothing would be cut."""
    wanted = [x for x in dict.fromkeys(list(forward.outputs) + saved) if x not in inputs]
    kept = _specialized_needed(code, wanted, forward, printer)
    if len(kept) == len(code):
        return []
    floats = [x.name for x in forward.inputs if not x.integer]
    body = _body(printer, kept)
    sizes, _ = size_lines((forward,), inputs, _names_in(kept))
    lines = signature("lean_forward", inputs, keywords)
    lines.append('    """The outputs and the values the backward reads, and nothing else (what '
                 'the Function runs)."""')
    body = checks_call(forward, inputs) + constants_call(forward) + sizes \
        + _placement(body, floats[0]) + body
    body += wrapped("return {", [f'"{x}": {x}' for x in wanted], "}")
    return lines + ["    " + line for line in body]


def module_source(forward: Program, backward: Program, target: str,
                  origin: str | None = None, double: bool = True) -> str:
    """The text of ``generated/<name>_<target>.py``; ``origin`` is the derivation's path relative
    to the project root, named in the header (default ``derivations/<name>.py``). The torch module
    also holds the autograd Functions (see ``autograd_functions``) and, where it can be derived,
    the double backward (``gradients`` and ``double_backward``); ``double=False`` leaves it out
    (the Function is then once differentiable), for callers that only run the first order.
    Python's cycle collector is paused meanwhile: emission, the double backward's derivation
    included, allocates as derivation does (see ``cycle_collection_paused``)."""
    origin = checked_origin(origin or f"derivations/{forward.name}.py")  # before any work
    with cycle_collection_paused():
        return _module_source(forward, backward, target, origin, double)


def _module_source(forward: Program, backward: Program, target: str, origin: str,
                   double: bool = True) -> str:
    """``module_source``'s work, with Python's cycle collector paused and ``origin`` checked by
    the caller."""
    printer = PRINTERS[target]()
    pair = _pair(forward, backward, printer, check=True)
    inputs = [x.name for x in forward.inputs]
    taken = set(forward.names) | {str(s) for s, _ in forward.constants}
    if forward.name in taken:
        raise ProgramError(f"{forward.name}: the program's name is also one of its values; the "
                           "torch module's entry point is named after the program, so rename one")
    double = None if target != "torch" else _double(forward, backward) if double else \
        "this module was emitted without its double backward"

    lines = [HEADER.format(origin=origin),
             f'"""{forward.name}: forward and backward in {"NumPy" if target == "numpy" else "torch"}."""',
             "IMPORTS", ""]
    # printed by us from a plain float, never by the value's own __repr__ (a float subclass
    # could print code); validation admits only plain numbers
    lines += [f"{symbol} = {float(value)!r}" for symbol, value in forward.constants]
    lines += tuple_lines("INPUTS", inputs) + tuple_lines("CONSTANTS", [str(s) for s, _ in forward.constants])
    lines += tuple_lines("OUTPUTS", forward.outputs) + tuple_lines("SAVED", pair.saved) + \
        tuple_lines("GRADIENTS", pair.gradients)
    lines += function_tables(forward, pair, double)
    if isinstance(double, tuple):
        lines += tuple_lines("DOUBLE_INPUTS", [x.name for x in double[0].program.inputs])
        lines += tuple_lines("DOUBLE_OUTPUTS", [x[len(PREFIX):] for x in double[0].program.outputs])
        lines += tuple_lines("DOUBLE_SAVED", double[1].saved)
        lines += tuple_lines("DOUBLE_GRADIENTS", double[1].gradients)
    lines += ["", ""] + check_shapes_function(forward, inputs) + ["", ""]
    label_check = check_labels_function(forward, inputs, target)
    if label_check:
        lines += label_check + ["", ""]
    if check_signs_function(forward, target):
        lines += check_signs_function(forward, target) + ["", ""]
    if check_constants_function(forward):
        lines += check_constants_function(forward) + ["", ""]
    lines += pair.forward + ["", ""] + pair.backward
    if target == "torch" and pair.lean:
        lines += ["", ""] + pair.lean
    if target == "torch":
        if isinstance(double, tuple):
            lines += ["", ""] + double[1].forward + ["", ""] + double[1].backward
        lines += ["", ""] + autograd_functions(forward, pair, double)
    text = "\n".join(lines) + "\n"
    # module-level helpers the fused code calls (helpers.helpers), after the imports
    called = helpers(text, target)
    if called:  # two blank lines around each, as between any top-level definitions
        text = text.replace("IMPORTS\n", "IMPORTS\n\n\n" + "\n\n\n".join(called) + "\n\n", 1)
    imports = [line for line in printer.imports if line.split()[-1] + "." in text]
    if "warnings." in text:
        imports.append("import warnings")
    if "@once_differentiable" in text:
        imports.insert(0, "from torch.autograd.function import once_differentiable")
    return text.replace("IMPORTS\n", "".join(line + "\n" for line in imports))


def _double(forward: Program, backward: Program):
    """``(Double, Pair)`` for the torch module's double backward, or why there is none."""
    found = derive_double(forward, backward)
    if isinstance(found, str):
        return found
    try:
        pair = _pair(found.program, found.backward, PRINTERS["torch"](),
                     names=("gradients", "double_backward"))
    except ProgramError as error:  # lowering refused a statement: no double backward, no guess
        return f"the double backward of {forward.name} cannot be emitted: {error}"
    return found, pair


__all__ = ["HEADER", "checked_origin", "module_source"]
