"""The table of the simplifier's rules, each with its side condition: the phases (into irreducible
names, reduce, output) and ``RULES``, every rule in the order a derivation applies them; the
documents and the rule reference are generated from it.
"""
from __future__ import annotations

from .factoring import FACTOR_CONDITION, GATHER_CONDITION
from .output import CASES, COMMON_DENOMINATOR, FOLD, ODD_SIGN, SIGN_ABS, SIMPLER_STEP
from .reduction import BASIS_RULES, REDUCE_RULES

# The steps that are not rules on terms, with their side conditions too.
INLINE_CONDITION = "none: each adjoint is replaced by its definition (the chain rule)"
DISTRIBUTE_CONDITION = ("products distribute over sums exactly; a power of a power becomes one "
                        "power only for an integer outer exponent or a base the program "
                        "establishes as >= 0 (symderive.program.signs)")


RULES = BASIS_RULES + REDUCE_RULES + (FOLD, SIMPLER_STEP, SIGN_ABS, COMMON_DENOMINATOR, ODD_SIGN,
                                      CASES)


def step_conditions() -> dict[str, str]:
    """The side condition of every step a gradient's derivation can record, by the step's name:
    the chain rule's ``inline``, ``distribute``, every rule, ``factor`` and ``gather``."""
    return {"inline": INLINE_CONDITION, "distribute": DISTRIBUTE_CONDITION,
            **{rule.name: rule.condition for rule in RULES},
            "factor": FACTOR_CONDITION, "gather": GATHER_CONDITION}
