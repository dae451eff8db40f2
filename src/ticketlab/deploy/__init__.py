"""Deployment: pruned models that are really smaller and faster on CPU.

``compact`` removes dead channels and neurons (a smaller dense model); ``sparsify`` turns Linear and Conv
layers into CSR layers with kernels chosen by measurement; ``quantize_int8`` makes an int8 model. Each has
a save/load pair writing safetensors with a JSON recipe (no pickle). ``export_run`` and ``bench_run`` do
all of it for a finished run (``ticketlab export`` / ``ticketlab bench``).
"""

from .compact import build_compact, compact, load_compact, save_compact, widths
from .files import load_sparse, save_sparse
from .quant import load_int8, quantize_int8, save_int8
from .sparse import SparseLinear, tune_
from .sparse_conv import SparseConv
from .sparsify import sparse_layers, sparsify, tune_model_

__all__ = [
    "SparseConv",
    "SparseLinear",
    "build_compact",
    "compact",
    "load_compact",
    "load_int8",
    "load_sparse",
    "quantize_int8",
    "save_compact",
    "save_int8",
    "save_sparse",
    "sparse_layers",
    "sparsify",
    "tune_",
    "tune_model_",
    "widths",
]
