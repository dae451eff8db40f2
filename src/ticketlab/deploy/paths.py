"""The fastest path per batch size: ticketlab's eager sparse layers, or ONNX Runtime on the compact model.

At small batches a sparse MLP's few tiny kernels cost less than the Python around them, and ONNX Runtime's
dense graph of the compact model (no per-layer Python) wins; at large batches the sparse kernels do. So the
deployed sparse form is a ``FastestPath``: both paths, and per measured batch size the one that was faster on
this machine (the nearest measured size, in log scale, decides at run time). The ONNX model travels inside
the sparse file as a uint8 tensor (no second file, no pickle); without onnxruntime at load time the eager
path serves every batch size.
"""

from __future__ import annotations

import os
import tempfile

import torch
from torch import nn

from . import onnx
from .sparse import nearest_batch
from .timing import time_forms

PATHS = ("eager", "onnxruntime")
_OUT = ["logits"]


class FastestPath(nn.Module):
    def __init__(self, eager: nn.Module, onnx_model: bytes | torch.Tensor, paths: dict[int, str]):
        super().__init__()
        self.eager = eager
        raw = onnx_model if torch.is_tensor(onnx_model) else torch.frombuffer(bytearray(onnx_model), dtype=torch.uint8)
        self.register_buffer("onnx_model", raw.clone())
        self.paths = dict(paths)
        self._session = None
        self._threads = None
        self._choice: dict[int, str] = {}

    @property
    def paths(self) -> dict[int, str]:
        return self._paths

    @paths.setter
    def paths(self, table: dict[int, str]) -> None:
        if not table or any(v not in PATHS for v in table.values()):
            raise ValueError(f"paths must map batch sizes to one of {PATHS}, got {table}")
        self._paths = {int(b): v for b, v in table.items()}
        self._choice = {}

    def path_for(self, batch: int) -> str:
        choice = self._choice.get(batch)
        if choice is None:
            choice = self._choice[batch] = self._paths[nearest_batch(self._paths, batch)]
            if choice == "onnxruntime" and not onnx.available():
                choice = self._choice[batch] = "eager"
        return choice

    def session(self):
        threads = torch.get_num_threads()
        if self._session is None or self._threads != threads:  # as many intra-op threads as torch has now
            self._session = onnx.session(self.onnx_model.numpy().tobytes(), threads)
            self._threads = threads
        return self._session

    def forward(self, x: torch.Tensor, path: str | None = None) -> torch.Tensor:
        if (path or self._choice.get(x.shape[0]) or self.path_for(x.shape[0])) == "eager":
            return self.eager(x)
        sess = self._session if self._threads == torch.get_num_threads() else self.session()
        return torch.from_numpy(sess.run(_OUT, {"input": x.detach().cpu().float().numpy()})[0])

    def __call__(self, x: torch.Tensor, path: str | None = None) -> torch.Tensor:
        # straight to forward: nn.Module's call machinery (hooks) costs about as much as a batch-1 ONNX run
        return self.forward(x, path)

    def extra_repr(self) -> str:
        return f"paths={self._paths}, onnx bytes={self.onnx_model.numel()}"


@torch.no_grad()
def choose_paths_(
    model: FastestPath, input_shape: tuple[int, ...], batch_sizes=(1, 256), repeats: int = 7, seed: int = 0
) -> dict[int, dict[str, float]]:
    """Time both paths at each batch size (interleaved) and keep the faster per size; returns the timings."""
    if not onnx.available():
        model.paths = {b: "eager" for b in batch_sizes}
        return {}
    g = torch.Generator().manual_seed(seed)
    timings = {}
    for b in batch_sizes:
        x = torch.randn(b, *input_shape, generator=g)
        timings[b] = time_forms({p: lambda v, p=p: model(v, path=p) for p in PATHS}, x, repeats)
    model.paths = {b: min(PATHS, key=lambda p: t[p]) for b, t in timings.items()}
    return timings


def with_fastest_path(
    eager: nn.Module, compact_model: nn.Module, input_shape: tuple[int, ...], batch_sizes=(1, 256), repeats: int = 7
) -> nn.Module:
    """``eager`` wrapped with ONNX Runtime on ``compact_model`` where that measures faster; ``eager`` itself
    when onnxruntime is missing or never faster."""
    if not onnx.available():
        return eager

    with tempfile.TemporaryDirectory() as tmp:
        path = onnx.to_onnx(compact_model, input_shape, os.path.join(tmp, "compact.onnx"))
        raw = path.read_bytes()
    model = FastestPath(eager, raw, {b: "eager" for b in batch_sizes}).eval()
    choose_paths_(model, input_shape, batch_sizes, repeats)
    return model if "onnxruntime" in model.paths.values() else eager
