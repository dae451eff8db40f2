"""Complete verification per image and per solver: branch and bound (beta-CROWN), the MILP and Marabou (where
maraboupy is installed) on the same nets, images, eps and time limit: verdict counts, timeouts, seconds per
image (mean and median), and any disagreement between two solvers that both decided an image (there must be
none). Nets: LeNet-300-100 and cnn-small on Fashion-MNIST, one-shot lottery tickets (trained dense from seed 0,
pruned globally by magnitude to each density, rewound to the initialisation, retrained with the mask) trained
naturally, with PGD or with CROWN-IBP at the training's eps; each verified at that eps on the first --images
test images, one CPU thread.

    .venv/bin/python benchmarks/bench_verify_complete.py [--models lenet300,cnn-small]
        [--trainings natural:0.01,pgd:0.02,crown-ibp:0.1] [--densities 1,0.25,0.06] [--images 20] [--timeout 10]
        [--cache DIR]
"""

from __future__ import annotations

import copy
import statistics
import time
from pathlib import Path

import torch
from common import parser
from safetensors.torch import load_file, save_file

import ticketlab
from ticketlab.attacks import PixelSpace, to_pixels
from ticketlab.data import load_dataset
from ticketlab.models import build_model
from ticketlab.sparse import apply_mask_
from ticketlab.train import TrainConfig, train
from ticketlab.verify.complete import Complete
from ticketlab.verify.graph import to_ops


def training(kind: str, eps: float, iterations: int) -> TrainConfig:
    if kind == "natural":
        return TrainConfig(iterations=iterations)
    if kind == "pgd":
        return TrainConfig(iterations=iterations, adv="pgd", adv_eps=eps, adv_steps=7)
    if kind == "crown-ibp":
        return TrainConfig(iterations=iterations, certified="crown-ibp", cert_eps=eps)
    raise SystemExit(f"unknown training {kind!r}: natural, pgd or crown-ibp")


def ticket(name, data, cfg, density, cache=None):
    """The one-shot ticket, trained here or loaded from ``cache/<net>-<training>-<eps>-<iterations>-<density>``
    (``.safetensors``, written on its first training there): solvers re-run on the same nets without training."""
    model = build_model(name, data.input_shape, data.num_classes, seed=0)
    path = None
    if cache is not None:
        tag, eps = "natural", 0.0  # cfg.certified and cfg.adv are the string "none" when off
        if cfg.certified != "none":
            tag, eps = cfg.certified, cfg.cert_eps
        elif cfg.adv != "none":
            tag, eps = cfg.adv, cfg.adv_eps
        path = Path(cache) / f"{name}-{tag}-{eps:g}-{cfg.iterations}-{density:g}.safetensors"
        if path.exists():
            model.load_state_dict(load_file(path))
            return model.eval()
    model = _train_ticket(model, data, cfg, density)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, path)
    return model


def _train_ticket(model, data, cfg, density):
    init = copy.deepcopy(model.state_dict())
    train(model, data, cfg, seed=0)
    if density >= 1:
        return model.eval()
    mask = ticketlab.prune(model, density, "magnitude", "global")
    model.load_state_dict(init)
    apply_mask_(model, mask)
    train(model, data, cfg, mask=mask, seed=0)
    return model.eval()


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--models", default="lenet300,cnn-small")
    p.add_argument("--trainings", default="natural:0.01,pgd:0.02,crown-ibp:0.1")
    p.add_argument("--densities", default="1,0.25,0.06")
    p.add_argument("--solvers", default="bab,milp,marabou")
    p.add_argument("--images", type=int, default=20)
    p.add_argument("--timeout", type=float, default=10.0)
    p.add_argument("--iterations", type=int, default=2000)
    p.add_argument("--cache", default=None, help="folder that keeps the trained tickets (safetensors) for re-runs")
    p.set_defaults(threads=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    solvers = args.solvers.split(",")
    if "marabou" in solvers:
        try:
            import maraboupy  # noqa: F401
        except ImportError:
            print("maraboupy absent: Marabou's columns skipped (pip install 'ticketlab[verify]')")
            solvers.remove("marabou")
    data = load_dataset("fashion-mnist")
    x = to_pixels(data.x_test[: args.images], data).double()
    y = data.y_test[: args.images]
    print(
        f"threads {args.threads}; first {args.images} test images; {args.timeout:g} s per image; "
        "per solver: verified / falsified / timeout (+unknown), mean and median s per image"
    )
    print(f"| net, training, eps | density | clean | {' | '.join(solvers)} | disagreements |")
    print("|" + " --- |" * (4 + len(solvers)))
    for name in args.models.split(","):
        for spec in args.trainings.split(","):
            kind, eps = spec.split(":")
            eps = float(eps)
            for density in [float(d) for d in args.densities.split(",")]:
                model = ticket(name, data, training(kind, eps, args.iterations), density, args.cache)
                net = PixelSpace(copy.deepcopy(model).double().eval(), data.mean.double(), data.std.double())
                ops = to_ops(
                    copy.deepcopy(model).double().eval(), data.input_shape, data.mean.double(), data.std.double()
                )
                with torch.no_grad():
                    clean = float((net(x).argmax(1) == y).double().mean())
                verdicts, cells = {}, []
                for s in solvers:
                    c = Complete(ops, net, data.num_classes, eps, data.pixel_range, s, args.timeout)
                    vs, ts = [], []
                    for i in range(len(y)):
                        t = time.perf_counter()
                        vs.append(c(x[i], int(y[i])).verdict)
                        ts.append(time.perf_counter() - t)
                    verdicts[s] = vs
                    n = {k: vs.count(k) for k in ("verified", "falsified", "timeout", "unknown")}
                    cells.append(
                        f"{n['verified']} / {n['falsified']} / {n['timeout']}"
                        + (f" (+{n['unknown']})" if n["unknown"] else "")
                        + f", {statistics.mean(ts):.2f} / {statistics.median(ts):.2f} s"
                    )
                decided = ("verified", "falsified")
                clash = sum(
                    1 for i in range(len(y)) if len({verdicts[s][i] for s in solvers if verdicts[s][i] in decided}) > 1
                )
                print(
                    f"| {name}, {kind}, {eps:g} | {density:.2f} | {clean:.2f} | {' | '.join(cells)} | {clash} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
