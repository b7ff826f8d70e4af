"""Fault injection for the tests, from outside the production code.

A test puts this directory first on a subprocess's PYTHONPATH (``conftest.fault_env``): Python
then imports this module at start-up, in that process and in every Python process started from
it (Snakemake and DVC pass their environment on to the stages they run). With none of its
variables set it only runs the ``sitecustomize`` it shadows, if there is one.

``IMGCLF_KILL_AT=<point>[:<n>]`` makes the process SIGKILL itself the n-th time (default: the
first) it reaches ``<point>``:

- ``batch``: a training batch finished (any ``keras.Model.fit``, AutoKeras trials included);
- ``checkpoint``: an epoch's weights (``epoch<NNNN>.npz``) written to their temporary file, not
  yet renamed;
- ``state``: that checkpoint renamed into place, the state file (``state.json``) not yet written;
- ``fold``: a fine-tuning fold recorded as done (``fold<i>.json`` written);
- ``replace <path>``: the output ``path``, as the stage was given it, complete in its temporary
  (``imgclf.io_utils.atomic_path`` / ``atomic_dir``), not yet in place.

``IMGCLF_KILL_GROUP=1`` kills the whole process group instead: the engine that started the stage
(Snakemake, DVC) dies with it, as on a power cut or ``kill -9 -<pgid>``.

``IMGCLF_BATCH_SLEEP_S=<s>`` makes every training batch take ``s`` seconds more: a stage that is
still running when the test acts on it.

``IMGCLF_BREAK=<how>`` breaks training on purpose, for the tests that the report catches a model
that learned nothing:

- ``frozen``: every ``keras.Model.fit`` leaves the weights as they were before it (they are put
  back after each batch);
- ``shuffled_labels``: the train stage (``imgclf train``) reads its training split's labels in a
  random order; evaluation reads the true ones.

``IMGCLF_LOGICAL_CPUS=<n>`` (n > 1) splits the CPU into n logical TensorFlow devices right after
``tensorflow`` is imported, so the multi-device path (``gpus`` > 1) runs on a machine without
GPUs.

``IMGCLF_REPLICA_BATCHES=<file>`` appends, for every training step of every ``keras.Model.fit``,
the number of images each replica's ``train_step`` was handed (one line per replica per step): what
``gpus`` > 1 splits the global batch into, observed where Keras hands it over.

The points are reached through wrappers installed by an import hook (a ``sys.meta_path`` finder):
right after ``imgclf.io_utils``, ``imgclf.arrays``, ``keras`` or ``tensorflow`` is executed, and before the module
that imports it sees it, its functions are wrapped, so ``from imgclf.io_utils import atomic_path``
binds the wrapper too."""

from __future__ import annotations

import contextlib
import functools
import importlib.abc
import importlib.machinery
import importlib.util
import os
import re
import signal
import sys
from pathlib import Path

_CHECKPOINT = re.compile(r"epoch\d+\.npz")
_FOLD = re.compile(r"fold\d+\.json")
_counts: dict[str, int] = {}


def _target() -> tuple[str, int] | None:
    value = os.environ.get("IMGCLF_KILL_AT", "")
    point, sep, count = value.rpartition(":")
    if not sep or not count.isdigit():
        point, count = value, "1"
    return (point, int(count)) if point else None


TARGET = _target()
LOGICAL_CPUS = int(os.environ.get("IMGCLF_LOGICAL_CPUS", "0") or 0)
BATCH_SLEEP_S = float(os.environ.get("IMGCLF_BATCH_SLEEP_S", "0") or 0)
BREAK = os.environ.get("IMGCLF_BREAK", "")
REPLICA_BATCHES = os.environ.get("IMGCLF_REPLICA_BATCHES", "")


def reached(point: str, before_kill=None) -> None:
    """Count ``point``; at the n-th time it is the target, SIGKILL this process (or its group),
    after ``before_kill`` where given."""
    if TARGET is None or TARGET[0] != point:
        return
    _counts[point] = _counts.get(point, 0) + 1
    if _counts[point] == TARGET[1]:
        if before_kill is not None:
            before_kill()
        if os.environ.get("IMGCLF_KILL_GROUP") == "1":
            os.killpg(os.getpgid(0), signal.SIGKILL)
        os.kill(os.getpid(), signal.SIGKILL)


# --- the wrappers, one function per module ------------------------------------------------------


def _patch_io_utils(io_utils) -> None:
    """``checkpoint``, ``state``, ``fold`` and ``replace <path>``, around the atomic writers."""
    atomic_path, atomic_dir, write_json = io_utils.atomic_path, io_utils.atomic_dir, io_utils.write_json

    @functools.wraps(atomic_path)
    @contextlib.contextmanager
    def killing_atomic_path(path):
        with atomic_path(path) as tmp:
            yield tmp
            # the body is done: the content is complete in ``tmp``, the rename comes next
            if _CHECKPOINT.fullmatch(Path(path).name):
                reached("checkpoint")
            reached(f"replace {Path(path)}")

    @functools.wraps(atomic_dir)
    @contextlib.contextmanager
    def killing_atomic_dir(path):
        with atomic_dir(path) as tmp:
            yield tmp
            reached(f"replace {Path(path)}", before_kill=lambda: tmp.chmod(0o755))  # as atomic_dir leaves it

    @functools.wraps(write_json)
    def killing_write_json(path, data):
        name = Path(path).name
        if name == "state.json":
            reached("state")
        write_json(path, data)
        if _FOLD.fullmatch(name):
            reached("fold")

    io_utils.atomic_path, io_utils.atomic_dir, io_utils.write_json = \
        killing_atomic_path, killing_atomic_dir, killing_write_json


