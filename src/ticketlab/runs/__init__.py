"""The run layer under every method family: run directories (hashed configs, refusal, resume), devices,
setting a run up, reading back masks and weights, and the cached, resumable training unit."""
from .files import load_mask, load_state
from .rundir import config_hash, default_run_dir, open_run_dir
from .setup import RunConfig, check_fits, prepare, resolve_device, start_run
from .training import CKPT, FINAL, MASK, METRICS, train_cached

__all__ = ["CKPT", "FINAL", "MASK", "METRICS", "RunConfig", "check_fits", "config_hash", "default_run_dir",
           "load_mask", "load_state", "open_run_dir", "prepare", "resolve_device", "start_run", "train_cached"]
