"""The array printers: subclasses of SymPy's NumPy and Python code printers that add one
``_print_<Class>`` method per array operation (``symderive.codegen.arrays``) and spell the op
table's functions per target."""
from .numpy import NumPyArrayPrinter
from .torch import TorchArrayPrinter

PRINTERS = {"numpy": NumPyArrayPrinter, "torch": TorchArrayPrinter}

__all__ = ["PRINTERS", "NumPyArrayPrinter", "TorchArrayPrinter"]
