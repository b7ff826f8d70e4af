"""Every random stream a run draws from, seeded in one place: each stream's seed is a pure function
of a key (run seed, fold, epoch, ...), not of how long the process has run, so a resumed run
draws what an undisturbed one would have drawn."""

import random
import zlib

import numpy as np


def stream_seed(*key) -> int:
    """A 31-bit seed for one random stream, a pure function of its key (e.g. run seed, fold, epoch)."""
    parts = [part if isinstance(part, int) else zlib.crc32(str(part).encode()) for part in key]
    return int(np.random.SeedSequence(parts).generate_state(1)[0] >> 1)


def reseed(model, *key) -> None:
    """Every random stream a model holds, keyed by ``key`` (run seed, fold, epoch): each layer's
    seed generator (dropout and any other random layer), Keras' global seed generator, Python's
    and NumPy's global generators. Seed generators are not part of a saved model, so without this
    a resumed epoch would drop other units than the undisturbed one. TensorFlow's global seed is
    left alone: it is part of every traced function's cache key, and a new one each epoch would
    trace the train and test steps again (a minute for a DenseNet)."""
    from keras.src.backend.common import global_state
    random.seed(stream_seed(*key, "python"))
    np.random.seed(stream_seed(*key, "numpy"))
    generators = [generator for layer in model._flatten_layers(include_self=True)
                  for generator in getattr(layer, "_seed_generators", [])]
    shared = global_state.get_global_attribute("global_seed_generator")
    for index, generator in enumerate(generators + ([shared] if shared is not None else [])):
        generator.state.assign(np.array([stream_seed(*key, "layer", index), 0], dtype=generator.state.dtype))
