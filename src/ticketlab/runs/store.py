"""The run store: the run directories under a folder, read from their own files (nothing else to keep in
sync). Each entry: path, kind, key settings, state (done / partial / failed / empty) and headline metrics."""

from __future__ import annotations

from pathlib import Path

from ..errors import UserError
from ..io import read_json, read_json_or_none
from .check import READ_ERRORS
from .experiment import experiments
from .rundir import CONFIG_FILE
from .seeds import KIND as SEEDS
from .seeds import display, is_stat
from .sweep import KIND as SWEEP

KEY_SETTINGS = (
    "model",
    "dataset",
    "method",
    "density",
    "criterion",
    "rounds",
    "target_density",
    "sparsity",
    "min_density",
)


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out |= _flat(v, f"{prefix}{k}.")
        else:
            out[f"{prefix}{k}"] = v
    return out


def run_record(run: Path) -> dict | None:
    """A run directory's config.json ({"kind", "config", ...}), or None when ``run`` holds no readable one."""
    rec = read_json_or_none(run / CONFIG_FILE)
    return rec if isinstance(rec, dict) and "kind" in rec and isinstance(rec.get("config"), dict) else None


def _damaged(run: Path, root: Path, reason: str) -> dict:
    return {
        "path": str(run.relative_to(root)),
        "kind": "?",
        "settings": {},
        "state": "damaged",
        "metrics": {},
        "config": {},
        "reason": reason,
    }


def describe(run: Path, root: Path) -> dict | None:
    """One entry of the store, or None when ``run`` is not a ticketlab run directory. A folder whose
    config.json, summary.json or sweep.json cannot be read is listed as ``damaged``, with the reason."""
    rec = run_record(run)
    try:
        return _describe(run, root, rec)
    except READ_ERRORS:  # only once ``rec`` is a run record: the files beside it are of the wrong shape
        return _damaged(run, root, "config.json, summary.json or sweep.json is not of its kind's shape") | {
            "kind": str(rec["kind"])
        }


def _describe(run: Path, root: Path, rec: dict | None) -> dict | None:
    if rec is None:
        if not (run / CONFIG_FILE).is_file():
            return None
        try:
            obj = read_json(run / CONFIG_FILE)
        except UserError:
            return _damaged(run, root, "config.json is not JSON")
        if not isinstance(obj, dict) or "kind" not in obj:
            return None  # another program's config.json
        return _damaged(run, root, "config.json is not a ticketlab run config")
    if (run / "summary.json").is_file() and not isinstance(read_json_or_none(run / "summary.json"), dict):
        return _damaged(run, root, "summary.json is not a JSON object") | {"kind": str(rec["kind"])}
    kind, config = rec["kind"], rec["config"]
    exps = experiments()
    varied: list[str] = []  # a sweep's axes: not fixed settings
    entry = {
        "path": str(run.relative_to(root)),  # "." for the root itself
        "kind": kind,
        "settings": {},
        "state": "empty",
        "metrics": {},
    }
    summary = read_json_or_none(run / "summary.json")
    if kind == SEEDS:
        name = config.get("experiment")
        entry["kind"] = f"{name} (seeds)"
        cfg = config.get("config")
        if isinstance(summary, dict) and summary.get("seeds"):
            entry["state"] = "done"
            entry["settings"]["seeds"] = len(summary["seeds"])
            entry["metrics"] = summary.get("headline", {})
    elif kind == SWEEP:
        entry["kind"] = f"{config.get('experiment')} (sweep)"
        cfg = config.get("fixed")
        varied = [a[0] for a in config.get("axes", []) if isinstance(a, list) and a]
        entry["settings"]["axes"] = ",".join(varied)
        sw = read_json_or_none(run / "sweep.json")
        if isinstance(sw, dict):
            states = [p.get("state") for p in sw.get("points", [])]
            entry["state"] = (
                "failed" if sw.get("failed") else "done" if states and all(s == "done" for s in states) else "partial"
            )
            entry["settings"]["points"] = len(states)
    else:
        cfg = config
        if isinstance(summary, dict):
            marker = exps.get(kind).done_file if kind in exps else None
            entry["state"] = "done" if marker is None or (run / marker).exists() else "partial"
            if kind in exps:
                try:
                    entry["metrics"] = exps.get(kind).headline(summary)
                except (KeyError, TypeError, IndexError, ZeroDivisionError):
                    pass
        elif any(run.rglob("checkpoint.safetensors")) or any(p.is_dir() for p in run.iterdir()):
            entry["state"] = "partial"
    flat = _flat(cfg) if isinstance(cfg, dict) else {}
    for k in KEY_SETTINGS:
        if flat.get(k) is not None and k not in varied:
            entry["settings"][k] = flat[k]
    entry["config"] = flat
    return entry


def list_runs(root: str | Path, recursive: bool = False) -> list[dict]:
    """The runs in ``root`` (itself, or its sub-folders; ``recursive``: at any depth)."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root} is not a directory; give a folder of runs (default: runs/)")
    found = []
    me = describe(root, root)
    if me is not None and not recursive:
        children = []
        if me["kind"].endswith("(sweep)"):
            children = sorted(p for p in root.iterdir() if p.is_dir())
        elif me["kind"].endswith("(seeds)"):
            children = sorted(p for p in root.glob("seed_*") if p.is_dir())
        return [me] + [e for e in (describe(c, root) for c in children) if e is not None]
    paths = sorted(root.rglob(CONFIG_FILE)) if recursive else sorted(p / CONFIG_FILE for p in root.iterdir())
    for cfg_file in paths:
        if cfg_file.is_file():
            e = describe(cfg_file.parent, root)
            if e is not None:
                found.append(e)
    return found


def matches(entry: dict, where: list[str]) -> bool:
    for w in where:
        key, sep, value = w.partition("=")
        if not sep or not key:
            raise UserError(f"--where expects KEY=VALUE, got {w!r}")
        cfg = entry["config"]
        hits = [v for k, v in cfg.items() if k == key or k.endswith("." + key)]
        if key in entry["settings"]:
            hits.append(entry["settings"][key])
        if not any(str(v) == value or (isinstance(v, float) and _float(value) == v) for v in hits):
            return False
    return True


def _float(text: str):
    try:
        return float(text)
    except ValueError:
        return None


def metric_value(entry: dict, name: str):
    v = entry["metrics"].get(name)
    return v["mean"] if is_stat(v) else v if isinstance(v, (int, float)) else None


def format_runs(entries: list[dict], metric: str = "test_acc") -> str:
    if not entries:
        return "no runs found"
    rows = []
    for e in entries:
        settings = e.get("reason") or " ".join(f"{k}={v}" for k, v in e["settings"].items())
        m = display(e["metrics"].get(metric))
        rows.append([e["path"], e["kind"], e["state"], "" if m is None else format(m, ".4f"), settings])
    head = ["run", "kind", "state", metric, "settings"]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    fmt = lambda cs: "  ".join(f"{c:<{w}}" for c, w in zip(cs, widths)).rstrip()  # noqa: E731
    return "\n".join([fmt(head), *(fmt(r) for r in rows)])
