"""Checking emitted code against what shares nothing with it: the independent evaluator of index
expressions (``oracle``), the comparison of every gradient and value with it, finite differences
and declared references (``check``), and the run of every module before it is written
(``smoke``).
"""
