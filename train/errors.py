"""The one error of a training run, shared by trainer.py and the modules it uses."""
from __future__ import annotations


class TrainError(RuntimeError):
    """A run that cannot start or continue. `str(err)` is one line."""
