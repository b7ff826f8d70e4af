"""Exact resume: a training run killed with SIGKILL at any point (mid-epoch, while its checkpoint
is being written, between fine-tuning folds, inside an AutoKeras trial) and then rerun ends with
the same history numbers, bit-identical weights and the same per-epoch logs (DVCLive files byte
for byte, TensorBoard scalars step for step) as an undisturbed run; and two undisturbed runs of
the same commit, params and data give identical metrics."""

import json
import subprocess

import numpy as np
import pytest

from conftest import fault_env, load_params, run, write_params

pytestmark = pytest.mark.slow
RESULT_KEYS = ("top1", "top5", "loss", "train_top1", "train_top5", "train_loss", "top_class_share",
               "predicted_classes", "mean_per_class_top1", "params", "epochs", "train_images")


@pytest.fixture(scope="module")
def workspace(module_tmp, small_tiny_zip):
    """Prepared 12-class data and a params file sized for seconds-long runs."""
    root = module_tmp
    params = load_params()
    params["data"]["imagenet200"]["n_classes"] = 12
    params["cifar_base_cnn"].update(epochs=4, batch_size=8, augment_flip=True, augment_crop=2, seeds=[3])
    params["cifar_densenet201_finetune"].update(epochs=1, batch_size=16, kfold=2, train_subset=60, val_subset=24,
                                                unfreeze_from="conv5_block31_")
    params["autokeras"].update(epochs=2, batch_size=16, max_trials=2, train_subset=120, val_subset=24)
    write_params(root / "params.yaml", params)
    run(["imgclf", "prepare", "imagenet200", "--source", str(small_tiny_zip), "--out", "data", "--threads", "1"], root)
    return root


def train(root, name, out, kill_at=None, extra=()):
    env = fault_env(kill_at) if kill_at else None
    command = ["imgclf", "train", name, "--data", "data", "--out", out, "--threads", "1",
               "--live", f"live/{out}", "--tensorboard", f"tb/{out}", *extra]
    return subprocess.run(command, cwd=root, capture_output=True, text=True, env=env, timeout=900)


def killed_then_resumed(root, name, out, kill_at, extra=()):
    """Kill a run at ``kill_at``, rerun it undisturbed; the rerun's output."""
    first = train(root, name, out, kill_at, extra)
    assert first.returncode == -9, f"not killed at {kill_at}:\n{first.stdout[-2000:]}\n{first.stderr[-2000:]}"
    assert not (root / out).exists(), "a killed run must not leave a model that looks complete"
    second = train(root, name, out, None, extra)
    assert second.returncode == 0, second.stdout[-2000:] + second.stderr[-2000:]
    return second.stdout


def clean_and_resumed(root, name, prefix, kill_at, extra=()) -> str:
    """An undisturbed run into ``<prefix>-clean`` and a killed-then-resumed one into
    ``<prefix>-resumed`` with the same weights, history and logs; the resumed run's output."""
    clean = train(root, name, f"{prefix}-clean", extra=extra)
    assert clean.returncode == 0, clean.stderr[-3000:]
    log = killed_then_resumed(root, name, f"{prefix}-resumed", kill_at, extra)
    assert_same_model(root / f"{prefix}-clean", root / f"{prefix}-resumed")
    return log


def weights(model_dir):
    import keras

    from imgclf.models import autokeras_search

    model = keras.models.load_model(model_dir / "model.keras", compile=False,
                                    custom_objects=autokeras_search.custom_objects())
    return [w.numpy() for w in model.weights]


def history(model_dir):
    rows = json.loads((model_dir / "train.json").read_text())["history"]
    return [{k: v for k, v in row.items() if k != "seconds"} for row in rows]


def live_files(live_dir):
    """Every file of a DVCLive directory, by relative path: its bytes."""
    return {str(p.relative_to(live_dir)): p.read_bytes() for p in sorted(live_dir.rglob("*")) if p.is_file()}


