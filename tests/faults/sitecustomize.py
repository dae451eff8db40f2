"""Fault injection for the tests' child processes (sweep workers, Ray workers, torchrun ranks), kept out of
ticketlab itself: with this folder on PYTHONPATH and TICKETLAB_TEST_KILL_AFTER_CHECKPOINT=MARKER set, the
first process to save a training checkpoint (creating MARKER) is killed right after it - the hard crash a
resume must survive. The patch is applied when ``ticketlab.train.checkpoint`` is first imported, so a
process that never trains (Ray's own, torchrun's agent) is left alone."""

import importlib.abc
import importlib.util
import os
import signal
import sys

ENV = "TICKETLAB_TEST_KILL_AFTER_CHECKPOINT"
TARGET = "ticketlab.train.checkpoint"


def _arm(checkpointer_cls, marker: str) -> None:
    real = checkpointer_cls.save

    def save(self, *a, **kw):
        real(self, *a, **kw)
        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return
        os.close(fd)
        os.kill(os.getpid(), signal.SIGKILL)

    checkpointer_cls.save = save


class _OnImport(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != TARGET:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        run = spec.loader.exec_module

        def exec_module(module):
            run(module)
            _arm(module.Checkpointer, os.environ[ENV])

        spec.loader.exec_module = exec_module
        return spec


if os.environ.get(ENV):
    sys.meta_path.insert(0, _OnImport())
