"""Run folders read into report sections: one per run, seed group, sweep or result, found by their own files.

Nothing here knows a method's internals: a run is its ``config.json`` (kind, config), its summary (the
experiment's own table formatter prints it), the ``metrics.json`` histories of its trainings, its masks, and
the result folders inside it (robustness, verification, baselines, deconstruct, instability, export/bench).
Plots are chosen by what the files hold: a ``rounds`` list with densities gives accuracy against density,
per-layer densities give a heatmap, histories give training curves, and so on for every kind.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..io import load_tensors, read_json_or_none
from ..runs.rundir import CONFIG_FILE as CONFIG
from ..runs.seeds import is_stat
from . import figures
from .figures import Series, finite

MAX_LINES = 24  # training curves per panel (evenly subsampled beyond)
MAX_MASK_ENTRIES = 200_000


@dataclass
class Section:
    title: str
    path: str
    kind: str
    state: str = ""
    headline: dict = field(default_factory=dict)  # metric -> text
    config: str | None = None  # the run's config as a --config TOML file
    config_file: str | None = None  # the name the command gives that file
    command: str | None = None  # the command that reproduces the run from that file
    table: str | None = None  # the command's own table
    figures: list[tuple[str, str]] = field(default_factory=list)  # (caption, svg)
    children: list[Section] = field(default_factory=list)
    series: list[Series] = field(default_factory=list)  # accuracy vs density, for the comparison of runs
    anchor: str = ""


def value(v) -> tuple[float | None, float | None]:
    """(number, std): a plain number has no std; a seed group's statistic gives its mean and std."""
    if is_stat(v):
        return float(v["mean"]), float(v["std"])
    return (float(v), None) if finite(v) else (None, None)


def text(v) -> str:
    m, s = value(v)
    if m is None:
        return str(v)
    if s is None:
        return f"{m:.4g}"
    return f"{m:.4g} ± {s:.2g} (n={v['n']})"


# -- what a summary holds ---------------------------------------------------------------------------------
def _points(rows, acc: str = "test_acc") -> tuple[list, list, list] | None:
    if not isinstance(rows, list) or not rows or not all(isinstance(r, dict) for r in rows):
        return None
    xs, ys, es = [], [], []
    for r in rows:
        d, _ = value(r.get("density"))
        a, e = value(r.get(acc))
        many = r.get(acc)
        if isinstance(many, list) and many and all(finite(x) for x in many):  # one per segment: their mean ± std
            a = sum(many) / len(many)
            e = (sum((x - a) ** 2 for x in many) / max(1, len(many) - 1)) ** 0.5
        if d is None or a is None:
            return None
        xs.append(d)
        ys.append(a)
        es.append(e or 0.0)
    return xs, ys, es


def density_series(summary: dict, label: str = "") -> list[Series]:
    """Accuracy-vs-density lines of a summary: IMP-style rounds (ticket and each control), any other list of
    {density, test_acc} rows (double descent's curves, COLT's rounds), or the run's own single point."""
    out: list[Series] = []
    pre = f"{label}: " if label else ""
    rounds = summary.get("rounds")
    accs = [
        k
        for k in (rounds[0] if isinstance(rounds, list) and rounds and isinstance(rounds[0], dict) else {})
        if k.endswith("test_acc") and not k.startswith("early")
    ]
    pts = _points(rounds, "test_acc" if "test_acc" in accs else accs[0]) if accs else None
    if pts:
        out.append(Series(f"{pre}ticket", *pts))
        controls = sorted({c for r in rounds for c in (r.get("controls") or {})})
        for c in controls:
            rows = [
                r["controls"][c] | {"density": r["controls"][c].get("density", r["density"])}
                for r in rounds
                if c in (r.get("controls") or {})
            ]
            p = _points(rows)
            if p:
                out.append(Series(f"{pre}{c}", *p, dashed=True))
    for k, v in summary.items():
        if k != "rounds" and isinstance(v, list):
            p = _points(v)
            if p:
                out.append(Series(f"{pre}{k}", *p))
    for k, v in summary.items():  # a method's own result beside its rounds (COLT's final ticket)
        if k != "config" and isinstance(v, dict) and finite(value(v.get("test_acc"))[0]):
            p = _points([{"density": summary.get("density")} | v])
            if p:
                out.append(Series(f"{pre}{k}", *p))
    if not out:
        d, _ = value(summary.get("density"))
        a, e = value(summary.get("test_acc"))
        if d is not None and a is not None:
            out.append(Series(label or "run", [d], [a], [e or 0.0]))
    for s in out:  # sorted densest first, as training proceeds
        order = sorted(range(len(s.x)), key=lambda i: -s.x[i])
        s.x, s.y, s.err = [s.x[i] for i in order], [s.y[i] for i in order], [s.err[i] for i in order]
    return out


