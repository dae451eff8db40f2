"""``ticketlab report PATH...``: runs, seed groups, sweeps and their results as one self-contained HTML page."""

from __future__ import annotations

import html
import importlib
import os
from datetime import UTC, datetime
from pathlib import Path

from .. import __version__
from ..deploy.bench import format_bench
from ..deploy.export import format_export
from ..errors import UserError
from ..flags import config_to_toml, dataclass_flag_dests
from ..io import read_json_or_none, write_text
from ..lottery.instability import format_instability
from ..runs import experiments
from ..runs.seeds import KIND as SEEDS
from ..runs.seeds import format_group
from ..runs.store import describe
from ..runs.store import run_record as record
from ..runs.sweep import KIND as SWEEP
from ..runs.sweep import format_sweep
from . import figures
from .collect import (
    CONFIG,
    Section,
    calibration_figure,
    curves_figure,
    density_series,
    distance_series,
    flops_figure,
    layer_heatmap,
    mask_figure,
    rows_figure,
    text,
    value,
)
from .figures import Series

GENERATOR = "ticketlab report"
# Result folders inside runs: their kind, results file and the family's formatter (module, function).
RESULTS = {
    "robustness": ("results.json", "ticketlab.robust.evaluate", "format_robustness"),
    "verify": ("results.json", "ticketlab.verify.evaluate", "format_verify"),
    "baselines": ("summary.json", "ticketlab.baselines", "format_baselines"),
    "deconstruct": ("summary.json", "ticketlab.deconstruct.report", "format_deconstruct"),
    "card-deck": ("results.json", "ticketlab.robust.deck", "format_deck"),
}


def _format(module: str, name: str, data) -> str | None:
    try:
        return getattr(importlib.import_module(module), name)(data)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, ZeroDivisionError):
        return None  # a file from an older or newer version: the plots and config still show


def _title(path: Path) -> str:
    """The path as the user gave it (a folder's runs: under it), without a trailing slash."""
    return os.path.normpath(str(path))


def _seed_flags(seeds: list[int]) -> str:
    if len(seeds) > 1 and seeds == list(range(seeds[0], seeds[0] + len(seeds))):
        return f" --seed {seeds[0]} --seeds {len(seeds)}"
    return f" --seed {','.join(map(str, seeds))}"


def _add(figs: list, caption: str, svg: str | None) -> None:
    if svg:
        figs.append((caption, svg))


def _standard_figures(sec: Section, summary: dict, runs: list[Path], kind: str, name: str) -> None:
    sec.series = density_series(summary)
    if sec.series and (len(sec.series) > 1 or len(sec.series[0].x) > 1):
        _add(
            sec.figures,
            f"Accuracy against density (bands: ± std over {len(runs)} seeds)"
            if len(runs) > 1
            else "Accuracy against density (one seed: no bands)",
            figures.accuracy_vs_density(sec.series, f"{name}: test accuracy (final) against density"),
        )
    dist = distance_series(summary)
    if dist and any(len(d.x) > 1 for d in dist):
        _add(
            sec.figures,
            "Learning distance against density",
            figures.accuracy_vs_density(
                dist, f"{name}: learning distance ||w_final - w_init||", ylabel="learning distance"
            ),
        )
    _add(
        sec.figures,
        "Training curves: test accuracy over iterations"
        + (f" (mean ± std over {len(runs)} seeds)" if len(runs) > 1 else ""),
        curves_figure(runs, name, summary),
    )
    _add(sec.figures, "Per-layer density per round", layer_heatmap(summary, f"{name}: per-layer density (%)"))
    _add(sec.figures, "FLOPs", flops_figure(summary, name))
    _add(sec.figures, "Calibration", calibration_figure(summary, name))
    _add(sec.figures, "The mask of a small layer", mask_figure(runs[0], kind, name) if runs else None)


