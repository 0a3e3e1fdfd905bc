"""The second stage: differentiation and the algebra that makes the compact textbook forms. The
normal form (``terms``), what the forward program says about its names (``definitions``), the
reverse pass (``grad``), the named rewrite rules and their side conditions, by phase
(``reduction``, ``output``, ``factoring``; the table of all in ``rules``), case splits of kinks
(``cases``), the simplifier that inlines and materialises adjoints (``simplify``), the forward's
stabilising rewrites (``stabilize``) and the double backward (``double``). It imports only the
program stage.
"""
