"""The torch module's autograd Functions as text: the Function whose backward is the derived one
(new style, ``setup_context``, so ``torch.func`` transforms work), its double-backward Function
where one was derived, the entry point named after the program and ``compiled()``, which checks
inputs eagerly before the compiled call.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..algebra.grad import adjoint_name
from ..program.ir import Program
from .codetext import signature, tuple_lines, wrapped


@dataclass(frozen=True)
class Pair:
    """A forward and its backward as two printed function definitions, and the names the module
    tables list (saved values, upstream adjoints, gradients)."""

    forward: list[str]
    backward: list[str]
    saved: list[str]
    upstream: list[str]
    gradients: list[str]
    lean: list[str] = ()  # ``lean_forward``, where the Function needs fewer statements than forward
    seed: str = ""  # the loss's adjoint, where the backward takes it (``specialize.seeded``)


def _function_name(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_")) + "Function"


def _returned(names: list[str]) -> str:
    return ", ".join(f'values["{x}"]' for x in names)


def _function_class(name: str, doc: str, forward_call: str, inputs: list[str],
                    keywords: list[str], tables: tuple[str, str], outputs: list[str],
                    kept: list[str], upstream: list[str], body: list[str],
                    once: str | None) -> list[str]:
    """An autograd Function in the new style (``setup_context``, so ``torch.func`` transforms
    work): forward returns the outputs and then the intermediates the backward reads, marked
    non-differentiable (torch.func wants saved intermediates returned, not kept on ``ctx``).
    ``tables`` names the tuples of its inputs and of the values it saves."""
    results = outputs + kept
    lines = [f"class {name}(torch.autograd.Function):", f'    """{doc}"""', "",
             "    generate_vmap_rule = True", "", "    @staticmethod"]
    lines += wrapped("def forward(", inputs + keywords, "):", "    ")
    lines += [f"        values = {forward_call}", f"        return {_returned(results)}", "",
              "    @staticmethod", "    def setup_context(ctx, inputs, output):"]
    if len(results) == 1:
        lines.append("        output = (output,)")
    lines.append(f"        values = dict(zip({tables[0]}, inputs))")
    lines += wrapped("values.update(zip(", [_tuple_text(results), "output"], "))", "        ")
    if kept:
        lines.append(f"        ctx.mark_non_differentiable(*output[{len(outputs)}:])")
        if len(outputs) == 1:  # the saved values' adjoints are never read: do not fill them
            lines.append("        ctx.set_materialize_grads(False)")
    lines += [f"        ctx.save_for_backward(*(values[name] for name in {tables[1]}))",
              f"        ctx.constants = inputs[len({tables[0].split()[0]}):]", "",
              "    @staticmethod"]
    if once:
        lines.append(f"    @once_differentiable  # {once}")
    lines += wrapped("def backward(", ["ctx", *upstream] + (["*_"] if kept else []), "):",
                     "    ")
    if kept and len(outputs) == 1:  # grads are not filled in: an undefined one means no grads
        lines += [f"        if {upstream[0]} is None:",
                  "            return (None,) * len(ctx.needs_input_grad)"]
    # Function.apply binds forward's default arguments on every call through
    # inspect.signature, which reads a __signature__ set on the function instead of rebuilding it
    return lines + ["        " + line for line in body] + [
        "", "", f"{name}.forward.__signature__ = inspect.signature({name}.forward)  # once"]


def _tuple_text(items: list[str]) -> str:
    quoted = [f'"{x}"' for x in items]
    return "(" + ", ".join(quoted) + ("," if len(quoted) == 1 else "") + ")"


def function_tables(forward: Program, pair: Pair, double) -> list[str]:
    """``FUNCTION_SAVED``: what the Function saves where a double backward exists, the backward's
    values and the inputs (references, not copies) that the gradient program starts from."""
    if not isinstance(double, tuple):
        return []
    return tuple_lines("FUNCTION_SAVED", list(dict.fromkeys(pair.saved + [x.name for x in
                                                                      forward.inputs])))


def autograd_functions(forward: Program, pair: Pair, double) -> list[str]:
    """The Function, its double-backward Function where one was derived, the entry point named
    after the program (outputs only, constants as keywords) and ``compiled()``."""
    inputs = [x.name for x in forward.inputs]
    keywords = [f"{c}={c}" for c, _ in forward.constants]
    passed = "".join(f", {c}={c}" for c, _ in forward.constants)
    name = _function_name(forward.name)
    # a loss's adjoint is named after it, as every adjoint is, so validation has vetted the name
    dloss = adjoint_name(forward.outputs[0]) if forward.loss else ""
    grads_in = [dloss] if forward.loss else pair.upstream
    given = "".join(f", {x}" for x in pair.upstream)
    seed = f", {dloss}" if pair.seed else ""  # the backward folds it into its small factors
    plain = [f"grads = backward(values{given}{seed}, **dict(zip(CONSTANTS, ctx.constants)), "
             "wanted=[",
             "    name for name, need in zip(INPUTS, ctx.needs_input_grad) if need])"]
    if isinstance(double, tuple):
        found, second = double
        saved_table, once = "FUNCTION_SAVED", None
        body = ["values = dict(zip(FUNCTION_SAVED, ctx.saved_tensors))",
                "if torch.is_grad_enabled():  # create_graph: differentiate the derived backward",
                f"    grads = function_apply({name[:-len('Function')]}Backward, "
                f"*(values[name] for name in INPUTS){given}, *ctx.constants)",
                "    grads = dict(zip(DOUBLE_OUTPUTS, grads if isinstance(grads, tuple) "
                "else (grads,)))"] + ([
                f"    grads = {{name: {dloss} * grad for name, grad in grads.items() "
                "if grad is not None}"]
                if pair.seed else []) + ["else:"] + ["    " + line for line in plain]
    else:
        saved_table, once = "SAVED", f"refused: {double}"
        body = ["values = dict(zip(SAVED, ctx.saved_tensors))"] + plain
    scale = f"{dloss} * " if forward.loss and not pair.seed else ""
    body += [f"return tuple({scale}grads[name] if need and grads.get(name) is not None else None",
             "             for name, need in zip(INPUTS, ctx.needs_input_grad)"
             ") + (None,) * len(ctx.constants)"]
    hidden = [x for x in pair.saved if x not in inputs and x not in forward.outputs]
    lines = _function_class(
        name, f"{forward.name} as an autograd Function whose backward is the derived one.",
        f"{'lean_forward' if pair.lean else 'forward'}({', '.join(inputs)}{passed})", inputs,
        keywords,
        ("INPUTS + CONSTANTS", saved_table), list(forward.outputs), hidden, grads_in, body, once)
    if isinstance(double, tuple):
        double_inputs = [x.name for x in found.program.inputs]
        outputs = list(found.program.outputs)
        kept = [x for x in second.saved if x not in double_inputs and x not in outputs]
        body = ["values = dict(zip(DOUBLE_SAVED, ctx.saved_tensors))",
                f"grads = double_backward(values{''.join(f', {x}' for x in second.upstream)}, "
                "**dict(zip(CONSTANTS, ctx.constants)))",
                "return tuple(grads.get(name) for name in DOUBLE_INPUTS) + (None,) * "
                "len(ctx.constants)"]
        lines += ["", ""] + _function_class(
            f"{name[:-len('Function')]}Backward",
            f"The gradients of {forward.name} as an autograd Function whose backward is the "
            "derived double backward.", f"gradients({', '.join(double_inputs)}{passed})",
            double_inputs, keywords, ("DOUBLE_INPUTS + CONSTANTS", "DOUBLE_SAVED"), outputs,
            kept, second.upstream, body, "a third derivative is not derived")
    return lines + ["", ""] + _entry(forward, inputs, keywords, name)


def _entry(forward: Program, inputs: list[str], keywords: list[str], name: str) -> list[str]:
    constants = [str(s) for s, _ in forward.constants]
    outputs = len(forward.outputs)
    result = "result[0]" if outputs == 1 else f"result[:{outputs}]"
    lines = signature(forward.name, inputs, keywords)
    lines += [f'    """{forward.name}\'s outputs through {name}: differentiable, twice where the '
              'double backward is derived."""',
              f"    result = function_apply({', '.join([name] + inputs + constants)})",
              f"    return {result} if isinstance(result, tuple) else result", "", ""]
    lines += [
        "def compiled(**options):",
        f'    """``{forward.name}`` through ``torch.compile(**options)``: the same numbers; where '
        'compilation',
        "    is unavailable or fails, a warning and then the plain module. A failure the plain "
        "module",
        '    raises too (a wrong shape) is raised, not hidden."""',
        "    try:",
        f"        fast = torch.compile({forward.name}, **options)",
        "    except Exception as error:  # no compiler backend on this machine",
        f'        warnings.warn(f"{forward.name}: torch.compile is unavailable ({{error}}); running '
        'the plain module")',
        f"        return {forward.name}",
        "",
        "    def run(*args, **kwargs):",
        "        nonlocal fast",
        f"        if fast is not {forward.name}:",
    ] + ([
        "            # eagerly first: in a compiled kernel running on several threads, a label out",
        "            # of range aborts the whole process instead of raising",
        "            given = dict(zip(INPUTS, args)) | {k: v for k, v in kwargs.items() if k in INPUTS}",
        "            if len(given) == len(INPUTS):  # (else the call itself says what is missing)",
        "                check_shapes(**given)",
        "                check_labels(**given)",
    ] if any(x.integer for x in forward.inputs) else []) + [
        "            try:",
        "                return fast(*args, **kwargs)",
        "            except Exception as error:",
        f"                result = {forward.name}(*args, **kwargs)  # raises what is not compile's",
        f'                warnings.warn(f"{forward.name}: torch.compile failed '
        '({type(error).__name__}: {error}); running the plain module")',
        f"                fast = {forward.name}",
        "                return result",
        f"        return {forward.name}(*args, **kwargs)",
        "",
        "    return run",
    ]
    return lines
