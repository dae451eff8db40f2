"""Tables of a deconstruct run: one row per criterion (or kept-value rule), one column per density."""

from __future__ import annotations


def _table(title: str, rows: dict[str, list[dict]], key: str) -> list[str]:
    first = next(iter(rows.values()), [])
    if not first or key not in first[0]:
        return []
    w = max(max(len(n) for n in rows), len(title)) + 2
    head = f"{title:<{w}}" + "".join(f"{100 * c['density']:>9.2f}%" for c in first)
    lines = [head, "-" * len(head)]
    for name, cells in rows.items():
        lines.append(f"{name:<{w}}" + "".join(f"{c[key]:>10.4f}" for c in cells))
    return lines + [""]


def format_deconstruct(result: dict) -> str:
    crit, kept = result["criteria"], result["kept_values"]
    kc = result["config"]["kept_criterion"]
    parts = (
        _table("trained: test acc", crit, "test_acc")
        + _table("untrained (supermask): masked init", crit, "untrained_test_acc")
        + _table("untrained: masked signed constant", crit, "untrained_signed_constant_test_acc")
        + _table(f"kept values ({kc}), trained", kept, "test_acc")
        + _table(f"kept values ({kc}), untrained", kept, "untrained_test_acc")
    )
    return "\n".join(parts).rstrip()
