"""Exercise of notebooks/06_ablations.ipynb: the rule-based baselines.

The paper's Table 3 compares TrimLLM's scores with fixed rules: ``top`` drops from the
output end, ``bottom`` from the input end. ``rule_order`` writes those orders, checked
against :func:`trimlab.scoring.rule_scores` and :func:`trimlab.rank`.
"""

from __future__ import annotations

from collections.abc import Callable

from trimlab import scoring, surgery
from trimlab.exercises.core import Exercise, Wrong, call, checker, fresh


def _grade_rule_order(fn: Callable) -> tuple[bool, str]:
    for dropped in ((), ("1.attn", "2.mlp")):
        model = fresh("llama", dropped)
        names = surgery.sublayers(model)
        for rule in ("top", "bottom"):
            want = scoring.rank(scoring.rule_scores(model, rule))
            got = call(fn, list(names), rule)
            if list(got) != want:
                raise Wrong(f"rule {rule!r} over {names}: you gave {list(got)}, expected {want}")
    return True, "top drops from the output end, bottom from the input end"


RULE_ORDER = Exercise(
    name="rule_order",
    notebook="06_ablations",
    signature="rule_order(names, rule) -> list[str]",
    hint="names come in forward order; 'bottom' drops the first ones first, 'top' the "
    "last ones first (list(reversed(names)))",
    grader=_grade_rule_order,
)
check_rule_order = checker(RULE_ORDER)

CHAPTER_EXERCISES = (RULE_ORDER,)
