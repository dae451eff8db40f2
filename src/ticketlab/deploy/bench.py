"""``ticketlab bench RUN``: latency, file size and accuracy of a run's dense, compact, sparse and int8 forms.

All forms are timed side by side in one process, interleaved (round r times every form once), and each
latency is the median over the rounds of one forward pass (a measurement loops enough calls to last
~20 ms). Threads are set with ``torch.set_num_threads`` and stated. The sparse form's kernels are re-tuned
at this thread count before timing, since the fastest kernel depends on it. With onnx and onnxruntime
installed, ONNX Runtime's dense, compact and int8 forms (``deploy.onnx``) are timed too, with as many
intra-op threads; every speedup is given against eager dense torch and against dense ONNX Runtime.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from ..flops import forward_flops
from ..io import write_json
from . import onnx
from .export import FORMATS, export_loaded
from .paths import FastestPath, choose_paths_
from .runs import load_run
from .sparsify import tune_model_
from .timing import time_forms


def bench_run(
    run_dir: str | Path,
    *,
    round: int | None = None,
    threads: int | None = None,
    batch_sizes=(1, 256),
    repeats: int = 7,
    data_dir: str | None = None,
    quiet: bool = False,
) -> dict:
    if threads is not None:
        torch.set_num_threads(threads)
    threads = torch.get_num_threads()
    rm = load_run(run_dir, round, data_dir)
    # ONNX Runtime's dense, compact and int8 forms beside ours, at the same intra-op thread count, when installed
    info, forms = export_loaded(rm, (*FORMATS, "onnx") if onnx.available() else FORMATS, quiet=quiet)
    shape = tuple(rm.recipe["input_shape"])
    sparse = forms["sparse"]
    tune_model_(sparse.eager if isinstance(sparse, FastestPath) else sparse, shape, tuple(batch_sizes))
    if isinstance(sparse, FastestPath):  # and the path per batch size, at this thread count
        choose_paths_(sparse, shape, tuple(batch_sizes), repeats)
    latency = {}
    for b in batch_sizes:
        x = rm.data.x_test[:b].cpu()
        if len(x) < b:
            x = x.repeat(math.ceil(b / len(x)), *[1] * (x.dim() - 1))[:b]
        latency[b] = time_forms(forms, x, repeats)
    flops = {
        "dense": sum(forward_flops(rm.model, shape).values()),
        "masked": sum(forward_flops(rm.model, shape, rm.mask).values()),
        "compact": sum(forward_flops(forms["compact"], shape).values()),
    }
    result = {
        "source": info["source"],
        "threads": threads,
        "repeats": repeats,
        "latency_s": {str(b): v for b, v in latency.items()},
        "speedup": {str(b): {k: v["dense"] / t for k, t in v.items()} for b, v in latency.items()},
        "speedup_vs_onnxruntime": {
            str(b): {k: v["dense-onnx"] / t for k, t in v.items()} for b, v in latency.items() if "dense-onnx" in v
        },
        "bytes": {k: info[k]["bytes"] for k in forms},
        "test_acc": {k: info[k]["test_acc"] for k in forms},
        "flops": flops,
        "params": info["params"],
    }
    write_json(rm.export_dir / f"bench-{threads}t.json", result)
    return result


def format_bench(r: dict) -> str:
    f, p = r["flops"], r["params"]
    lines = [
        f"{r['source']}: {r['threads']} thread(s), median of {r['repeats']} interleaved rounds; "
        f"density {p['kept'] / p['masked']:.4f}; forward FLOPs masked/dense {f['masked'] / f['dense']:.4f}, "
        f"compact/dense {f['compact'] / f['dense']:.4f}"
    ]
    sizes = list(r["latency_s"])
    ort = r.get("speedup_vs_onnxruntime") or {}
    head = (
        "  form         "
        + "".join(f"{'batch ' + b + ' ms':>14s}{'x dense':>9s}" + (f"{'x ort':>8s}" if ort else "") for b in sizes)
        + f"{'file bytes':>13s}{'x dense':>9s}{'test acc':>10s}"
    )
    lines.append(head)
    for form in r["bytes"]:
        row = f"  {form:12s} "
        for b in sizes:
            row += f"{1e3 * r['latency_s'][b][form]:14.4f}{r['speedup'][b][form]:9.2f}"
            if ort:
                row += f"{ort[b][form]:8.2f}"
        row += f"{r['bytes'][form]:13,d}{r['bytes'][form] / r['bytes']['dense']:9.3f}{r['test_acc'][form]:10.4f}"
        lines.append(row)
    return "\n".join(lines)


__all__ = ["bench_run", "format_bench", "time_forms"]
