"""Experiment 2: AutoKeras image classification (the paper ran 5 trials on 10,000 images).

The search space is one ``ImageBlock`` type (params ``block_type``, default 'vanilla'): AutoKeras'
default search moves on to ResNet50 and EfficientNetB7 at 224x224 from its second trial, which is
impractical at 32x32 on a CPU. The tuner's project lives in the resume directory, so a killed
search picks up at its last trial: finished trials are kept, and the trial that was running is
run again from its start. Each trial and the final fit of the best model begin by reseeding every
random stream from (seed, trial), so a trial run again draws what it drew the first time, and the
exported model equals an undisturbed search's."""

import csv
import json
import shutil
from pathlib import Path

import numpy as np

from imgclf.seeding import stream_seed


def custom_objects() -> dict:
    import autokeras
    return dict(autokeras.CUSTOM_OBJECTS)


def _keyed(method, seed: int, key):
    """``method``, called only after every random stream is reseeded from (seed, key(args))."""
    import keras

    def wrapped(*args, **kwargs):
        keras.utils.set_random_seed(stream_seed(seed, "autokeras", key(*args)))
        return method(*args, **kwargs)

    return wrapped


def search(splits, section: dict, work: Path, seed: int):
    try:
        return _search(splits, section, work, seed)
    except (json.JSONDecodeError, EOFError, OSError) as exc:  # a kill while the tuner wrote its state
        print(f"warning: the AutoKeras search state in {work} is unreadable ({exc}): the search starts over", flush=True)
        shutil.rmtree(work / "search", ignore_errors=True)
        return _search(splits, section, work, seed)


def _search(splits, section: dict, work: Path, seed: int):
    import autokeras as ak
    input_node = ak.ImageInput()
    block = ak.ImageBlock(block_type=section["block_type"], normalize=True, augment=False)
    output = ak.ClassificationHead(num_classes=splits.num_classes)(block(input_node))
    auto = ak.AutoModel(inputs=input_node, outputs=output, objective="val_accuracy", seed=seed, tuner=section["tuner"],
                        max_trials=section["max_trials"], directory=str(work), project_name="search", overwrite=False)
    tuner = auto.tuner
    tuner._build_and_fit_model = _keyed(tuner._build_and_fit_model, seed, lambda trial, *a, **k: trial.trial_id)
    tuner.final_fit = _keyed(tuner.final_fit, seed, lambda *a, **k: "final")
    history = auto.fit(splits.x_train.astype(np.float32), splits.y_train,
                       validation_data=(splits.x_val.astype(np.float32), splits.y_val),
                       epochs=section["epochs"], batch_size=section["batch_size"], verbose=2,
                       **({"steps_per_epoch": section["steps_per_epoch"]} if section.get("steps_per_epoch") else {}))
    model = auto.export_model()
    trials = [{"trial_id": trial.trial_id, "status": str(trial.status), "val_accuracy": trial.score,
               "best_step": trial.best_step, **{f"hp:{k}": v for k, v in sorted(trial.hyperparameters.values.items())}}
              for trial in sorted(auto.tuner.oracle.trials.values(), key=lambda t: t.trial_id)]
    logs = history.history if history is not None else {}  # the exported best model's own final fit, if returned
    rows = [{"epoch": epoch + 1, **{k: round(float(v[epoch]), 6) for k, v in logs.items()}}
            for epoch in range(len(next(iter(logs.values()), [])))]
    with open(work / "trials.csv", "w", newline="") as handle:
        fields = sorted({k for row in trials for k in row}, key=lambda k: (k.startswith("hp:"), k))
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(trials)
    best = max((t["val_accuracy"] or 0.0 for t in trials), default=None)
    return model, rows, {"trials": len(trials), "best_trial_val_accuracy": best}, [work / "trials.csv"]
