"""The derivation as a document: the LaTeX printer of index expressions (``printer``), the
standalone document with a line per rewrite step (``documents``) and the engines that compile it
in a private folder and render its pages (``engines``).
"""
