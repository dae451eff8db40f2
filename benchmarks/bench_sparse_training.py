"""Training step time of masked MLPs: dense torch, ticketlab's masked dense step, ticketlab's sparse kernels (and
auto, which picks per layer by measurement), and SparseProp (Nikdan et al. 2023) where it is installed.

A step is forward + cross-entropy + backward + SGD (momentum 0.9) on a random batch; every layer's weight has
the density given (uniform, random mask). Times are medians of --repeats interleaved runs after a warm-up, in
ms, with each column's ratio to dense torch. SparseProp is not a dependency (`pip install pybind11 scipy`,
then `pip install --no-deps --no-build-isolation sparseprop`); without it its column is blank.

    .venv/bin/python benchmarks/bench_sparse_training.py [--nets lenet300,mlp4096] [--thread-counts 1,2]
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from common import interleaved, median, parser
from torch import nn

from ticketlab.sparse import MaskEnforcer
from ticketlab.sparse.kernels import SparseKernels, available

NETS = {"lenet300": (784, 300, 100, 10), "mlp4096": (784, 4096, 4096, 10)}


def mlp(sizes: tuple[int, ...]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers[:-1])


def sparseprop():
    try:
        from sparseprop.modules import SparseLinear
    except ImportError:
        return None
    return SparseLinear


def step_fn(model, opt, x, y, enforcer=None):
    def step():
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        (enforcer or opt).step()

    return step


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--nets", default="lenet300,mlp4096")
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
            sizes = NETS[net]
            for batch in [int(b) for b in args.batches.split(",")]:
                g = torch.Generator().manual_seed(0)
                x = torch.randn(batch, sizes[0], generator=g)
                y = torch.randint(0, sizes[-1], (batch,), generator=g)
                for density in [float(d) for d in args.densities.split(",")]:
                    torch.manual_seed(0)
                    base = mlp(sizes)
                    mask = {n: torch.rand(w.shape, generator=g) < density for n, w in base.named_parameters()
                            if n.endswith("weight")}  # fmt: skip

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
                        for i, layer in enumerate(m):
                            if isinstance(layer, nn.Linear):
                                m[i] = sp.from_dense(layer)
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
