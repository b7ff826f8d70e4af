"""The evaluate stage: a trained model on the held-out test split -> one flat metrics JSON
(declared as DVC metrics) and a details directory (the prepared data's own record, data.json; the
machine and stack that trained the model, environment.json; the confusion matrix, per-class
accuracy, classification report).

As a sanity check it also scores, in inference mode, a stratified subset of the very images the
model trained on (``train_top1``), and measures how far its test predictions collapse onto one
class (``top_class_share``): a model that learned but scores chance on the test split (stale
BatchNorm statistics, a preprocessing mismatch) shows as train top-1 far above test top-1."""

import csv
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import classification_report, confusion_matrix

from imgclf import arrays, data, splits
from imgclf.errors import PipelineError
from imgclf.io_utils import atomic_dir, atomic_path, write_json
from imgclf.runtime import pin_cpu_isa, set_threads

# What a result depends on beyond code, params and data (train.json's record of it), kept beside
# the figures: the same figures bit for bit are promised on the same CPU model and stack
ENVIRONMENT = ("cpu_model", "cpu_flags", "device", "threads", "cpu_isa", "op_determinism", "backend", "tensorflow", "jax",
               "keras")


def top_k_accuracy(probabilities: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Share of images whose label is among the ``k`` most probable classes (ties: lower index first)."""
    top_k = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
    return float(np.mean(np.any(top_k == labels[:, None], axis=1)))


def scores(probabilities: np.ndarray, labels: np.ndarray) -> dict:
    """Top-1, top-5 and mean cross-entropy of predicted class probabilities."""
    if probabilities.ndim != 2 or len(probabilities) != len(labels):
        raise PipelineError(f"predictions of shape {probabilities.shape} do not match {len(labels)} labels")
    if not np.all(np.isfinite(probabilities)):
        raise PipelineError("the model predicts NaN or infinite values")
    picked = np.clip(probabilities[np.arange(len(labels)), labels], 1e-7, 1.0)
    return {"top1": top_k_accuracy(probabilities, labels, 1),
            "top5": top_k_accuracy(probabilities, labels, min(5, probabilities.shape[1])),
            "loss": float(-np.mean(np.log(picked)))}


def prediction_spread(predicted: np.ndarray, num_classes: int) -> dict:
    """How many classes the model predicts at all, and the share of its most predicted class."""
    counts = np.bincount(predicted, minlength=num_classes)
    return {"predicted_classes": int(np.count_nonzero(counts)), "top_class_share": float(counts.max() / len(predicted))}


def per_class_accuracy(confusion: np.ndarray) -> np.ndarray:
    totals = confusion.sum(axis=1)
    return np.divide(np.diag(confusion), totals, out=np.full(len(totals), np.nan), where=totals > 0)


# Reading models and images and predicting: exercised by the pipeline tests, outside mutation testing.
# pragma: no mutate block
def train_sample(data_dir: Path, section: dict, seed: int, where: str):
    """A stratified subset (``train_eval_images``) of the images a run of ``seed`` trained on."""
    images, labels = data.training_split(data_dir, section, seed, where)
    size = section["train_eval_images"]
    if size is None or size >= len(labels):
        return images, labels
    return splits.subset(images, labels, max(size, len(np.unique(labels))), seed, f"{where}.train_eval_images")


def load_model(kind: str, model_dir: Path):
    import keras
    path = model_dir / "model.keras"
    if not path.exists():
        raise PipelineError(f"{path}: not found (run the train stage)")
    custom = {}
    if kind == "autokeras":  # a model module: autokeras' own stage depends on it, no other
        from imgclf.models import autokeras_search
        custom = autokeras_search.custom_objects()
    return keras.models.load_model(path, compile=False, custom_objects=custom)


def predict(model, images: np.ndarray, batch_size: int, eager: bool) -> np.ndarray:
    """Class probabilities; ``eager`` calls the model batch by batch instead of building a graph."""
    if not eager:
        return np.asarray(model.predict(images.astype(np.float32), batch_size=batch_size, verbose=0), np.float64)
    return np.concatenate([np.asarray(model(images[i : i + batch_size].astype(np.float32), training=False), np.float64)
                           for i in range(0, len(images), batch_size)])


def run(experiment, data_dir: str | Path, model_dir: str | Path, metrics_path: str | Path, out_dir: str | Path,
        threads: int, section: dict, seed: int, confusion_path: str | Path | None = None, batch_size: int = 256,
        timings_path: str | Path | None = None) -> dict:
    """Score ``experiment``'s model (an ``imgclf.experiments.Experiment``) on the test split; write
    the metrics, the details directory and, where given, the confusion pairs for ``dvc plots`` and
    how long the scoring took (``timings_path``: results files hold results only)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    pin_cpu_isa(section["cpu_isa"])
    set_threads(threads)
    eager = section["run_eagerly"]
    data_dir, model_dir = Path(data_dir), Path(model_dir)
    images, labels = arrays.load_split(data_dir / "test.npz")
    classes = arrays.read_classes(data_dir / "classes.tsv")
    model = load_model(experiment.kind, model_dir)
    started = time.perf_counter()
    probabilities = predict(model, images, batch_size, eager)
    eval_seconds = time.perf_counter() - started
    if probabilities.shape[1] != len(classes):
        raise PipelineError(f"{model_dir}: model has {probabilities.shape[1]} outputs but the data has {len(classes)} classes")
    result = scores(probabilities, labels)
    predicted = probabilities.argmax(axis=1)
    train_images, train_labels = train_sample(data_dir, section, seed, experiment.name)
    train_result = scores(predict(model, train_images, batch_size, eager), train_labels)
    confusion = confusion_matrix(labels, predicted, labels=np.arange(len(classes)))
    train_meta = json.loads((model_dir / "train.json").read_text())
    metrics = {
        **result, "chance_top1": 1.0 / len(classes), "test_images": int(len(labels)),
        "params": int(model.count_params()), "train_images": train_meta["train_images"], "epochs": train_meta["epochs"],
        "mean_per_class_top1": float(np.nanmean(per_class_accuracy(confusion))),
        **{f"train_{key}": value for key, value in train_result.items()}, "train_eval_images": int(len(train_labels)),
        **prediction_spread(predicted, len(classes)), "seed": seed,
        "bn_recalibrated_layers": train_meta.get("bn_recalibrated_layers", 0),
    }
    optional = ("cv_top1_mean", "cv_top1_std", "cv_folds", "trials", "best_trial_val_accuracy", "trainable_params")
    metrics.update({key: train_meta[key] for key in optional if key in train_meta})
    metrics = {key: value for key, value in metrics.items() if value is not None}  # flat numbers only
    names = [wnid for wnid, _ in classes]
    if confusion_path is not None:
        with atomic_path(confusion_path) as tmp, open(tmp, "w", newline="") as handle:  # DVC's confusion template
            writer = csv.writer(handle)
            writer.writerow(["actual", "predicted"])
            writer.writerows((names[a], names[p]) for a, p in zip(labels, predicted))  # one row per image
    with atomic_dir(out_dir) as tmp:
        shutil.copyfile(data_dir / "meta.json", tmp / "data.json")  # what the test split was prepared from
        write_json(tmp / "environment.json", {key: train_meta[key] for key in ENVIRONMENT if key in train_meta})
        np.savetxt(tmp / "confusion_matrix.csv", confusion, fmt="%d", delimiter=",")
        with open(tmp / "per_class.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["index", "wnid", "words", "support", "accuracy"])
            for i, ((wnid, words), accuracy) in enumerate(zip(classes, per_class_accuracy(confusion))):
                writer.writerow([i, wnid, words, int(confusion[i].sum()), "" if np.isnan(accuracy) else round(accuracy, 6)])
        (tmp / "classification_report.txt").write_text(classification_report(
            labels, predicted, labels=np.arange(len(classes)), target_names=names, zero_division=0))
    write_json(metrics_path, metrics)
    if timings_path is not None:
        write_json(timings_path, {"eval_seconds": round(eval_seconds, 3),
                                  "eval_images_per_second": round(len(labels) / eval_seconds, 2)})
    return metrics