def _nested(run: Path, prefix: str = "") -> list[Section]:
    """Result sections inside a run (robustness, verification, baselines, ..., instability, export/bench) and
    one line per run nested in it (prune-init comparisons, compress runs, ...)."""
    out, others = [], []
    for d in sorted(p for p in run.iterdir() if p.is_dir()):
        rec = record(d)
        if rec is not None and rec["kind"] in RESULTS:
            out.append(result_section(d, rec, f"{prefix}{d.name}"))
        elif rec is not None:
            others.append(d)
        elif d.name.startswith("instability-") and (d / "results.json").is_file():
            out.append(instability_section(d, f"{prefix}{d.name}"))
        elif d.name == "export":
            out += export_sections(d, prefix)
        elif rec is None and not (d / "metrics.json").exists() and not d.name.startswith(("round_", "seed_")):
            others += [c for c in sorted(d.iterdir()) if c.is_dir() and record(c) is not None]
    if others:
        lines = []
        for o in others:
            e = describe(o, run)
            if e:
                m = e["metrics"].get("test_acc")
                acc = f"test acc {text(m)}" if m is not None else ""
                lines.append(f"{e['path']:<40} {e['kind']:<14} {e['state']:<8} {acc}")
        if lines:
            out.append(
                Section(
                    f"{prefix}runs inside",
                    str(run),
                    "runs",
                    table="\n".join(lines) + "\n\n(each is a run directory of its own: "
                    "`ticketlab report` it for its plots)",
                )
            )
    return out


def run_section(run: Path, rec: dict, title: str) -> Section:
    kind = rec["kind"]
    exps = experiments()
    summary = read_json_or_none(run / "summary.json")
    sec = Section(title, str(run), kind, state="done" if isinstance(summary, dict) else "not finished")
    if kind in exps:
        exp = exps.get(kind)
        sec.config = config_to_toml(rec["config"], dataclass_flag_dests(exp.config))
        sec.config_file = f"{run.name}.toml"
        sec.command = f"ticketlab {kind} --config {sec.config_file} --out {run}"
        if isinstance(summary, dict):
            sec.table = _format_exp(exp.format, summary)
            try:
                sec.headline = {k: text(v) for k, v in exp.headline(summary).items()}
            except (KeyError, TypeError, IndexError, ZeroDivisionError):
                pass
    if isinstance(summary, dict):
        _standard_figures(sec, summary, [run], kind, title)
    else:
        _add(sec.figures, "Training curves so far", curves_figure([run], title))
    sec.children = _nested(run)
    return sec


def _format_exp(fmt, summary) -> str | None:
    try:
        return fmt(summary)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, ZeroDivisionError):
        return None


def group_section(run: Path, rec: dict, title: str) -> Section:
    exps = experiments()
    name = rec["config"].get("experiment")
    if name not in exps:
        raise UserError(f"{run} is a seed group of an unknown command {name!r}; is it from another version?")
    exp = exps.get(name)
    summary = read_json_or_none(run / "summary.json")
    sec = Section(title, str(run), f"{name} (seeds)", state="not finished")
    sec.config = config_to_toml(rec["config"].get("config", {}), dataclass_flag_dests(exp.config))
    seeds = summary.get("seeds", []) if isinstance(summary, dict) else []
    sec.config_file = f"{run.name}.toml"
    sec.command = f"ticketlab {name} --config {sec.config_file}{_seed_flags(seeds or [0])} --out {run}"
    if not isinstance(summary, dict) or not seeds:
        return sec
    sec.state = f"{len(seeds)} seed(s) done"
    try:
        sec.table = format_group(exp, summary)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError):
        pass
    sec.headline = {k: text(v) for k, v in summary.get("headline", {}).items()}
    agg = summary.get("aggregate") or {}
    runs = [run / summary["runs"][str(s)] for s in seeds if (run / summary["runs"].get(str(s), "")).is_dir()]
    _standard_figures(sec, agg, runs, name, title)
    for r in runs:
        sec.children += _nested(r, prefix=f"{r.name} / ")
    return sec


def sweep_section(run: Path, rec: dict, title: str) -> Section:
    sw = read_json_or_none(run / "sweep.json")
    config = rec["config"]
    sec = Section(title, str(run), f"{config.get('experiment')} (sweep)", state="not run")
    exps = experiments()
    name = config.get("experiment")
    axes = [a for a in config.get("axes", []) if isinstance(a, list) and len(a) == 2]
    if name in exps:
        fixed = config_to_toml(config.get("fixed", {}), dataclass_flag_dests(exps.get(name).config))
        vary = "\n".join(
            f"{k} = [{', '.join(repr(str(v)).replace(chr(39), chr(34)) for v in vals)}]" for k, vals in axes
        )
        seeds = sw.get("seeds", [0]) if isinstance(sw, dict) else [0]
        sec.config = f'command = "{name}"\nseed = {seeds}\n\n[fixed]\n{fixed}\n[vary]\n{vary}\n'
        sec.config_file = f"{run.name}.toml"
        sec.command = f"ticketlab sweep --spec {sec.config_file} --out {run}"
    if not isinstance(sw, dict):
        return sec
    states = [p.get("state") for p in sw.get("points", [])]
    sec.state = f"{states.count('done')} of {len(states)} points done"
    try:
        sec.table = format_sweep(sw)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError):
        pass
    n = len(sw.get("seeds") or [0])
    _add(
        sec.figures,
        f"The headline metric over the sweep's axes (error bars: ± std over {n} seeds)"
        if n > 1
        else "The headline metric over the sweep's axes (one seed: no error bars)",
        _sweep_figure(sw, [k for k, _ in axes], title),
    )
    for p in sw.get("points", []):
        d = run / p.get("point", "")
        prec = record(d) if d.is_dir() else None
        if prec is not None and prec["kind"] == "seeds" and (d / "summary.json").is_file():
            child = group_section(d, prec, f"{title} / {d.name}")
            sec.children.append(child)
            sec.series += [Series(f"{d.name}: {s.label}", s.x, s.y, s.err, s.dashed) for s in child.series]
    return sec


