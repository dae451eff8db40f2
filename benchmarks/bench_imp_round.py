"""An IMP run's wall time through ticketlab vs a minimal hand-written PyTorch loop over the same tensors.

Both do the same work: lenet300 on fashion-mnist (or --dataset), Adam, batch 60, evaluation on validation
and test every 100 iterations, a dense round then one magnitude-pruned round (20% / output 10%) rewound
to init. ticketlab additionally writes its run directory (weights, masks, metrics, checkpoints, plots).
Prints the median over interleaved repetitions of (ticketlab time / hand-written time).

    .venv/bin/python benchmarks/bench_imp_round.py [--iterations N] [--threads N] [--repeats R]
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from common import interleaved, median, parser, ratio_median  # noqa: E402

from ticketlab.data import load_dataset  # noqa: E402
from ticketlab.lottery import IMPConfig, imp  # noqa: E402
from ticketlab.models import build_model  # noqa: E402
from ticketlab.train import TrainConfig  # noqa: E402


def hand_written(data, iterations: int, eval_every: int) -> None:
    """The minimal loop a researcher would write by hand: no files, no checkpoints."""
    model = build_model("lenet300", data.input_shape, 10, seed=0)
    init = {k: v.clone() for k, v in model.state_dict().items()}
    weights = [m.weight for m in model if isinstance(m, torch.nn.Linear)]
    masks = [torch.ones_like(w) for w in weights]
    n = len(data.y_train)

    def evaluate(x, y):
        with torch.no_grad():
            out = model(x)
            return F.cross_entropy(out, y).item(), (out.argmax(1) == y).float().mean().item()

    for rnd in range(2):
        opt = torch.optim.Adam(model.parameters(), lr=1.2e-3)
        g = torch.Generator().manual_seed(0)
        perm, pos = torch.randperm(n, generator=g), 0
        for it in range(iterations):
            if pos + 60 > n:
                perm, pos = torch.randperm(n, generator=g), 0
            idx = perm[pos : pos + 60]
            pos += 60
            loss = F.cross_entropy(model(data.x_train[idx]), data.y_train[idx])
            opt.zero_grad()
            loss.backward()
            for w, m in zip(weights, masks):
                w.grad.mul_(m)
            opt.step()
            with torch.no_grad():
                for w, m in zip(weights, masks):
                    w.mul_(m)
            if (it + 1) % eval_every == 0:
                evaluate(data.x_val, data.y_val)
                evaluate(data.x_test, data.y_test)
        if rnd == 0:  # prune 20% of the remaining weights per layer (output layer 10%), rewind to init
            for i, (w, m) in enumerate(zip(weights, masks)):
                rate = 0.1 if i == len(weights) - 1 else 0.2
                k = int(round(m.numel() * (1 - rate)))
                thresh = (w.detach().abs() * m).flatten().kthvalue(m.numel() - k).values
                m.copy_((w.detach().abs() > thresh).float())
            model.load_state_dict(init)


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--iterations", type=int, default=2000)
    p.add_argument("--dataset", default="fashion-mnist")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    data = load_dataset(args.dataset)
    cfg = IMPConfig(
        model="lenet300",
        dataset=args.dataset,
        rounds=1,
        train=TrainConfig(optimizer="adam", lr=1.2e-3, batch_size=60, iterations=args.iterations, eval_every=100),
    )

    def ticketlab_run():
        out = Path(tempfile.mkdtemp()) / "run"
        try:
            imp(cfg, out, data=data, quiet=True)
        finally:
            shutil.rmtree(out.parent)

    t = interleaved(
        {"ticketlab": ticketlab_run, "hand": lambda: hand_written(data, args.iterations, 100)}, args.repeats
    )
    print(
        f"IMP (2 rounds x {args.iterations} iterations, lenet300 on {args.dataset}), torch threads = "
        f"{args.threads}, median of {args.repeats} interleaved repeats"
    )
    print(
        f"hand-written loop: {median(t['hand']):.2f} s   ticketlab imp: {median(t['ticketlab']):.2f} s   "
        f"ticketlab / hand-written = {ratio_median(t['ticketlab'], t['hand']):.3f}"
    )


if __name__ == "__main__":
    main()
