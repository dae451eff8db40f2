"""The dataset registry: name -> loader(data_dir, quiet) -> Dataset."""

from ..registry import Registry

DATASETS: Registry = Registry("dataset")
