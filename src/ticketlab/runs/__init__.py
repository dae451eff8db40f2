"""The engine under every method family: run directories (hashed configs, refusal, resume), devices,
setting a run up, reading back masks and weights, the cached resumable training unit, the experiment
registry, seed groups and sweeps. Nothing here imports a method family."""

from .check import check_run_files
from .experiment import EXPERIMENTS, Experiment, experiments, get_experiment, register
from .files import load_mask, load_state
from .rundir import config_hash, default_run_dir, open_run_dir
from .setup import RunConfig, check_fits, preflight, prepare, resolve_device, start_derived_run, start_run
from .training import CKPT, FINAL, MASK, METRICS, RESULT, train_cached

__all__ = [
    "CKPT",
    "EXPERIMENTS",
    "Experiment",
    "FINAL",
    "MASK",
    "METRICS",
    "RESULT",
    "RunConfig",
    "check_fits",
    "check_run_files",
    "config_hash",
    "default_run_dir",
    "experiments",
    "get_experiment",
    "load_mask",
    "load_state",
    "open_run_dir",
    "preflight",
    "prepare",
    "register",
    "resolve_device",
    "start_derived_run",
    "start_run",
    "train_cached",
]
