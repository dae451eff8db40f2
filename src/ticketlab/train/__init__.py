"""Training: a fast loop over in-memory tensors with masks, checkpoints and early-stopping metrics."""

from .checkpoint import Checkpointer
from .config import TrainConfig
from .loop import TrainResult, evaluate, make_optimizer, train
from .schedule import lr_at

__all__ = ["Checkpointer", "TrainConfig", "TrainResult", "evaluate", "lr_at", "make_optimizer", "train"]
