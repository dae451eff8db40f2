"""Sparse double descent (He et al., ICML 2022): accuracy and learning distance over a fine density grid."""

from .runner import DoubleDescentConfig, format_double_descent, run_double_descent

__all__ = ["DoubleDescentConfig", "format_double_descent", "run_double_descent"]
