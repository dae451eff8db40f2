"""``ticketlab export RUN``: a run's pruned model as files that are really smaller (and faster).

Formats (all safetensors with a JSON recipe, none needs pickle; files land in ``RUN/export/`` or, for an
IMP run, ``RUN/export/round_KK/``):

- ``dense.safetensors``: the masked model as trained, for reference (what a mask-only library ships);
- ``compact``: dead channels and neurons removed (``deploy.compact``), plus ``compact.json`` with the new
  widths; outputs equal the masked model's within float rounding;
- ``sparse``: the compact model with every Linear/Conv layer in CSR form and its kernel per batch size
  chosen by measurement on this machine (``deploy.sparse``); with onnxruntime installed, and where it measures
  faster at some batch size, the file also holds the compact model as ONNX and runs it there
  (``deploy.paths.FastestPath``);
- ``int8``: the compact model quantised to int8 (``deploy.quant``), calibrated on training examples; its
  test accuracy is reported next to the float model's (the accuracy cost).
- ``onnx``: ``dense.onnx``, ``compact.onnx`` and ``int8.onnx`` (ONNX Runtime's static quantisation of the
  compact model, QDQ), for ONNX Runtime (``deploy.onnx``); each is loaded back with onnxruntime and its
  outputs compared with ticketlab's (largest absolute difference over the test set, and for int8 the share of
  test predictions equal to the float compact model's).

An existing export file is reused, not rewritten (``force=True`` rewrites it).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from ..errors import UserError
from ..io import save_tensors, write_json
from ..train.loop import evaluate
from . import onnx
from .compact import compact, load_compact, save_compact, widths
from .files import load_sparse, save_sparse
from .paths import with_fastest_path
from .quant import load_int8, quantize_int8, save_int8
from .runs import RunModel, load_run
from .sparsify import sparsify

FORMATS = ("compact", "sparse", "int8")
# ``onnx``: the dense, compact and int8 forms for ONNX Runtime (deploy.onnx; optional extra ticketlab[onnx])
ALL_FORMATS = (*FORMATS, "onnx")
ONNX_FORMS = ("dense-onnx", "compact-onnx", "int8-onnx")


def _calibration(rm: RunModel, n: int) -> torch.Tensor:
    """``n`` training inputs drawn with a fixed seed: the int8 forms' calibration set."""
    x = rm.data.x_train.cpu()
    return x[torch.randperm(len(x), generator=torch.Generator().manual_seed(0))[:n]]


def _accuracy(model, data) -> float:
    with torch.no_grad():
        return evaluate(model, data.x_test.cpu(), data.y_test.cpu())[1]


def export_run(
    run_dir: str | Path,
    formats=FORMATS,
    *,
    round: int | None = None,
    data_dir: str | None = None,
    force: bool = False,
    calibration: int = 1024,
    repeats: int = 15,
    quiet: bool = False,
) -> dict:
    """Write the requested formats; returns {form: {"file", "bytes", "test_acc"}} (also export.json)."""
    bad = [f for f in formats if f not in ALL_FORMATS]
    if bad:
        raise UserError(f"unknown export format {bad[0]!r}; choose from {', '.join(ALL_FORMATS)}")
    if "onnx" in formats:
        onnx.require()
    return export_loaded(
        load_run(run_dir, round, data_dir), formats, force=force, calibration=calibration, repeats=repeats, quiet=quiet
    )[0]