def _num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def _sweep_figure(sw: dict, axes: list[str], title: str) -> str | None:
    """The headline metric over the first axis, one series per value of the second. A numeric axis is a line
    plot; a categorical one (``--vary method=set,rigl``) is points with error bars at named ticks, in the
    table's order (the order the sweep lists its points), series side by side."""
    points = [p for p in sw.get("points", []) if p.get("state") == "done" and isinstance(p.get("headline"), dict)]
    if not points or not axes:
        return None
    metric = "test_acc" if all("test_acc" in p["headline"] for p in points) else next(iter(points[0]["headline"]))
    x, hue = axes[0], axes[1] if len(axes) > 1 else None
    groups: dict[str, list] = {}
    for p in points:
        groups.setdefault(str(p["values"].get(hue)) if hue else "", []).append(p)
    numeric = all(_num(p["values"].get(x)) is not None for p in points)
    labels = list(dict.fromkeys(str(p["values"].get(x)) for p in sw.get("points", []) if isinstance(p, dict)))
    series = []
    for g, ps in groups.items():
        ps = sorted(ps, key=lambda p: _num(p["values"][x]) if numeric else labels.index(str(p["values"][x])))
        vals = [value(p["headline"].get(metric)) for p in ps]
        xs = [_num(p["values"][x]) if numeric else labels.index(str(p["values"][x])) for p in ps]
        series.append(Series(f"{hue}={g}" if hue else "", xs, [v[0] for v in vals], [v[1] or 0 for v in vals]))
    seeds = len(sw.get("seeds") or [0])
    ylabel = f"{metric} (mean ± std, {seeds} seeds)" if seeds > 1 else f"{metric} (one seed)"
    if not numeric:
        return figures.metric_vs(series, x, ylabel, f"{title}: {metric}", categories=labels)
    positive = all(v > 0 for s in series for v in s.x)
    return figures.metric_vs(series, x, ylabel, f"{title}: {metric}", log_x=positive and _spread(series) > 20)


def _spread(series: list[Series]) -> float:
    xs = [v for s in series for v in s.x]
    return max(xs) / min(xs) if xs and min(xs) > 0 else 1.0


def result_section(d: Path, rec: dict, title: str) -> Section:
    kind = rec["kind"]
    file, module, fn = RESULTS[kind]
    data = read_json_or_none(d / file)
    sec = Section(title, str(d), kind, state="done" if isinstance(data, dict) else "not finished")
    sec.config = "\n".join(f"{k} = {v}" for k, v in rec["config"].items() if not isinstance(v, dict)) + "\n"
    if isinstance(data, dict):
        sec.table = _format(module, fn, data)
        _add(sec.figures, f"{kind}: accuracy against density", rows_figure(data, f"{title}"))
    return sec


def instability_section(d: Path, title: str) -> Section:
    data = read_json_or_none(d / "results.json")
    sec = Section(title, str(d), "instability", state="done" if isinstance(data, dict) else "not finished")
    if isinstance(data, dict):
        sec.table = _format_exp(format_instability, data)
        rows = [r for r in data.get("rows", []) if isinstance(r, dict) and isinstance(r.get("errors"), list)]
        if rows:
            series = [
                Series(
                    f"K={r['rewind']} round {r['round']}",
                    [i / (len(r["errors"]) - 1) for i in range(len(r["errors"]))],
                    r["errors"],
                )
                for r in rows[:20]
                if len(r["errors"]) > 1
            ]
            _add(
                sec.figures,
                "Test error along the line between the two copies",
                figures.metric_vs(series, "interpolation", "test error", f"{title}: linear interpolation"),
            )
    return sec


