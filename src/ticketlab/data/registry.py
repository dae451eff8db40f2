"""The dataset registry: name -> loader(data_dir, quiet) -> Dataset."""

from ..registry import Registry

DATASETS: Registry = Registry("dataset", hint=", or npz:PATH for your own arrays (x_train, y_train, x_test, y_test)")