def export_loaded(
    rm: RunModel,
    formats=FORMATS,
    *,
    force: bool = False,
    calibration: int = 1024,
    repeats: int = 15,
    quiet: bool = False,
) -> tuple[dict, dict]:
    """``export_run`` for a run already loaded; returns (info, {form: the model loaded back from its file})."""

    shape = tuple(rm.recipe["input_shape"])
    out = rm.export_dir
    out.mkdir(parents=True, exist_ok=True)
    small = compact(rm.model, shape)
    recipe = dict(rm.recipe, widths=widths(small), source=rm.label)
    files = {
        "dense": out / "dense.safetensors",
        **{f: out / f"{f}.safetensors" for f in FORMATS},
        **{f: out / f"{f.removesuffix('-onnx')}.onnx" for f in ONNX_FORMS},
    }
    todo = ["dense", *(f for f in formats if f != "onnx")] + (list(ONNX_FORMS) if "onnx" in formats else [])
    for form in todo:
        path = files[form]
        if path.exists() and not force:
            continue
        if not quiet:
            print(f"export: writing {path}", file=sys.stderr, flush=True)
        if form == "dense":
            save_tensors(path, {k: v.contiguous() for k, v in rm.model.state_dict().items()})
        elif form == "compact":
            save_compact(small, path, rm.recipe)
            write_json(out / "compact.json", recipe)
        elif form == "sparse":
            eager = sparsify(small, input_shape=shape, repeats=repeats)
            save_sparse(with_fastest_path(eager, small, shape, repeats=max(3, repeats // 2)), path, recipe)
        elif form == "int8":
            save_int8(quantize_int8(small, _calibration(rm, calibration)), path, recipe)
        elif form == "dense-onnx":
            onnx.to_onnx(rm.model, shape, path)
        elif form == "compact-onnx":
            onnx.to_onnx(small, shape, path)
        else:
            if not files["compact-onnx"].exists():
                onnx.to_onnx(small, shape, files["compact-onnx"])
            onnx.quantize_int8(files["compact-onnx"], path, _calibration(rm, calibration))
    loaders = {
        "dense": lambda p: rm.model,
        "compact": lambda p: load_compact(p)[0],
        "sparse": lambda p: load_sparse(p)[0],
        "int8": lambda p: load_int8(p)[0],
        **{f: (lambda p: onnx.OrtModel(p)) for f in ONNX_FORMS},
    }
    models = {form: loaders[form](files[form]) for form in todo}
    info = {
        form: {
            "file": str(files[form]),
            "bytes": files[form].stat().st_size,
            "test_acc": _accuracy(models[form], rm.data),
        }
        for form in todo
    }
    if "sparse" in models and hasattr(models["sparse"], "paths"):  # a FastestPath: its ONNX model is inside
        info["sparse"]["onnx_bytes"] = int(models["sparse"].onnx_model.numel())
        info["sparse"]["paths"] = {str(b): p for b, p in models["sparse"].paths.items()}
    x_test = rm.data.x_test.cpu()
    for form, ref in (("dense-onnx", rm.model), ("compact-onnx", small)):
        if form in models:
            info[form]["max_abs_diff"] = onnx.max_difference(ref.eval(), models[form], x_test)
    if "int8-onnx" in models:
        with torch.no_grad():
            same = (models["int8-onnx"](x_test).argmax(1) == small.eval()(x_test).argmax(1)).float().mean()
        info["int8-onnx"]["same_predictions"] = float(same)
    info["source"] = rm.label
    info["params"] = {
        "dense": sum(p.numel() for p in rm.model.parameters()),
        "kept": int(sum(int(m.sum()) for m in rm.mask.values())),
        "masked": int(sum(m.numel() for m in rm.mask.values())),
        "compact": sum(p.numel() for p in small.parameters()),
    }
    write_json(out / "export.json", info)
    return info, models


def format_export(info: dict) -> str:
    lines = [
        f"{info['source']}: {info['params']['kept']:,} of {info['params']['masked']:,} prunable weights kept; "
        f"compact model {info['params']['compact']:,} parameters (dense {info['params']['dense']:,})"
    ]
    dense = info["dense"]
    for form in ("dense", *FORMATS, *ONNX_FORMS):
        if form in info:
            d = info[form]
            extra = (
                f"  max |diff| {d['max_abs_diff']:.1e}"
                if "max_abs_diff" in d
                else f"  same predictions {100 * d['same_predictions']:.2f}%"
                if "same_predictions" in d
                else f"  (includes the compact ONNX model, {d['onnx_bytes']:,} bytes, for batch sizes "
                f"{','.join(b for b, p in d['paths'].items() if p == 'onnxruntime')})"
                if "onnx_bytes" in d
                else ""
            )
            lines.append(
                f"  {form:12s} {d['bytes']:>11,} bytes ({d['bytes'] / dense['bytes']:.3f} of dense)  "
                f"test acc {d['test_acc']:.4f} ({d['test_acc'] - dense['test_acc']:+.4f}){extra}  {d['file']}"
            )
    return "\n".join(lines)


__all__ = ["ALL_FORMATS", "FORMATS", "export_run", "format_export"]
