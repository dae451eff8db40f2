"""The verification checks that need a GPU (run on a lent machine; every figure names the card):
bounds on CUDA equal the CPU's and hold for sampled points, certified training on CUDA keeps masks exact and
repeats itself, `ticketlab imp --certified` and `ticketlab verify` run with --device cuda, and the time per
sample of the bounds and of a certified training step.

    PYTHONPATH=src python3 benchmarks/verify_cuda.py
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
from torch import nn

from ticketlab.data import build_dataset, load_dataset
from ticketlab.models import build_model
from ticketlab.train import TrainConfig, train
from ticketlab.verify.bounds import alpha_crown, crown, ibp, input_box, margin_spec, pre_bounds
from ticketlab.verify.graph import to_ops

dev = torch.device(sys.argv[1] if len(sys.argv) > 1 else "cuda")  # "cpu": a dry run of the script
if dev.type == "cpu":
    torch.cuda.synchronize = lambda: None
print("device:", torch.cuda.get_device_name(0) if dev.type == "cuda" else "cpu", "torch", torch.__version__, flush=True)

# 1. bounds on CUDA = bounds on the CPU, and sound
torch.manual_seed(0)
cnn = (
    nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(4, 4, 3),
        nn.ReLU(),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(36, 20),
        nn.ReLU(),
        nn.Linear(20, 5),
    )
    .double()
    .eval()
)
with torch.no_grad():
    cnn[1].running_mean.normal_()
    cnn[1].running_var.uniform_(0.5, 2)
x = torch.rand(16, 1, 16, 16, dtype=torch.float64)
y = cnn(x).argmax(1)
worst = 0.0
for method in ("ibp", "crown", "alpha"):
    out = {}
    for d in ("cpu", dev.type):
        net = cnn.to(d)
        ops = to_ops(net, (1, 16, 16))
        lo, hi = input_box(x.to(d), 0.03, (0.0, 1.0))
        C = margin_spec(y.to(d), 5).double()
        b = {
            "ibp": lambda: ibp(ops, lo, hi, C),
            "crown": lambda: crown(ops, lo, hi, C),
            "alpha": lambda: alpha_crown(ops, lo, hi, C),
        }[method]()
        out[d] = b.lower.detach().cpu()
        if d == dev.type:
            pts = lo + (hi - lo) * torch.rand(2000, *lo.shape, dtype=torch.float64, device=d)
            m = torch.stack([(C @ net(p)[..., None])[..., 0] for p in pts])
            assert (m >= b.lower - 1e-9).all(), method
    worst = max(worst, float((out["cpu"] - out[dev.type]).abs().max()))
print(f"bounds: CUDA = CPU within {worst:.1e} (float64), 2000 sampled points per sample inside them", flush=True)

# 2. certified training on CUDA: masks exact, the same run twice gives the same weights
digits = load_dataset("digits", None, quiet=True).to(dev)
runs = []
for _ in range(2):
    model = build_model("mlp1d", digits.input_shape, 10, seed=0).to(dev)
    g = torch.Generator().manual_seed(0)
    mask = {
        n: (torch.rand(p.shape, generator=g) < 0.2).float().to(dev)
        for n, p in model.named_parameters()
        if n.endswith("weight")
    }
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n in mask:
                p.mul_(mask[n])
    train(
        model,
        digits,
        TrainConfig(iterations=300, batch_size=64, eval_every=300, certified="crown-ibp", cert_eps=0.05),
        mask=mask,
        seed=0,
    )
    assert all(torch.all(p[mask[n] == 0] == 0) for n, p in model.named_parameters() if n in mask)
    runs.append(torch.cat([p.detach().flatten() for p in model.parameters()]).cpu())
print(
    f"certified training on CUDA: masks exact; two runs differ by at most {float((runs[0] - runs[1]).abs().max()):.1e}",
    flush=True,
)

# 3. the CLI with --device cuda
with tempfile.TemporaryDirectory() as tmp:
    cmd = [
        sys.executable,
        "-m",
        "ticketlab",
        "imp",
        "--dataset",
        "digits",
        "--model",
        "mlp1d",
        "--iterations",
        "300",
        "--rounds",
        "2",
        "--certified",
        "crown-ibp",
        "--cert-eps",
        "0.05",
        "--device",
        dev.type,
        "--quiet",
        "--out",
        f"{tmp}/imp",
    ]
    t = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    t_imp = time.perf_counter() - t
    t = time.perf_counter()
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "ticketlab",
            "verify",
            f"{tmp}/imp",
            "--eps",
            "0.05",
            "--samples",
            "200",
            "--method",
            "all",
            "--device",
            dev.type,
            "--quiet",
            "--timeout",
            "10",
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    print(
        f"CLI on CUDA: imp (3 trainings x 300 steps) {t_imp:.1f} s, verify {time.perf_counter() - t:.1f} s", flush=True
    )
    print(r.stdout, flush=True)


# 4. time per sample of the bounds (lenet300-sized MLP and cnn-small, float64 and float32, batch 256)
def timed(fn, reps=5):
    fn()
    torch.cuda.synchronize()
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        ts.append(time.perf_counter() - t)
    return float(np.median(ts))


print("ms per sample at batch 256, eps 0.02 (median of 5):")
for name in ("lenet300", "cnn-small"):
    for dtype in (torch.float32, torch.float64):
        net = build_model(name, (1, 28, 28), 10, seed=0).to(dev, dtype).eval()
        ops = to_ops(net, (1, 28, 28))
        x = torch.rand(256, 1, 28, 28, device=dev, dtype=dtype)
        lo, hi = input_box(x, 0.02, (0.0, 1.0))
        C = margin_spec(net(x).argmax(1), 10).to(dtype)
        with torch.no_grad():
            t_ibp = timed(lambda: ibp(ops, lo, hi, C))
            t_crown = timed(lambda: crown(ops, lo, hi, C, upper=False), reps=3)
            pre, _ = pre_bounds(ops, lo, hi)
        t_alpha = timed(lambda: alpha_crown(ops, lo, hi, C, pre=pre), reps=3)
        print(
            f"  {name:<10} {str(dtype)[6:]:<8} ibp {1000 * t_ibp / 256:.4f}  crown {1000 * t_crown / 256:.3f}  "
            f"alpha-crown (after crown) {1000 * t_alpha / 256:.3f}",
            flush=True,
        )

# 5. a training step: natural, IBP, CROWN-IBP (lenet300 and cnn-small, batch 100, random 28x28 data)
rng = np.random.default_rng(0)
xs = rng.random((2000, 1, 28, 28)).astype(np.float32)
data = build_dataset(
    "rand",
    xs[:1800],
    rng.integers(0, 10, 1800),
    xs[1800:],
    rng.integers(0, 10, 200),
    val_size=100,
    num_classes=10,
    pixel_range=(0.0, 1.0),
).to(dev)
print("training steps per second (batch 100, 200 steps):")
for name in ("lenet300", "cnn-small"):
    row = []
    for cert in ("none", "ibp", "crown-ibp"):
        model = build_model(name, (1, 28, 28), 10, seed=0).to(dev)
        kw = {} if cert == "none" else {"certified": cert, "cert_eps": 0.1, "cert_start": 0.0, "cert_ramp": 0.0}
        cfg = TrainConfig(iterations=200, batch_size=100, eval_every=200, **kw)
        train(model, data, TrainConfig(iterations=5, batch_size=100, eval_every=5, **kw), seed=0)
        torch.cuda.synchronize()
        t = time.perf_counter()
        train(model, data, cfg, seed=0)
        torch.cuda.synchronize()
        row.append(f"{cert} {200 / (time.perf_counter() - t):.0f}")
    print(f"  {name:<10} " + ", ".join(row), flush=True)
