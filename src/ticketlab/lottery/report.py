"""The per-round table printed at the end of a run and by ``ticketlab show``."""
from __future__ import annotations


def _cell(r: dict | None) -> str:
    if not r:
        return f"{'':>8}  {'':>18}"
    es = f"{r['early_stop_test_acc']:.4f} @ {r['early_stop_iter']}"
    return f"{r['test_acc']:>8.4f}  {es:>18}"


def format_table(summary: dict) -> str:
    rounds = summary["rounds"]
    controls = list(summary["config"].get("controls", []))
    head = f"{'round':>5}  {'density':>8}  {'test acc':>8}  {'early-stop acc @ it':>18}"
    for c in controls:
        head += f" | {c + ' acc':>8}  {'early-stop @ it':>18}"
    lines = [head, "-" * len(head)]
    for r in rounds:
        line = f"{r['round']:>5}  {100 * r['density']:>7.2f}%  {_cell(r)}"
        for c in controls:
            line += f" | {_cell(r['controls'].get(c))}"
        lines.append(line)
    return "\n".join(lines)