def tensorboard_scalars(log_dir):
    """(run directory, tag, step, value) of every scalar in a TensorBoard log directory."""
    import tensorflow as tf

    found = []
    for events in sorted(log_dir.rglob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(events)):
            for value in event.summary.value:
                number = float(tf.make_ndarray(value.tensor)) if value.HasField("tensor") else value.simple_value
                found.append((str(events.parent.relative_to(log_dir)), value.tag, event.step, number))
    return sorted(found)


def assert_same_model(a, b):
    wa, wb = weights(a), weights(b)
    assert len(wa) == len(wb) and len(wa) > 0
    different = [i for i, (x, y) in enumerate(zip(wa, wb)) if not np.array_equal(x, y)]
    assert not different, f"{len(different)} of {len(wa)} weight arrays differ"
    assert history(a) == history(b)
    root = a.parent
    epochs = len(history(a))
    logs = live_files(root / "live" / a.name)
    assert logs == live_files(root / "live" / b.name) and (logs or not epochs)
    scalars = tensorboard_scalars(root / "tb" / a.name)
    assert scalars == tensorboard_scalars(root / "tb" / b.name)
    assert {step for _, _, step, _ in scalars} == set(range(1, epochs + 1))


@pytest.fixture(scope="module")
def undisturbed(workspace):
    result = train(workspace, "cifar_base_cnn", "clean")
    assert result.returncode == 0, result.stderr[-3000:]
    return workspace / "clean"


KILLS = (("batch:40", None), ("checkpoint:1", 1), ("state:2", 1), ("batch:30", 2))


@pytest.fixture(scope="module")
def killed_and_resumed(workspace):
    """The run of the undisturbed one's settings killed four times, then run to its end: each
    killed run's result, what it left (a model directory? DVCLive's summary), and the last run."""
    out, killed = "resumed", []
    for kill_at, _ in KILLS:
        result = train(workspace, "cifar_base_cnn", out, kill_at)
        killed.append((result, (workspace / out).exists(), json.loads((workspace / "live" / out / "metrics.json").read_text())))
    return workspace / out, killed, train(workspace, "cifar_base_cnn", out)


def test_run_killed_again_and_again_ends_with_the_undisturbed_model(workspace, undisturbed, killed_and_resumed):
    """One run killed four times, each rerun resuming from what the last kill left (27 batches an
    epoch, 4 epochs; flips, crops, dropout and BatchNorm all on):
    batch:40, mid-epoch 2, with epoch 1's checkpoint on disk; then checkpoint:1, with epoch 2's
    weights in a temporary file; then state:2, with epoch 3's checkpoint renamed into place but
    not yet recorded; then batch:30, in the last epoch. The fifth run finishes."""
    resumed, killed, final = killed_and_resumed
    for (kill_at, resumes_after), (result, left_a_model, live) in zip(KILLS, killed):
        assert result.returncode == -9, f"not killed at {kill_at}:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
        if resumes_after:
            assert f"resuming after epoch {resumes_after} " in result.stdout, (kill_at, result.stdout[-2000:])
        assert not left_a_model, "a killed run must not leave a model that looks complete"
        # what `dvc exp show` reads while a run trains: the last checkpointed epoch, no later one
        assert live["step"] == {"batch:40": 1, "checkpoint:1": 1, "state:2": 2, "batch:30": 3}[kill_at], (kill_at, live)
    assert final.returncode == 0 and "resuming after epoch 3 " in final.stdout, final.stdout[-2000:] + final.stderr[-2000:]
    assert_same_model(undisturbed, resumed)
    assert not (workspace / ".resume/cifar_base_cnn/seed3").exists()
    assert not list((workspace / ".resume").rglob("*.tmp"))