def _patch_keras(keras) -> None:
    """``batch``: every ``Model.fit`` gets a callback that reports each finished batch (and sleeps
    ``BATCH_SLEEP_S`` after it); ``frozen`` puts the weights back after each batch; with
    ``REPLICA_BATCHES``, each replica's ``train_step`` writes the size of the batch it was handed."""
    import time

    fit = keras.Model.fit

    class BatchPoint(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            time.sleep(BATCH_SLEEP_S)
            reached("batch")

    class Frozen(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.weights = self.model.get_weights()

        def on_train_batch_end(self, batch, logs=None):
            self.model.set_weights(self.weights)

    def recording_train_step(train_step):
        import tensorflow as tf

        def write(size):
            with open(REPLICA_BATCHES, "a") as handle:
                handle.write(f"{int(size)}\n")
            return 0

        @functools.wraps(train_step)
        def step(data):
            images = data[0] if isinstance(data, (tuple, list)) else data
            tf.py_function(write, [tf.shape(images)[0]], tf.int64)
            return train_step(data)

        return step

    @functools.wraps(fit)
    def fit_with_batch_point(self, *args, callbacks=None, **kwargs):
        added = [BatchPoint(), *([Frozen()] if BREAK == "frozen" else [])]
        if REPLICA_BATCHES:
            self.train_step = recording_train_step(type(self).train_step.__get__(self))
        return fit(self, *args, callbacks=[*(callbacks or []), *added], **kwargs)

    keras.Model.fit = fit_with_batch_point


def _patch_arrays(arrays) -> None:
    """``shuffled_labels``: in the train stage, the training split's labels in a random order."""
    import numpy as np

    load_split = arrays.load_split

    @functools.wraps(load_split)
    def shuffled_load_split(path):
        images, labels = load_split(path)
        if Path(path).name == "train.npz" and sys.argv[1:2] == ["train"]:
            labels = np.random.default_rng(0).permutation(labels)
        return images, labels

    arrays.load_split = shuffled_load_split


def _split_cpu(tf) -> None:
    """The CPU as ``IMGCLF_LOGICAL_CPUS`` logical devices (before TensorFlow's runtime starts)."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * LOGICAL_CPUS)


# --- the import hook -----------------------------------------------------------------------------


class _PatchingLoader(importlib.abc.Loader):
    """A module's own loader, with ``patch`` run on the module right after it is executed."""

    def __init__(self, loader, patch):
        self._loader, self._patch = loader, patch

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        self._patch(sys.modules.get(module.__name__, module))

    def __getattr__(self, name):  # get_source, get_resource_reader, ...: the module's own loader's
        return getattr(self._loader, name)


class _AfterImport(importlib.abc.MetaPathFinder):
    """Finds the patched modules with the finders after it, and hands their loader a patch."""

    def __init__(self, patches: dict):
        self._patches, self._finding = patches, set()

    def find_spec(self, name, path=None, target=None):
        patch = self._patches.get(name)
        if patch is None or name in self._finding:
            return None
        self._finding.add(name)
        try:
            spec = None
            for finder in sys.meta_path:
                if finder is not self and hasattr(finder, "find_spec"):
                    spec = finder.find_spec(name, path, target)
                    if spec is not None:
                        break
        finally:
            self._finding.discard(name)
        if spec is None or spec.loader is None:
            return spec
        spec.loader = _PatchingLoader(spec.loader, patch)
        return spec


def _run_shadowed_sitecustomize() -> None:
    """The ``sitecustomize`` later on ``sys.path`` (a distribution's own), which this one hides."""
    here = os.path.dirname(os.path.abspath(__file__))
    rest = [entry for entry in sys.path if os.path.abspath(entry or os.curdir) != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", rest)
    if spec is not None and spec.loader is not None:
        spec.loader.exec_module(importlib.util.module_from_spec(spec))


def _install() -> None:
    patches = {}
    if TARGET is not None:
        patches["imgclf.io_utils"] = _patch_io_utils
    if TARGET is not None and TARGET[0] == "batch" or BATCH_SLEEP_S > 0 or BREAK == "frozen" \
            or REPLICA_BATCHES:
        patches["keras"] = _patch_keras
    if BREAK == "shuffled_labels":
        patches["imgclf.arrays"] = _patch_arrays
    if LOGICAL_CPUS > 1:
        patches["tensorflow"] = _split_cpu
    if patches:
        sys.meta_path.insert(0, _AfterImport(patches))


_run_shadowed_sitecustomize()
_install()
