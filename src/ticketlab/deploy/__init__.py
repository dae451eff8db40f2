"""Deployment: pruned models that are really smaller and faster on CPU.

``sparsify`` turns Linear layers into CSR ``SparseLinear`` layers with kernels chosen by measurement;
``save_sparse`` / ``load_sparse`` write and read them as safetensors with a JSON recipe (no pickle).
"""
from .files import load_sparse, save_sparse
from .sparse import SparseLinear, sparse_layers, sparsify, tune_, tune_model_

__all__ = ["SparseLinear", "load_sparse", "save_sparse", "sparse_layers", "sparsify", "tune_", "tune_model_"]
