"""Solutions to the exercises of notebooks/06_ablations.ipynb."""


def rule_order(names, rule):
    """The paper's Table 3 rules: 'bottom' drops from the input end, 'top' from the output end."""
    if rule == "bottom":
        return list(names)
    if rule == "top":
        return list(reversed(names))
    raise ValueError(f"unknown rule {rule!r}")
