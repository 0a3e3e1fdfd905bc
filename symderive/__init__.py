"""symderive: derive a neural-network layer's backward pass symbolically from its forward pass in
SymPy index notation, simplify it to the compact textbook form, emit vectorised NumPy and torch code,
check that code against an independent evaluator, and print the derivation as LaTeX. The API for
notebooks and scripts is ``derive``, ``emit``, ``check`` and ``latex`` (``symderive.api``); a
derivation file builds its program with ``Builder``. The names load on first use (PEP 562), so
``symderive --version`` and ``--help`` answer without loading SymPy or torch."""
import importlib

__version__ = "0.1.0"

# public name -> the module that defines it
_PUBLIC = {
    **dict.fromkeys(("Derivation", "Document", "Emitted", "check", "derive", "emit", "latex"),
                    "api"),
    "Builder": "program.builder",
    "load": "program.load",
    **dict.fromkeys(("Assign", "Init", "Input", "Program", "normal", "uniform"), "program.ir"),
    "ProgramError": "program.errors",
    **dict.fromkeys(("ArgMax", "Maximum", "Piecewise", "sigmoid", "softplus", "log_sigmoid"),
                    "program.ops"),
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    if name not in _PUBLIC:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    # the API module registers the rich displays (LaTeX in Jupyter) of programs and gradients,
    # so it loads with the first public name, whichever is asked for
    importlib.import_module(f"{__name__}.api")
    value = getattr(importlib.import_module(f"{__name__}.{_PUBLIC[name]}"), name)
    globals()[name] = value  # later lookups are plain attribute reads
    return value


def __dir__():
    return sorted(list(globals()) + list(_PUBLIC))
