"""What the benchmarks share: the embedded sample prepared as the pipeline prepares it, and an
experiment's model compiled the pipeline's way (``imgclf train``) or the plain Keras way."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def prepared_sample(work: Path, threads: int = 2, **archive) -> Path:
    """A generated Tiny ImageNet-layout archive under ``work`` (``sample.make_tiny_imagenet``'s
    arguments, the embedded sample by default), prepared by the imagenet200 layout at params.yaml's
    settings (its ``n_classes`` set to the archive's classes) into ``work / "data"``; that directory."""
    from imgclf import config, datasets, sample
    from imgclf.sources import tiny_imagenet

    sample.make_tiny_imagenet(work / "t.zip", **archive)
    data_params = config.load(ROOT / "params.yaml")["data"]
    if "classes" in archive:
        data_params["imagenet200"]["n_classes"] = archive["classes"]
    tiny_imagenet.prepare(work / "t.zip", work / "data", datasets.settings("imagenet200", data_params), threads)
    return work / "data"


def prepare_ten_classes(work: Path) -> Path:
    """The training benchmarks' data: 10 classes, 667 training and 20 validation images each."""
    return prepared_sample(work, seed=7, classes=10, train_per_class=667, val_per_class=20, test_images=0)


def pipeline_model(name: str, section: dict, runtime: dict, splits):
    """Experiment ``name``'s model, built and compiled as ``imgclf train`` builds and compiles it."""
    from imgclf import experiments, models, train

    model = models.build(experiments.get(name).model, splits.image_shape, splits.num_classes)
    train.compile_model(model, section, runtime, section["learning_rate"], train.steps_for(splits, section))
    return model


def keras_compile(model, learning_rate: float, top5: bool = True, jit_compile="auto"):
    """``model`` compiled as a plain Keras script would: Adam, sparse cross-entropy, accuracy (and top-5)."""
    import keras

    metrics = ["accuracy", *([keras.metrics.SparseTopKCategoricalAccuracy(k=5, name="top5")] if top5 else [])]
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="sparse_categorical_crossentropy",
                  metrics=metrics, jit_compile=jit_compile)
    return model