def export_sections(d: Path, prefix: str) -> list[Section]:
    out = []
    for f in sorted(d.rglob("export.json")) + sorted(d.rglob("bench-*.json")):
        data = read_json_or_none(f)
        if not isinstance(data, dict):
            continue
        fmt = format_export if f.name == "export.json" else format_bench
        rel = f.relative_to(d.parent)
        out.append(
            Section(
                f"{prefix}{rel}",
                str(f),
                "export" if f.name == "export.json" else "bench",
                state="done",
                table=_format_exp(fmt, data),
            )
        )
    return out


def section(path: Path) -> list[Section]:
    """The sections of one PATH argument: a run, seed group or sweep, a result folder, or a folder of runs."""
    if not path.exists():
        raise UserError(f"{path} does not exist; give run directories, seed groups, sweeps or folders of them")
    if not path.is_dir():
        raise UserError(f"{path} is not a directory; give run directories (with config.json) or folders of them")
    rec = record(path)
    if (path / CONFIG).is_file() and rec is None:
        raise UserError(f"{path / CONFIG} is not a ticketlab run config (corrupt or from another program)")
    title = _title(path)
    if rec is None:
        if path.name.startswith("instability-") and (path / "results.json").is_file():
            return [instability_section(path, title)]
        runs = sorted(p for p in path.iterdir() if p.is_dir() and record(p) is not None)
        if not runs:
            raise UserError(f"{path} holds no ticketlab runs (no config.json in it or its sub-folders)")
        return [s for r in runs for s in section(r)]
    kind = rec["kind"]
    if kind == SEEDS:
        return [group_section(path, rec, title)]
    if kind == SWEEP:
        return [sweep_section(path, rec, title)]
    if kind in RESULTS:
        return [result_section(path, rec, title)]
    return [run_section(path, rec, title)]


def comparison(sections: list[Section]) -> Section | None:
    """Several runs given together: their accuracy-vs-density lines overlaid and their headlines side by side."""
    if len(sections) < 2:
        return None
    sec = Section("Comparison", "", "comparison")
    series = [
        Series(f"{s.title}: {line.label}" if len(s.series) > 1 else s.title, line.x, line.y, line.err, line.dashed)
        for s in sections
        for line in s.series
    ]
    if series:
        _add(
            sec.figures,
            "All runs: test accuracy against density (bands and bars: ± std over seeds)",
            figures.accuracy_vs_density(series, "test accuracy against density, every run"),
        )
    names = sorted({k for s in sections for k in s.headline})
    if names:
        w = max(len(s.title) for s in sections)
        lines = [f"{'run':<{w}}  " + "  ".join(f"{n:>24}" for n in names)]
        for s in sections:
            lines.append(f"{s.title:<{w}}  " + "  ".join(f"{s.headline.get(n, ''):>24}" for n in names))
        sec.table = "\n".join(lines)
    return sec if sec.figures or sec.table else None


def _anchors(sections: list[Section], prefix: str = "s") -> None:
    for i, s in enumerate(sections):
        s.anchor = f"{prefix}{i}"
        _anchors(s.children, f"{s.anchor}-")


def render(sections: list[Section], paths: list[str]) -> str:
    try:
        import jinja2  # a dependency, but the page says how to install it where it is missing
    except ImportError:
        raise UserError("ticketlab report needs jinja2: pip install jinja2") from None

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("ticketlab.report", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    _anchors(sections)
    return env.get_template("report.html.j2").render(
        sections=sections,
        paths=paths,
        generator=GENERATOR,
        version=__version__,
        created=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        escape=html.escape,
    )


def build_report(paths: list[str | Path], out: str | Path = "report.html") -> Path:
    """Write the report of ``paths`` to ``out`` (an existing file is replaced only if it is such a report)."""
    out = Path(out)
    if out.is_dir():
        raise UserError(f"--out {out} is a directory; give a file name such as {out / 'report.html'}")
    if out.exists():
        try:
            head = out.read_text(errors="replace")[:2000]
        except OSError as e:
            raise UserError(f"cannot read --out {out} ({e.strerror}); choose another file") from None
        if f'content="{GENERATOR}' not in head:
            raise UserError(
                f"--out {out} exists and is not a ticketlab report; choose another file (nothing was overwritten)"
            )
    if not paths:
        raise UserError("give at least one run directory, seed group, sweep or folder of runs")
    sections = [s for p in paths for s in section(Path(p))]
    comp = comparison(sections)
    page = render(([comp] if comp else []) + sections, [str(p) for p in paths])
    write_text(out, page)  # atomically, through a temporary file of a name of its own
    return out