def distance_series(summary: dict) -> list[Series]:
    """Learning distance ||w_final - w_init|| against density, for lists of rows that record it."""
    out = []
    for k, v in summary.items():
        p = _points(v, "learning_distance") if isinstance(v, list) else None
        if p:
            out.append(Series(k if k != "rounds" else "ticket", *p))
    return out


def layer_heatmap(summary: dict, title: str) -> str | None:
    rounds = summary.get("rounds")
    if (
        not isinstance(rounds, list)
        or not all(isinstance(r, dict) and isinstance(r.get("layer_densities"), dict) for r in rounds)
        or not rounds
    ):
        return None
    layers = list(rounds[0]["layer_densities"])
    vals = [[value(r["layer_densities"].get(n))[0] or 0.0 for n in layers] for r in rounds]
    rows = [f"round {i} ({100 * (value(r.get('density'))[0] or 0):.3g}%)" for i, r in enumerate(rounds)]
    return figures.heatmap(rows, layers, vals, title, "density")


def flops_figure(summary: dict, title: str) -> str | None:
    rounds = summary.get("rounds")
    if (
        not isinstance(rounds, list)
        or not rounds
        or not all(
            isinstance(r, dict) and isinstance(r.get("flops"), dict) and "training" in r["flops"] for r in rounds
        )
    ):
        return None
    labels = [f"{100 * (value(r.get('density'))[0] or 0):.3g}%" for r in rounds]
    train = [value(r["flops"]["training"]) for r in rounds]
    fwd = [value(r["flops"].get("forward")) for r in rounds]
    series = [Series("training (whole round)", [], [t[0] for t in train], [t[1] or 0 for t in train])]
    fig = figures.categories(labels, series, "training FLOPs", f"{title}: training FLOPs per round, by density")
    if all(f[0] is not None for f in fwd):
        fig += figures.categories(
            labels,
            [Series("forward", [], [f[0] for f in fwd])],
            "FLOPs per example",
            f"{title}: inference FLOPs per example",
        )
    return fig


def calibration_figure(summary: dict, title: str) -> str | None:
    members = summary.get("members")
    if not isinstance(members, list) or not members or not all(isinstance(m, dict) and "ece" in m for m in members):
        return None
    labels = [f"member {i}" for i in range(len(members))]
    rows = list(members)
    if isinstance(summary.get("ensemble"), dict) and "ece" in summary["ensemble"] and len(members) > 1:
        labels.append("ensemble")
        rows.append(summary["ensemble"])
    ece = [value(r["ece"]) for r in rows]
    return figures.categories(
        labels,
        [Series("ECE", [], [e[0] for e in ece], [e[1] or 0 for e in ece])],
        "expected calibration error",
        f"{title}: calibration (15 bins)",
    )


# -- trainings ----------------------------------------------------------------------------------------------
def histories(run: Path) -> dict[str, list[dict]]:
    """{path of a training inside ``run``: its history}, not entering other runs' folders inside it."""
    out = {}

    def walk(d: Path, rel: str) -> None:
        m = d / "metrics.json"
        if m.is_file():
            h = read_json_or_none(m)
            if isinstance(h, dict) and isinstance(h.get("history"), list) and h["history"]:
                out[rel or "."] = h["history"]
        for c in sorted(p for p in d.iterdir() if p.is_dir()):
            if not (c / CONFIG).is_file():
                walk(c, f"{rel}/{c.name}" if rel else c.name)

    walk(run, "")
    return out


def _panel(rel: str) -> str:
    last = rel.rsplit("/", 1)[-1]
    if last == ".":
        return "training"
    return {"round_#": "ticket, per round", "train_#": "training runs"}.get(
        re.sub(r"\d+", "#", last), re.sub(r"_?\d+$", "", last) or last
    )


def curve_label(rel: str, summary: dict | None) -> str:
    """A training's legend entry: an IMP round by its density (``round_03/reinit`` -> ``51.2% (round 3)``), any
    other training by its path in the run."""
    m = re.fullmatch(r"(?:.*/)?round_(\d+)(?:/.*)?", rel)
    rounds = (summary or {}).get("rounds")
    if m and isinstance(rounds, list):
        k = int(m.group(1))
        row = next((r for r in rounds if isinstance(r, dict) and r.get("round") == k), None)
        d = value(row.get("density"))[0] if row else None
        if d is not None:
            return f"{100 * d:.3g}% (round {k})"
    return rel


