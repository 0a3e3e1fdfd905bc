"""The names the emitted modules define or read besides a program's own (their imports, tables,
functions and locals, and the builtins they call), and the names they derive from a program's
(the adjoint ``d<name>``, the double backward's ``grad_<name>`` and ``dgrad_<name>``): validation
refuses a program whose names would collide with them, and every temporary the emitter invents is
chosen against all of them.
"""
from __future__ import annotations

import sympy as sp

# The one table of the identifiers an emitted module binds or reads besides the program's own
# names, the names derived from them (``derived_names``) and the temporaries the emitter invents
# (chosen fresh against ``emitted_names``); tests/test_names.py walks emitted modules and fails on
# any identifier that is none of these, so a printer that starts writing a new one must add it.
# RESERVED: used where a program name is in scope too (module level, the class bodies, forward,
# backward, the input checks, the Function's forward and backward, the entry point, compiled),
# or read as a global by a helper that a module-level constant would shadow. No program name,
# and no name derived from one, may be one of these.
RESERVED = frozenset(
    # module level: imports, tables and the functions every module or the torch module defines
    {"np", "torch", "math", "inspect", "F", "warnings", "once_differentiable", "INPUTS", "CONSTANTS",
     "OUTPUTS", "SAVED", "GRADIENTS", "FUNCTION_SAVED", "DOUBLE_INPUTS", "DOUBLE_OUTPUTS",
     "DOUBLE_SAVED", "DOUBLE_GRADIENTS", "check_shapes", "check_labels", "check_constants",
     "check_signs", "signs_hold", "sign_test", "transformed_signs_hold",
     "labels_in_range", "transformed_labels_in_range", "leading_sums", "leading_dot",
     "log_softmax_at", "quotient", "conv", "conv_transpose", "conv_weight", "aten_conv_weight",
     "add_along", "function_apply", "CPP_APPLY",
     "forward",
     "backward", "lean_forward", "gradients",
     "double_backward", "compiled"}
    # the autograd Function's class body (a constant's default value is read there)
    | {"generate_vmap_rule", "setup_context"}
    # locals and parameters of the functions that also hold program names
    | {"values", "grads", "grad", "need", "saved", "ctx", "dtype", "device", "name", "wanted",
       "value", "rank", "expected", "shape", "classes", "result", "options", "fast", "run",
       "error", "args", "kwargs", "given", "_"}
    # builtins the emitted code calls, or may call as it grows; a constant of that name would
    # shadow the builtin for the whole module
    | {"dict", "tuple", "zip", "range", "len", "float", "int", "bool", "str", "list", "set",
       "print", "super", "object", "type", "staticmethod", "classmethod", "property",
       "isinstance", "getattr", "setattr", "hasattr", "enumerate", "slice", "iter", "next", "max",
       "min", "abs", "sum", "any", "all", "pow", "Ellipsis", "NotImplemented", "exec", "eval",
       "compile", "open", "globals", "locals", "vars", "__import__", "Exception", "ValueError",
       "TypeError", "RuntimeError", "IndexError", "KeyError"}
)


# HELPER_LOCALS: the parameters and locals of the helpers of fixed text (leading_sums,
# leading_dot, log_softmax_at, labels_in_range, transformed_labels_in_range, signs_hold,
# sign_test, transformed_signs_hold, quotient, conv, conv_transpose, conv_weight, aten_conv_weight,
# add_along, function_apply), of the Function's setup_context and of the
# comprehension in compiled's run, scopes no program name enters; a program may use these names.
HELPER_LOCALS = frozenset(
    {"x", "axes", "rows", "blocks", "flat", "columns", "partial", "head", "total", "a", "b",
     "step", "accumulator", "block", "chosen", "flat_a", "flat_b", "probs", "logits", "labels",
     "picked", "small", "shifted", "low", "high", "bad", "inputs", "output", "k", "v", "test",
     "extreme", "w", "g", "stride", "dilation", "d", "spatial", "reach", "windows", "out",
     "spread", "padded", "taps", "length", "q", "s", "dl", "zeros", "where", "size", "axis", "index",
     "function", "unwrap", "unwrapped", "arg"})


# The double backward (``double.py``) renames the first-order adjoint ``d<name>`` to
# ``grad_<name>``; the gradient program's own adjoints are then ``dgrad_<name>``.
GRADIENT_PREFIX = "grad_"


def derived_names(name: str, double: bool = True) -> tuple[str, ...]:
    """The names the emitted code makes from the array ``name``: its adjoint in the backward and,
    where the double backward is derived from the program (``double``), its first-order gradient
    in the gradient program and that gradient's adjoint.

    >>> derived_names("x")
    ('dx', 'grad_x', 'dgrad_x')
    """
    adjoint = "d" + name
    return (adjoint, GRADIENT_PREFIX + name, "d" + GRADIENT_PREFIX + name) if double else \
        (adjoint,)


def emitted_names(*programs) -> set[str]:
    """Every name a module emitted from ``programs`` may already mean something by: the table,
    each program's name, arrays, sizes, constants and index labels, and the arrays' adjoints. A
    temporary the emitter invents (``t0``, ``sum_x``, ``dx_scale``) is chosen outside it."""
    taken = set(RESERVED)
    for program in programs:
        arrays = set(program.names)
        taken |= arrays | {"d" + name for name in arrays} | {program.name}
        taken |= {str(symbol) for symbol, _ in (*program.sizes, *program.constants)}
        for record in (*program.inputs, *program.body):
            for part in (record.lhs, getattr(record, "rhs", record.lhs)):
                taken |= {str(k.label) for k in sp.sympify(part).atoms(sp.Idx)}
    return taken


def function_class_name(program_name: str) -> str:
    """The autograd Function class the torch module defines (as ``emit`` names it)."""
    return "".join(part.capitalize() for part in program_name.split("_")) + "Function"
