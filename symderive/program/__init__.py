"""The first stage: a derivation as a program. The IR (``ir``: statements and programs over plain
SymPy index notation), the ``Builder`` front end a derivation file writes with, validation (every
refusal of a bad program, ``validate``, and the table of names the emitted code takes,
``names``), the op table (``ops``: each function with its derivative and spellings), what a
program establishes about signs (``signs``), the stable forms recognised while building
(``recognise``), the LaTeX spellings a derivation may give (``latex_spelling``) and the loading of
derivation files (``load``). It imports nothing of the stages above it.
"""
