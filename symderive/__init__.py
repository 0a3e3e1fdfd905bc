"""symderive: derive a neural-network layer's backward pass symbolically from its forward pass in
SymPy index notation, simplify it to the compact textbook form, emit vectorised NumPy and torch code,
and check that code against torch autograd."""
from .builder import Builder
from .ir import Assign, Init, Input, Program, ProgramError, normal, uniform
from .ops import ArgMax, Maximum

__all__ = [
           "ArgMax",
           "Assign",
           "Builder",
           "Init",
           "Input",
           "Maximum",
           "Program",
           "ProgramError",
           "normal",
           "uniform",
]
