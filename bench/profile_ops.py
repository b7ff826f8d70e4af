"""Profile: where a training step's time goes, by TensorFlow op type, and at what FLOP rate.

Trains an experiment's model (as ``imgclf train`` builds and compiles it: fused optimizer, graph
mode) on random 32x32 images for a few warm steps, then records ``--steps`` steps with TensorFlow's
profiler and reads the trace (XPlane) itself: for each op type, the time per step, its share of
the step, and for the convolutions (forward, gradient w.r.t. input, gradient w.r.t. filter, each
of which does the forward pass's multiply-adds) their FLOP rate against the fp32 matmul peak
measured in the same run (first, in a fresh process). Usage:

    python bench/profile_ops.py [--experiment densenet121] [--steps 5] [--threads 2] [--batch 64]
"""

from __future__ import annotations

import argparse
import collections
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

# op types by what they do; a oneDNN build names them _Mkl*/_MklNative* and fuses some
CONV_KINDS = {"forward": ("Conv2D",), "grad input": ("Conv2DBackpropInput",), "grad filter": ("Conv2DBackpropFilter",)}


def conv_kind(op_type: str) -> str | None:
    base = op_type.replace("_MklNative", "").replace("_Mkl", "").replace("Fused", "")
    for kind, names in CONV_KINDS.items():
        if base in names or (kind == "forward" and base.startswith("Conv2D") and "Backprop" not in base):
            return kind
    return None


def op_times(logdir: Path) -> dict[str, float]:
    """Seconds per op type in the trace: on the host CPU plane, the executor threads' events named
    ``<node>:<op type>`` (``ExecutorState::Process`` and the thread-pool marks are not ops). The
    two inter-op threads run ops side by side, so the sum can exceed the wall time."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    totals: dict[str, float] = collections.defaultdict(float)
    for path in logdir.rglob("*.xplane.pb"):
        space = xplane_pb2.XSpace()
        space.ParseFromString(path.read_bytes())
        for plane in space.planes:
            if not plane.name.startswith("/host:CPU"):
                continue
            names = {key: meta.name for key, meta in plane.event_metadata.items()}
            for line in plane.lines:
                if not line.name.startswith("tf_Compute"):
                    continue
                for event in line.events:
                    name = names.get(event.metadata_id, "")
                    if ":" in name and "::" not in name:
                        totals[name.rsplit(":", 1)[1]] += event.duration_ps / 1e12
    return dict(totals)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experiment", default="densenet121")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()

    from bench_train import forward_flops, spawn

    from imgclf import config, experiments, models, train
    from imgclf.runtime import configure_runtime

    # the peak first, in a fresh process, as bench_train.py measures it
    peak = spawn("--worker", "matmul", "--threads", str(args.threads))[0]["gflops"]
    section = dict(config.load(ROOT / "params.yaml")[args.experiment])
    section.update(run_eagerly=False, xla=False, mixed_precision=False, batch_size=args.batch)
    runtime = configure_runtime(args.threads, section, 0)
    import numpy as np
    import tensorflow as tf

    experiment = experiments.get(args.experiment)
    model = models.build(experiment.model, (32, 32, 3), 200)
    train.compile_model(model, section, runtime, 1e-3, 100)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (args.batch * args.steps, 32, 32, 3)).astype(np.float32)
    y = rng.integers(0, 200, args.batch * args.steps)
    model.fit(x, y, batch_size=args.batch, epochs=2, verbose=0)  # trace, then warm
    with tempfile.TemporaryDirectory() as logdir:
        started = time.perf_counter()
        tf.profiler.experimental.start(logdir)
        model.fit(x, y, batch_size=args.batch, epochs=1, verbose=0)
        tf.profiler.experimental.stop()
        wall = (time.perf_counter() - started) / args.steps
        totals = op_times(Path(logdir))
    flops = forward_flops(model) * args.batch  # per step, for each of the three conv kinds
    step = sum(totals.values()) / args.steps
    print(f"{args.experiment}: batch {args.batch}, {args.threads} threads; step {wall * 1e3:.0f} ms wall, "
          f"{step * 1e3:.0f} ms summed over ops; fp32 matmul peak {peak:.0f} GFLOP/s; "
          f"whole step {3 * flops / wall / 1e9:.0f} GFLOP/s ({3 * flops / wall / 1e9 / peak:.0%} of peak)")
    by_kind: dict[str, float] = collections.defaultdict(float)
    for op_type, seconds in totals.items():
        by_kind[conv_kind(op_type) or "other"] += seconds / args.steps
    print(f"{'op type':<36} {'ms/step':>8} {'share':>6} {'GFLOP/s':>8} {'of peak':>7}")
    for op_type, seconds in sorted(totals.items(), key=lambda item: -item[1])[:25]:
        per_step, kind = seconds / args.steps, conv_kind(op_type)
        rate = ""
        if kind and abs(per_step - by_kind[kind]) < 1e-9:  # the kind is this one op type: its rate is exact
            gflops = flops / per_step / 1e9
            rate = f"{gflops:8.0f} {gflops / peak:7.0%}"
        print(f"{op_type:<36} {per_step * 1e3:8.1f} {per_step / step:6.0%} {rate}")
    for kind in CONV_KINDS:
        if by_kind[kind]:
            gflops = flops / by_kind[kind] / 1e9
            print(f"all convolutions, {kind:<18} {by_kind[kind] * 1e3:8.1f} {by_kind[kind] / step:6.0%} "
                  f"{gflops:8.0f} {gflops / peak:7.0%}")
    print(f"{'everything else':<36} {by_kind['other'] * 1e3:8.1f} {by_kind['other'] / step:6.0%}")


if __name__ == "__main__":
    main()
