"""Training internals that need no pipeline: fine-tuning really updates the opened layers (and
only those), each fold starts from the transfer model again, random streams are functions of
(seed, epoch), and BatchNorm statistics match the weights after short training."""

import json
import os
import platform
from pathlib import Path

import numpy as np
import pytest

from conftest import write_params
from imgclf import data, datasets, experiments, seeding, splits
from imgclf.models import transfer
from test_models import _local_weights


@pytest.fixture
def tiny_splits():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (40, 32, 32, 3)).astype(np.uint8)
    y = np.arange(40) % 10
    return data.Splits(x, y, x[:20], y[:20], 10, (32, 32, 3))


def test_finetune_updates_top_layers_and_keeps_batchnorm(tmp_path, tiny_splits):
    from imgclf import train

    source = transfer.transfer_model((32, 32, 3), 10, weights=_local_weights())
    (tmp_path / "up").mkdir()
    source.save(tmp_path / "up" / "model.keras")
    section = {
        **{key: param.default for key, param in experiments.COMMON.items()},
        "epochs": 1, "batch_size": 20, "learning_rate": 0.01, "lr_factor": 0.1, "kfold": 2,
        "unfreeze_from": "conv5_block32_", "run_eagerly": True,
    }
    work = tmp_path / "work"
    work.mkdir()
    from imgclf.training_log import TrainingLog, read_live

    log = TrainingLog(tmp_path / "live", None)
    job = train.TrainJob(experiments.get("cifar_densenet201_finetune"), section, tiny_splits, {"xla": False, "seed": 0},
                         None, work, tmp_path / "up", log)
    trained = train.train_finetune(job)
    model, rows, extra = trained.model, trained.rows, trained.extra
    # each fold and the final fit logged under its own names, one step per epoch
    assert [step for step, _ in read_live(tmp_path / "live", "fold2/val_accuracy")] == [1]
    assert [step for step, _ in read_live(tmp_path / "live", "accuracy")] == [1]
    before = {w.path: w.numpy() for w in source.weights}
    after = {w.path: w.numpy() for w in model.weights}
    changed = {path for path in before if not np.array_equal(before[path], after[path])}
    assert any("conv5_block32_2_conv" in path for path in changed)
    assert not any("conv4_" in path for path in changed)
    assert not any("_bn/" in path for path in changed)  # BatchNorm stays frozen, statistics included
    assert extra["cv_folds"] == 2 and extra["learning_rate_effective"] == pytest.approx(0.001)
    assert len(rows) == 1
    folds = [json.loads((work / f"fold{i}.json").read_text())["val_accuracy"] for i in (1, 2)]
    assert extra["cv_top1_folds"] == folds