def test_same_commit_params_and_data_give_identical_metrics(workspace, undisturbed, killed_and_resumed):
    """Two runs in separate processes (the undisturbed one and the one killed four times) give
    bit-identical weights, and evaluation gives identical metrics; train.json says what they
    depend on."""
    metrics = []
    for out in ("clean", "resumed"):
        run(["imgclf", "evaluate", "cifar_base_cnn", "--data", "data", "--model", out, "--metrics", f"{out}.json",
             "--out", f"{out}-eval", "--threads", "1"], workspace)
        metrics.append(json.loads((workspace / f"{out}.json").read_text()))
    assert {k: metrics[0][k] for k in RESULT_KEYS} == {k: metrics[1][k] for k in RESULT_KEYS}
    assert metrics[0]["train_top1"] > 2 * metrics[0]["chance_top1"]
    meta = json.loads((undisturbed / "train.json").read_text())
    for key in ("tensorflow", "keras", "cpu_model", "cpu_flags", "device", "threads", "cpu_isa", "onednn_max_cpu_isa",
                "op_determinism", "seed"):
        assert key in meta, key
    assert meta["onednn_max_cpu_isa"] == "AVX2" and meta["op_determinism"] is True and meta["threads"] == 1


def test_finetune_killed_between_folds(workspace, tmp_path):
    from imgclf.models import transfer
    from test_models import _local_weights

    upstream = workspace / "transfer"
    if not upstream.exists():
        upstream.mkdir()
        transfer.transfer_model((32, 32, 3), 12, weights=_local_weights()).save(upstream / "model.keras")
    log = clean_and_resumed(workspace, "cifar_densenet201_finetune", "ft", "fold:1", ("--upstream", "transfer"))
    assert "fold 1/2" in log
    a, b = (json.loads((workspace / d / "train.json").read_text()) for d in ("ft-clean", "ft-resumed"))
    assert a["cv_top1_folds"] == b["cv_top1_folds"]


def test_autokeras_killed_inside_a_trial(workspace):
    """Two trials of 2 epochs x 8 batches: batch:20 is inside the second trial."""
    clean_and_resumed(workspace, "autokeras", "ak", "batch:20")
    assert (workspace / "ak-clean/trials.csv").read_text() == (workspace / "ak-resumed/trials.csv").read_text()


def test_a_second_trainer_of_the_same_run_stops_in_one_line(tmp_path):
    """While a process holds run (seed_cnn, 0)'s lock, `imgclf train` of that run stops at once,
    naming the holder; once the holder is gone (killed: the kernel drops its lock), the run is free."""
    import signal
    import sys

    from conftest import ROOT

    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom imgclf import resume\n"
                               "with resume.exclusive('seed_cnn', 0, 'm'):\n    print('held', flush=True)\n"
                               "    time.sleep(60)\n"], cwd=tmp_path, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        train = ["imgclf", "train", "seed_cnn", "--seed", "0", "--data", "nowhere", "--out", "models/seed_cnn/seed0"]
        result = run(train, tmp_path, check=False)
        assert result.returncode == 2 and result.stderr == (
            f"error: models/seed_cnn/seed0: another process (pid {holder.pid}) is training seed_cnn seed 0; "
            "wait for it to end or stop it\n")
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        result = run(train, tmp_path, check=False)
        assert result.returncode != 0 and "another process" not in result.stderr and "nowhere" in result.stderr
    finally:
        holder.kill()
        holder.wait()


def test_a_jax_run_killed_mid_epoch_resumes_to_the_undisturbed_jax_run(workspace):
    """On the JAX backend (augmentation, dropout, BatchNorm recalibration, DVCLive and TensorBoard
    logs as on TensorFlow): killed mid-epoch 2, the rerun ends with the undisturbed JAX run's weights,
    history and logs, and train.json records the backend."""
    log = clean_and_resumed(workspace, "cifar_base_cnn", "jax", "batch:40", ("--set", "cifar_base_cnn.backend=jax"))
    assert "resuming after epoch 1" in log
    meta = json.loads((workspace / "jax-resumed" / "train.json").read_text())
    assert meta["backend"] == "jax" and meta["jax"] and meta["bn_recalibrated_layers"] > 0
