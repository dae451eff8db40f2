"""Training step time of masked nets (LeNet-300-100, a 784-4096-4096-10 MLP, Conv-2): dense torch, ticketlab's
masked dense step, ticketlab's sparse kernels (and auto, which picks per layer by measurement), and SparseProp
(Nikdan et al. 2023) where it is installed.

A step is forward + cross-entropy + backward + SGD (momentum 0.9) on a random batch of 28x28 inputs, 10
classes; every Linear and Conv2d weight has the density given (uniform, random mask). Times are medians of
--repeats interleaved runs after a warm-up, in ms, with each column's ratio to dense torch. SparseProp is not a
dependency (`pip install pybind11 scipy`, then `pip install --no-deps --no-build-isolation sparseprop`); without
it its column is blank.

    .venv/bin/python benchmarks/bench_sparse_training.py [--nets lenet300,mlp4096,conv2] [--thread-counts 1,2]
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from common import interleaved, median, parser
from torch import nn

from ticketlab.models import build_model
from ticketlab.sparse import MaskEnforcer, prunable_names
from ticketlab.sparse.kernels import SparseKernels, available

NETS = {"lenet300": "lenet300", "mlp4096": "mlp-4096-4096", "conv2": "conv2"}


def sparseprop():
    try:
        from sparseprop.modules import SparseConv2d, SparseLinear
    except ImportError:
        return None
    return {nn.Linear: SparseLinear, nn.Conv2d: SparseConv2d}


def to_sparseprop(model: nn.Module, classes: dict) -> nn.Module:
    """Every Linear and Conv2d swapped for SparseProp's module of the same (masked) weights."""
    for name, child in model.named_children():
        if type(child) in classes:
            setattr(model, name, classes[type(child)].from_dense(child))
        else:
            to_sparseprop(child, classes)
    return model


def step_fn(model, opt, x, y, enforcer=None):
    def step():
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        (enforcer or opt).step()

    return step


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--nets", default="lenet300,mlp4096,conv2")
    p.add_argument("--densities", default="1,0.2,0.1,0.05,0.02")
    p.add_argument("--batches", default="64,256")
    p.add_argument("--thread-counts", default="1,2", help="comma list of torch thread counts")
    p.set_defaults(repeats=5)
    args = p.parse_args()
    sp = sparseprop()
    ok = available()
    print(
        f"ms per training step (median of {args.repeats} interleaved, after a warm-up); ratio to dense torch; "
        f"sparse kernels {'built' if ok else 'unavailable'}; SparseProp {'present' if sp else 'absent'}"
    )
    print(f"{'net':>9} {'batch':>5} {'thr':>3} {'density':>7} | {'dense':>7} | {'masked':>13} | "
          f"{'sparse':>13} | {'auto':>13} | {'sparseprop':>13}")  # fmt: skip
    for threads in [int(t) for t in args.thread_counts.split(",")]:
        torch.set_num_threads(threads)
        for net in args.nets.split(","):
            for batch in [int(b) for b in args.batches.split(",")]:
                g = torch.Generator().manual_seed(0)
                x = torch.randn(batch, 1, 28, 28, generator=g)
                y = torch.randint(0, 10, (batch,), generator=g)
                for density in [float(d) for d in args.densities.split(",")]:
                    base = build_model(NETS[net], (1, 28, 28), 10, seed=0)
                    params = dict(base.named_parameters())
                    mask = {n: torch.rand(params[n].shape, generator=g) < density for n in prunable_names(base)}

                    def sgd(m):
                        return torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9)

                    fns, ctx = {}, []
                    dense = copy.deepcopy(base)
                    fns["dense"] = step_fn(dense, sgd(dense), x, y)
                    masked = copy.deepcopy(base)
                    o = sgd(masked)
                    fns["masked"] = step_fn(masked, o, x, y, MaskEnforcer(masked, mask, o, after_step=False))
                    if ok:
                        for mode in ("sparse", "auto"):
                            m = copy.deepcopy(base)
                            o = sgd(m)
                            e = MaskEnforcer(m, mask, o, after_step=False)
                            k = SparseKernels(m, lambda: mask, o, mode=mode, batch=batch).__enter__()
                            ctx.append(k)
                            fns[mode] = step_fn(m, o, x, y, e)
                    if sp is not None:
                        m = copy.deepcopy(base)
                        with torch.no_grad():
                            for n, w in m.named_parameters():
                                if n in mask:
                                    w.mul_(mask[n])
                        m = to_sparseprop(m, sp)
                        fns["sparseprop"] = step_fn(m, sgd(m), x, y)
                    for f in fns.values():
                        f()
                    t = {k: median(v) * 1000 for k, v in interleaved(fns, args.repeats).items()}
                    for k in ctx:
                        k.__exit__(None, None, None)
                    cells = [
                        f"{t[k]:7.1f} ({t[k] / t['dense']:.2f}x)" if k in t else f"{'':>13}"
                        for k in ("masked", "sparse", "auto", "sparseprop")
                    ]
                    print(f"{net:>9} {batch:>5} {threads:>3} {density:>7} | {t['dense']:7.1f} | " + " | ".join(cells),
                          flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