def test_augmentation_and_order_are_functions_of_seed_and_epoch():
    """Order, flips and crops come from the key (seed, epoch) alone: the same key gives the same
    batches in any process, whatever ran before (a resumed run sees what an undisturbed one saw),
    while each epoch and each seed still shuffles and augments differently."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (300, 32, 32, 3)).astype(np.uint8)
    y = np.arange(300) % 10

    def epoch(seed, number, global_seed=0):
        tf.keras.utils.set_random_seed(global_seed)
        ds = data.dataset(x, y, 32, (seed, number), flip=True, crop=4)
        return np.concatenate([b[0].numpy() for b in ds]), np.concatenate([b[1].numpy() for b in ds])

    first = epoch(0, 3)
    for _ in range(2):  # iterations already consumed in this process change nothing
        epoch(0, 1)
    again, other_global = epoch(0, 3), epoch(0, 3, global_seed=5)
    for other in (again, other_global):
        assert np.array_equal(first[0], other[0]) and np.array_equal(first[1], other[1])
    assert not np.array_equal(first[1], epoch(0, 4)[1])  # another epoch, another order
    assert not np.array_equal(first[1], epoch(1, 3)[1])  # another seed, another order
    assert sorted(first[1]) == sorted(y)  # a permutation: every image once
    # augmented, not just shuffled: some images differ from every original image
    originals = {image.tobytes() for image in x.astype(np.float32)}
    assert sum(image.tobytes() not in originals for image in first[0]) > 100
    # without a key: stored order, no augmentation (validation and evaluation)
    plain = np.concatenate([b[0].numpy() for b in data.dataset(x, y, 32)])
    assert np.array_equal(plain, x.astype(np.float32))


def test_stream_seeds_are_stable_and_distinct():
    assert seeding.stream_seed(0, "fold", 1, 2) == seeding.stream_seed(0, "fold", 1, 2)
    seeds = {seeding.stream_seed(seed, epoch) for seed in range(5) for epoch in range(50)}
    assert len(seeds) == 250 and all(0 <= value < 2**31 for value in seeds)
    assert seeding.stream_seed(0, 1) == 1982462498  # pinned: a change would silently change every result


def test_reseed_sets_every_dropout_stream_from_the_key():
    import keras

    from imgclf import models

    model = models.build("cifar_cnn", (32, 32, 3), 10)
    x = np.random.default_rng(0).integers(0, 256, (8, 32, 32, 3)).astype(np.float32)
    seeding.reseed(model, 0, 2)
    first = model(x, training=True).numpy()
    model(x, training=True)  # advances every seed generator
    seeding.reseed(model, 0, 2)
    assert np.array_equal(model(x, training=True).numpy(), first)
    seeding.reseed(model, 0, 3)
    assert not np.array_equal(model(x, training=True).numpy(), first)
    assert sum(len(layer._seed_generators) for layer in model._flatten_layers()) >= 4
    del keras


@pytest.fixture(scope="module")
def ten_class_data(module_tmp):
    """A generated 10-class set in the Tiny ImageNet layout: 1,602 training images, 500 test."""
    from imgclf import config, sample
    from imgclf.sources import tiny_imagenet
    from conftest import ROOT

    root = module_tmp / "ten"
    sample.make_tiny_imagenet(root / "t.zip", seed=5, classes=10, train_per_class=178, val_per_class=50, test_images=0)
    params = config.load(ROOT / "params.yaml")
    params["data"]["imagenet200"]["n_classes"] = 10
    tiny_imagenet.prepare(root / "t.zip", root / "data", datasets.settings("imagenet200", params["data"]), 1)
    return root / "data", params


def _batch_statistics_top1(model, images, labels, batch_size=64):
    out = np.concatenate([model(images[i : i + batch_size].astype(np.float32), training=True).numpy()
                          for i in range(0, len(labels), batch_size)])
    return float(np.mean(out.argmax(axis=1) == labels))


@pytest.fixture(scope="module")
def short_runs(ten_class_data, module_tmp):
    """About 100 steps of a BatchNorm CNN on 10 classes (one epoch, batch 16), without and with
    bn_recalibration: by that setting, the params section, train.json, the model directory and
    the DVCLive directory."""
    from imgclf import train

    data_dir, params = ten_class_data
    root = module_tmp / "short"
    root.mkdir()
    runs = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)  # the resume directory
        for recalibrate in (False, True):
            section = {**params["cifar_base_cnn"], "epochs": 1, "batch_size": 16, "augment_flip": False,
                       "augment_crop": 0, "bn_recalibration": recalibrate, "seeds": [0]}
            out, live = root / f"model-{recalibrate}", root / f"live-{recalibrate}"
            meta = train.run(experiments.get("cifar_base_cnn"), data_dir, out, section,
                             experiments.result_params(section), 2, 0, live_dir=live)
            runs[recalibrate] = section, meta, out, live
    return runs


def test_batchnorm_statistics_match_the_weights_after_short_training(ten_class_data, short_runs, tmp_path):
    """The model has learned (its batch-statistics accuracy is high), but its momentum-0.99 moving
    statistics have not caught up, so inference mode scores near chance. With bn_recalibration (the
    default) the saved model's test top-1 lands within 5 points of the batch-statistics figure;
    without it, it does not."""
    import keras

    from imgclf import arrays, evaluate

    data_dir, _ = ten_class_data
    test_x, test_y = arrays.load_split(data_dir / "test.npz")
    results = {}
    for recalibrate, (section, meta, out, _) in short_runs.items():
        assert meta["epochs"] == 1 and -(-meta["train_images"] // 16) == 101
        assert meta["bn_recalibrated_layers"] == (6 if recalibrate else 0)
        metrics = evaluate.run(experiments.get("cifar_base_cnn"), data_dir, out, tmp_path / f"m-{recalibrate}.json",
                               tmp_path / f"e-{recalibrate}", 2, section, 0)
        model = keras.models.load_model(out / "model.keras", compile=False)
        results[recalibrate] = (metrics, _batch_statistics_top1(model, test_x, test_y))
    stale, batch_top1 = results[False]
    assert batch_top1 > 0.6, "the model should have learned"
    assert stale["top1"] < batch_top1 - 0.2, ("the scenario no longer shows stale statistics", stale["top1"], batch_top1)
    recalibrated, batch_top1 = results[True]
    assert abs(recalibrated["top1"] - batch_top1) <= 0.05, (recalibrated["top1"], batch_top1)
    assert recalibrated["train_top1"] > 0.6


def test_logged_validation_top1_is_what_the_finished_model_scores(ten_class_data, short_runs):
    """With bn_recalibration, each epoch's validation pass runs with BatchNorm statistics
    recalibrated for that epoch's weights: the last epoch's logged validation top-1 is within 5
    points of the finished model's top-1 on the same validation images, evaluated as the evaluate
    stage evaluates (with the stale moving statistics, the log would read near chance)."""
    from imgclf import evaluate
    from imgclf.training_log import read_live

    data_dir, _ = ten_class_data
    section, meta, out, live = short_runs[True]
    step, logged = read_live(live, "val_accuracy")[-1]
    assert step == meta["epochs"] and logged == meta["history"][-1]["val_accuracy"]
    monitored = data.load_training(data_dir, section, 0, "cifar_base_cnn")
    model = evaluate.load_model("keras", out)
    top1 = evaluate.scores(evaluate.predict(model, monitored.x_val, 256, section["run_eagerly"]), monitored.y_val)["top1"]
    assert top1 > 0.6, "the model should have learned"
    assert abs(logged - top1) <= 0.05, (logged, top1)


def test_the_validation_pass_leaves_training_alone(tiny_splits, tmp_path):
    """Two epochs (flips, crops, dropout) with and without the recalibrated validation pass
    (bn_recalibration on and off, the epoch loop alone): the weights, the moving statistics and the
    training figures are bit-identical; only the validation figures differ."""
    from imgclf import models, resume, train
    from imgclf.runtime import configure_runtime
    from imgclf.training_log import TrainingLog

    results = {}
    for recalibrate in (False, True):
        section = {**{key: param.default for key, param in experiments.COMMON.items()}, "epochs": 2, "batch_size": 8,
                   "augment_flip": True, "augment_crop": 2, "bn_recalibration": recalibrate}
        runtime = configure_runtime(2, section, 0)
        model = models.build("cifar_cnn", (32, 32, 3), 10)
        train.compile_model(model, section, runtime, 1e-3, train.steps_for(tiny_splits, section))
        (tmp_path / str(recalibrate)).mkdir()
        rows = resume.fit(model, tiny_splits, section, tmp_path / str(recalibrate), 0, TrainingLog(None, None))
        results[recalibrate] = rows, [weight.numpy() for weight in model.weights]
    (plain, plain_weights), (recalibrated, recalibrated_weights) = results[False], results[True]
    assert len(plain_weights) == len(recalibrated_weights)
    assert all(np.array_equal(a, b) for a, b in zip(plain_weights, recalibrated_weights))
    for field in ("loss", "accuracy", "top5"):
        assert [row[field] for row in plain] == [row[field] for row in recalibrated]
    assert [row["val_loss"] for row in plain] != [row["val_loss"] for row in recalibrated]


def test_recalibration_leaves_weights_and_frozen_batchnorm_alone():
    import keras

    from imgclf import batchnorm, models

    model = models.build("cifar_cnn", (32, 32, 3), 10)
    model.get_layer("block1_bn1").trainable = False
    before = {w.path: w.numpy() for w in model.weights}
    x = np.random.default_rng(1).integers(0, 256, (64, 32, 32, 3)).astype(np.uint8)
    assert batchnorm.recalibrate_batchnorm(model, x, 16, 0) == 5
    after = {w.path: w.numpy() for w in model.weights}
    changed = {path for path in before if not np.array_equal(before[path], after[path])}
    assert changed and all("moving_" in path for path in changed)
    assert not any(path.startswith("block1_bn1/") for path in changed)
    assert all(layer.momentum == 0.99 for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization))
    assert model.get_layer("fc_drop").rate == 0.3


@pytest.mark.parametrize("size", [10, 37, 150, 195, 199, 200])
def test_subset_keeps_every_class_at_any_size(size):
    """Stratified subsets of any size from 10 (one per class) to all: every class kept, no image twice,
    the same draw for the same seed (near the full size, where a stratified draw of what is left
    out is impossible, one image of each of the largest classes is left out)."""
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(10), 20)
    rng.shuffle(labels)
    images = np.arange(200)[:, None, None, None].astype(np.uint8) * np.ones((1, 2, 2, 3), np.uint8)
    x, y = splits.subset(images, labels, size, 3, "where")
    assert len(y) == size and set(y) == set(range(10))
    indices = x[:, 0, 0, 0]
    assert len(set(indices.tolist())) == size and np.array_equal(labels[indices], y)
    assert np.array_equal(splits.subset(images, labels, size, 3, "where")[1], y)
    counts = np.bincount(y, minlength=10)
    assert counts.max() - counts.min() <= 1 + (size < 200 and size > 190)


def test_train_command_honours_threads(ten_class_data, tmp_path):
    """``--threads`` (what Snakemake passes) sizes TensorFlow's pools in the training process; without
    it (DVC's command) the experiment's ``threads`` param does. train.json reads the pools back from
    TensorFlow after the run configured them."""

    from conftest import run

    data_dir, params = ten_class_data
    params = json.loads(json.dumps(params))
    params["cifar_base_cnn"].update(epochs=1, batch_size=32, train_subset=100, val_subset=20, train_eval_images=20,
                                    threads=2, seeds=[0])
    write_params(tmp_path / "params.yaml", params)
    base = ["imgclf", "train", "cifar_base_cnn", "--seed", "0", "--data", str(data_dir), "--params", "params.yaml"]
    for out, extra, expected in (("one", ["--threads", "1"], 1), ("param", [], 2)):
        run([*base, "--out", out, *extra], tmp_path, timeout=600)
        meta = json.loads((tmp_path / out / "train.json").read_text())
        assert (meta["threads"], meta["intra_op_threads"], meta["inter_op_threads"]) == (expected, expected, expected)


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64") or os.environ.get("TF_ENABLE_ONEDNN_OPTS") == "0",
                    reason="oneDNN's instruction-set cap is an x86 setting (and needs oneDNN on)")
def test_the_cpu_isa_param_caps_onednn(ten_class_data, tmp_path):
    """``cpu_isa`` caps the instruction set oneDNN uses in the training process, by oneDNN's own
    verbose log (the ISA it runs with): ``sse41``, below what any x86-64 machine this stack runs on
    has, gives SSE4.1, and ``avx2`` AVX2; ``native`` (no cap) is what the machine offers."""

    from conftest import run

    data_dir, params = ten_class_data
    params = json.loads(json.dumps(params))
    params["cifar_base_cnn"].update(epochs=1, batch_size=32, train_subset=64, val_subset=20, train_eval_images=20,
                                    seeds=[0])
    env = {key: value for key, value in os.environ.items() if key != "ONEDNN_MAX_CPU_ISA"} | {"ONEDNN_VERBOSE": "1"}
    isas = {}
    for isa in ("sse41", "avx2", "native"):
        params["cifar_base_cnn"]["cpu_isa"] = isa
        write_params(tmp_path / "params.yaml", params)
        result = run(["imgclf", "train", "cifar_base_cnn", "--seed", "0", "--data", str(data_dir), "--params",
                      "params.yaml", "--out", isa, "--threads", "1"], tmp_path, timeout=600, env=env)
        isas[isa] = {line.split("isa:", 1)[1] for line in result.stdout.splitlines()
                     if line.startswith("onednn_verbose,") and ",info,cpu,isa:" in line}
    assert isas["sse41"] == {"Intel SSE4.1"} and isas["native"] != isas["sse41"], isas
    if "avx512f" in Path("/proc/cpuinfo").read_text().split():
        assert isas["avx2"] == {"Intel AVX2"} and "AVX-512" in isas["native"].pop(), isas


@pytest.mark.slow
def test_two_devices_train_save_and_evaluate_like_one(ten_class_data, tmp_path):
    """gpus: 2 on two logical CPU devices (the CPU split by the test harness, ``fault_env``): training
    runs under MirroredStrategy (train.json says 2 replicas), the global batch split across them
    (each replica's ``train_step`` is handed 16 of the 32 images, as the harness's
    ``IMGCLF_REPLICA_BATCHES`` observes, and every image still trains once an epoch), and the saved
    model evaluates like the single-device one's: its training loss falls as far, and its test top-1
    is the same within a few images."""
    import copy
    import os
    import subprocess


    from conftest import fault_env

    data_dir, params = ten_class_data
    params = copy.deepcopy(params)  # the fixture's dict is shared with the other tests
    results = {}
    for gpus in (1, 2):
        params["cifar_base_cnn"].update(epochs=2, batch_size=32, augment_flip=False, augment_crop=0, gpus=gpus,
                                        train_subset=480, train_eval_images=200, seeds=[0])
        write_params(tmp_path / f"p{gpus}.yaml", params)
        # training on two logical CPU devices; evaluation on the one CPU device, as on one GPU
        batches = tmp_path / f"batches{gpus}.txt"
        for command, env in ((["train", "cifar_base_cnn", "--data", str(data_dir), "--out", f"m{gpus}"],
                              {**fault_env(logical_cpus=2), "IMGCLF_REPLICA_BATCHES": str(batches)}),
                             (["evaluate", "cifar_base_cnn", "--data", str(data_dir), "--model", f"m{gpus}",
                               "--metrics", f"m{gpus}.json", "--out", f"e{gpus}"], os.environ)):
            done = subprocess.run(["imgclf", *command, "--threads", "2", "--params", f"p{gpus}.yaml"], cwd=tmp_path,
                                  env=env, capture_output=True, text=True, timeout=600)
            assert done.returncode == 0, done.stderr[-3000:]
        meta = json.loads((tmp_path / f"m{gpus}" / "train.json").read_text())
        results[gpus] = meta, json.loads((tmp_path / f"m{gpus}.json").read_text()), \
            [int(line) for line in batches.read_text().split()]
    (one, one_metrics, one_batches), (two, two_metrics, two_batches) = results[1], results[2]
    assert one["replicas"] == 1 and two["replicas"] == 2
    assert max(one_batches) == 32 and max(two_batches) == 16 and len(two_batches) == 2 * len(one_batches)
    assert sum(one_batches) == sum(two_batches) == 2 * one["train_images"], (one_batches, two_batches)
    assert one["params"] == two["params"] and one["epochs"] == two["epochs"] == 2
    # dropout masks and each replica's BatchNorm batch statistics differ, so the losses agree only
    # statistically; both fall the same way and the saved models test alike
    for meta in (one, two):
        losses = [row["loss"] for row in meta["history"]]
        assert np.all(np.isfinite(losses)) and losses[-1] < 0.5 * losses[0], losses
    assert abs(one_metrics["top1"] - two_metrics["top1"]) <= 0.05, (one_metrics["top1"], two_metrics["top1"])
    assert two_metrics["train_top1"] > 2 * two_metrics["chance_top1"]


def test_a_batch_the_devices_cannot_share_is_refused(ten_class_data, tmp_path):
    """gpus: 2 on two devices with a global batch of 33: one line, exit 2, before any training;
    no model, no checkpoint."""
    import copy
    import subprocess


    from conftest import fault_env

    data_dir, params = ten_class_data
    params = copy.deepcopy(params)
    params["cifar_base_cnn"].update(batch_size=33, gpus=2, seeds=[0])
    write_params(tmp_path / "p.yaml", params)
    done = subprocess.run(["imgclf", "train", "cifar_base_cnn", "--data", str(data_dir), "--out", "m", "--threads", "2",
                           "--params", "p.yaml"], cwd=tmp_path, env=fault_env(logical_cpus=2), capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 2 and done.stderr.strip().splitlines()[-1] == \
        "error: batch_size 33 does not split evenly over 2 devices", done.stderr[-2000:]
    left = sorted(str(path.relative_to(tmp_path)) for path in tmp_path.rglob("*") if path.is_file())
    assert left == [".resume/cifar_base_cnn/seed0.lock", "p.yaml"]  # the run's lock (kept: see resume.exclusive)


def test_steps_per_epoch_cuts_training_not_the_data(ten_class_data, tmp_path, monkeypatch):
    """``steps_per_epoch`` (the paper-scale rehearsal's cap) trains that many mini-batches of the full
    split and says so in the timings log; the data set, the validation pass and what train.json
    records of the data stay as they are without the cap."""
    from imgclf import train

    data_dir, params = ten_class_data
    monkeypatch.chdir(tmp_path)  # the resume directory
    runs = {}
    for steps in (None, 3):
        section = {**params["cifar_base_cnn"], "epochs": 1, "batch_size": 16, "seeds": [0], "steps_per_epoch": steps}
        meta = train.run(experiments.get("cifar_base_cnn"), data_dir, tmp_path / f"m{steps}", section,
                         experiments.result_params(section), 1, 0, timings_path=tmp_path / f"t{steps}.json")
        runs[steps] = meta, json.loads((tmp_path / f"t{steps}.json").read_text())
    (full, full_times), (cut, cut_times) = runs[None], runs[3]
    assert full["train_images"] == cut["train_images"] == full_times["trained_images"] > 3 * 16
    assert cut_times["trained_images"] == 3 * 16
    assert cut_times["fit_seconds"][0] < full_times["fit_seconds"][0]
    assert all(s > 0 for s in (*full_times["step_seconds"], *cut_times["step_seconds"]))
    assert cut["history"][0]["val_accuracy"] != full["history"][0]["val_accuracy"]  # it trained less