def curves_figure(runs: list[Path], title: str, summary: dict | None = None) -> str | None:
    """Test accuracy over iterations of every training, by panel; over several seeds, mean ± std. IMP rounds
    are labelled by their density (from ``summary``); a panel with more than MAX_LINES trainings shows evenly
    spaced ones and says how many in its title."""
    per_seed = [histories(r) for r in runs]
    names = [n for n in per_seed[0] if all(n in h for h in per_seed)] if per_seed else []
    panels: dict[str, list[Series]] = {}
    for n in names:
        hs = [h[n] for h in per_seed]
        iters = [row["iter"] for row in hs[0]]
        if not all([row["iter"] for row in h] == iters for h in hs):
            hs = hs[:1]
        acc = np.array([[row["test_acc"] for row in h] for h in hs], float)
        err = list(acc.std(0, ddof=1)) if len(hs) > 1 else None
        panels.setdefault(_panel(n), []).append(Series(curve_label(n, summary), iters, list(acc.mean(0)), err))
    if not panels:
        return None
    shown = {}
    for k, lines in panels.items():  # (in panel order)
        if len(lines) > MAX_LINES:
            step = len(lines) / MAX_LINES
            some = [lines[int(i * step)] for i in range(MAX_LINES - 1)] + [lines[-1]]
            shown[f"{k} ({len(some)} of {len(lines)} shown)"] = some
        else:
            shown[k] = lines
    panels = dict(list(shown.items())[:4])
    return figures.training_curves(panels, title)


def mask_figure(run: Path, kind: str, title: str) -> str | None:
    """The mask of the smallest 2-D layer of the run's final mask (IMP: the last round's)."""

    candidates = sorted(run.glob("round_*/mask.safetensors"))[-1:] if kind == "imp" else []
    candidates += [run / "mask.safetensors", run / "train_0" / "mask.safetensors"]
    for path in candidates:
        if path.is_file():
            try:
                mask = load_tensors(path)
            except (UserError, OSError, ValueError):
                return None
            layers = [
                (t.numel(), n)
                for n, t in mask.items()
                if t.dim() >= 2 and t.shape[0] >= 2 and t[0].numel() >= 2 and t.numel() <= MAX_MASK_ENTRIES
            ]
            if not layers:
                return None
            name = min(layers)[1]
            return figures.mask_image(name, mask[name].float().numpy(), title)
    return None


def _row_metrics(r: dict) -> dict[str, float]:
    """A result row's accuracy-like numbers: clean/robust/PGD accuracy, verified accuracy per method, mean
    corruption accuracy, and the test accuracy of nested results (baselines' method and each baseline)."""
    out = {}
    for k, v in r.items():
        if finite(v) and k.endswith("acc"):
            out[k] = v
        elif isinstance(v, dict) and k in ("robust_acc", "verified"):
            out |= {f"{k} {kk}": vv for kk, vv in v.items() if finite(vv)}
        elif isinstance(v, dict) and k == "corruption_acc" and "mean_corruption_acc" not in r:
            out |= {f"{k} {kk}": vv for kk, vv in v.items() if finite(vv)}
        elif isinstance(v, dict) and finite(v.get("test_acc")):
            out[k] = v["test_acc"]
        elif isinstance(v, dict) and all(isinstance(x, dict) for x in v.values()):
            out |= {f"{k} {kk}": x["test_acc"] for kk, x in v.items() if finite(x.get("test_acc"))}
    return out


def rows_figure(result: dict, title: str) -> str | None:
    """Robustness / verification / baseline rows: every accuracy-like number against density, one line per
    (group, metric); groups after the first (controls) dashed."""
    rows = result.get("rows")
    if not isinstance(rows, list) or not rows or not all(isinstance(r, dict) for r in rows):
        return None
    lines: dict[tuple[str, str], list[tuple[float, float]]] = {}
    groups: list[str] = []
    for r in rows:
        d, _ = value(r.get("density"))
        if d is None:
            return None
        g = str(r.get("group", ""))
        if g not in groups:
            groups.append(g)
        for k, v in _row_metrics(r).items():
            lines.setdefault((g, k), []).append((d, v))
    if not lines:
        return None
    series = []
    for (g, k), pts in list(lines.items())[:20]:
        pts = sorted(pts, key=lambda p: -p[0])
        label = f"{g}: {k}" if len(groups) > 1 else k
        series.append(Series(label, [p[0] for p in pts], [p[1] for p in pts], dashed=groups.index(g) > 0))
    return figures.accuracy_vs_density(series, title, ylabel="accuracy")
