"""Fault injection, for the tests that kill a run at a chosen moment and check that the rerun
ends where an undisturbed run ends. ``IMGCLF_KILL_AT=<point>:<n>`` makes the process SIGKILL
itself the n-th time it reaches ``<point>``; unset (always, outside tests), every call is a no-op.

Points: ``batch`` (a training batch finished, AutoKeras trials included), ``checkpoint`` (an
epoch's weights written to a temporary file, not yet renamed), ``state`` (the checkpoint renamed,
its state file not yet written), ``fold`` (a fine-tuning fold recorded as done), ``replace <path>``
(the output ``path``, as the stage was given it, complete in its temporary, not yet in place).

``IMGCLF_KILL_GROUP=1`` kills the whole process group instead: the engine that started the stage
(Snakemake, DVC) dies with it, as on a power cut or ``kill -9 -<pgid>``."""

from __future__ import annotations

import os
import signal

_counts: dict[str, int] = {}


def _target() -> tuple[str, int] | None:
    value = os.environ.get("IMGCLF_KILL_AT", "")
    point, sep, count = value.rpartition(":")
    if not sep or not count.isdigit():
        point, count = value, "1"
    return (point, int(count)) if point else None


def reached(point: str) -> None:
    target = _target()
    if target is None or target[0] != point:
        return
    _counts[point] = _counts.get(point, 0) + 1
    if _counts[point] == target[1]:
        if os.environ.get("IMGCLF_KILL_GROUP") == "1":
            os.killpg(os.getpgid(0), signal.SIGKILL)
        os.kill(os.getpid(), signal.SIGKILL)


def keras_callbacks() -> list:
    """A callback that reports the ``batch`` point, where a kill at a batch is asked for."""
    target = _target()
    if target is None or target[0] != "batch":
        return []
    import keras

    class BatchPoint(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            reached("batch")

    return [BatchPoint()]
