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
    head = f"{'round':>5}  {'density':>8}  {'train FLOPs':>11}  {'test acc':>8}  {'early-stop acc @ it':>18}"
    for c in controls:
        head += f" | {c + ' acc':>8}  {'early-stop @ it':>18}"
    lines = [head, "-" * len(head)]
    for r in rounds:
        fl = r.get("flops", {}).get("training")
        fl = f"{fl:>11.3e}" if fl is not None else f"{'':>11}"
        line = f"{r['round']:>5}  {100 * r['density']:>7.2f}%  {fl}  {_cell(r)}"
        for c in controls:
            line += f" | {_cell(r['controls'].get(c))}"
        lines.append(line)
    return "\n".join(lines)


def format_layers(summary: dict) -> str:
    """Per-layer density (% kept) of every round's mask: one row per layer, one column per round."""
    rounds = summary["rounds"]
    names = list(rounds[0]["layer_densities"])
    w = max(len(n) for n in names + ["layer"])
    lines = [f"{'layer':<{w}}" + "".join(f"  {'r' + str(r['round']):>7}" for r in rounds)]
    for n in names:
        lines.append(f"{n:<{w}}" + "".join(f"  {100 * r['layer_densities'][n]:>6.2f}%" for r in rounds))
    lines.append(f"{'total':<{w}}" + "".join(f"  {100 * r['density']:>6.2f}%" for r in rounds))
    return "\n".join(lines)
