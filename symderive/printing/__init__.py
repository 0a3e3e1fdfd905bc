"""Printers: subclasses of SymPy's code and LaTeX printers that add one ``_print_<Class>`` method per
array operation of ``symderive.lower`` and spell the op table's functions per target."""
from .latex import IndexLatexPrinter as IndexLatexPrinter  # noqa: F401 (re-exported)
from .numpy import NumPyArrayPrinter
from .torch import TorchArrayPrinter

PRINTERS = {"numpy": NumPyArrayPrinter, "torch": TorchArrayPrinter}

__all__ = ["PRINTERS", "NumPyArrayPrinter", "TorchArrayPrinter"]
