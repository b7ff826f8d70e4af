"""The process's compute set-up: Keras' backend (TensorFlow or JAX), its threads, the instruction set
its CPU kernels may use and the CPU a result came from (train and evaluate), and for training op
determinism, seeds, GPU memory growth, mixed precision, XLA and the devices. TensorFlow and JAX are
imported inside the functions, after the backend is chosen and the ISA pinned."""

import os
import platform
import sys
from contextlib import nullcontext, suppress
from pathlib import Path

from imgclf.errors import PipelineError

# oneDNN's kernels are JIT-compiled for the CPU's best instruction set, and kernels for different
# sets sum in different orders: pinning the set makes an AVX-512 Xeon and an AVX2 EPYC run the same
# code. Names as oneDNN's ONEDNN_MAX_CPU_ISA takes them.
CPU_ISAS = {"native": None, "sse41": "SSE41", "avx": "AVX", "avx2": "AVX2", "avx2_vnni": "AVX2_VNNI",
            "avx512_core": "AVX512_CORE", "avx512_core_vnni": "AVX512_CORE_VNNI"}


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def threads(value: int | None, section: dict | None = None) -> int:
    """``--threads``, else the ``threads`` param of ``section``, else all cores. For train/evaluate's
    TensorFlow threads Snakemake passes the rule's threads (the experiment's ``threads`` param unless
    --cores is smaller); without it, that param. Never "all cores" there: CPU results depend on the
    thread count, so a DVC run (no ``--threads``) must use the same count as a Snakemake run."""
    return value if value and value > 0 else (section or {}).get("threads") or available_cores()


def seed(value: int | None, section: dict) -> int:
    """``--seed``, else the experiment's first seed."""
    if value is not None and value < 0:
        raise PipelineError(f"--seed: {value} is negative")
    return section["seeds"][0] if value is None else value


def select_backend(backend: str) -> None:
    """Make ``backend`` Keras' backend (KERAS_BACKEND, read when Keras is first imported): the
    ``backend`` param decides, whatever the environment says. Where Keras is loaded already with
    another one (tests), or the backend's package is missing, one line says so."""
    if "keras" in sys.modules:
        import keras
        if keras.backend.backend() != backend:
            raise PipelineError(f"backend: {backend} asked for, but Keras runs on {keras.backend.backend()} in this process")
        return
    if backend == "jax":
        try:
            import jax  # noqa: F401
        except ImportError:
            raise PipelineError("backend: jax needs JAX (pip install -e '.[jax]'; on a GPU node jax[cuda12])") from None
    os.environ["KERAS_BACKEND"] = backend


def pin_cpu_isa(isa: str) -> str | None:
    """Set ONEDNN_MAX_CPU_ISA before TensorFlow loads oneDNN (it reads it once), and on the JAX
    backend XLA's --xla_cpu_max_isa before JAX first computes; return oneDNN's setting in force.
    The commands call this before importing TensorFlow; where TensorFlow is loaded already
    (tests), a different value would not take effect, and is not set."""
    value = CPU_ISAS[isa]
    if value is not None and "tensorflow" not in sys.modules:
        os.environ["ONEDNN_MAX_CPU_ISA"] = value
    if XLA_CPU_ISAS[isa] and os.environ.get("KERAS_BACKEND") == "jax":
        _add_xla_flag(f"--xla_cpu_max_isa={XLA_CPU_ISAS[isa]}")
    return os.environ.get("ONEDNN_MAX_CPU_ISA")


def cpu_description() -> dict:
    """CPU model and the instruction-set flags that decide which kernels oneDNN can pick."""
    model, flags = platform.processor() or platform.machine(), []
    with suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model in ("", platform.machine(), platform.processor()):
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = line.split(":", 1)[1].split()
                break
    wanted = ("sse4_1", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
              "avx512_bf16", "amx_tile", "avx_vnni")
    return {"cpu_model": model, "cpu_flags": " ".join(f for f in wanted if f in flags)}


def set_threads(threads: int) -> None:
    """The backend's CPU threads, sized to what Snakemake gave the job (no oversubscription):
    TensorFlow's thread pools. On JAX, XLA's CPU runtime has no thread-count setting: one thread
    (``--xla_cpu_multi_thread_eigen=false``, before JAX first computes) where one is asked for,
    else every core the process may use, so bind a job with more (SLURM does, or ``taskset``)."""
    import keras
    if keras.backend.backend() == "jax":
        if threads == 1:
            _add_xla_flag("--xla_cpu_multi_thread_eigen=false")
        return
    import tensorflow as tf
    with suppress(RuntimeError):  # TensorFlow already started in this process (tests): keep its pools
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(min(2, threads))


# the same sets as XLA's CPU code generation names them (--xla_cpu_max_isa), for the JAX backend
# (XLA has no SSE4.1 or AVX2-VNNI cap: the next set up, and AVX2, which leaves AVX-VNNI on)
XLA_CPU_ISAS = {"native": None, "sse41": "SSE4_2", "avx": "AVX", "avx2": "AVX2", "avx2_vnni": "AVX2",
                "avx512_core": "AVX512", "avx512_core_vnni": "AVX512_VNNI"}


def _add_xla_flag(flag: str) -> None:
    """Append ``flag`` to XLA_FLAGS (read when JAX first computes), unless the flag is set already
    (by the user's environment, or by an earlier call in this process)."""
    flags = os.environ.get("XLA_FLAGS", "")
    if flag.split("=")[0] not in flags:
        os.environ["XLA_FLAGS"] = " ".join(filter(None, [flags, flag]))


def _configure_jax(threads: int, section: dict) -> dict:
    """JAX's share of ``configure_runtime``: threads (``set_threads``); ``cpu_isa`` caps XLA's code
    generation as ONEDNN_MAX_CPU_ISA caps oneDNN's (``pin_cpu_isa``); XLA's CPU kernels are
    deterministic, and on a GPU ``op_determinism`` asks for XLA's deterministic ops. Every training
    step is XLA-compiled."""
    import jax

    set_threads(threads)
    if section["op_determinism"]:
        _add_xla_flag("--xla_gpu_deterministic_ops=true")
    gpus = [device for device in jax.devices() if device.platform == "gpu"]
    return {"device": "GPU" if gpus else "CPU", "gpus": len(gpus), "mixed_precision": bool(gpus) and section["mixed_precision"],
            "xla": True,
            "intra_op_threads": 1 if threads == 1 else available_cores(),
            "xla_flags": os.environ.get("XLA_FLAGS", ""), "jax": jax.__version__}


def _configure_tensorflow(threads: int, section: dict) -> dict:
    """TensorFlow's share of ``configure_runtime``: thread pools, op determinism, GPU memory growth."""
    import tensorflow as tf
    set_threads(threads)
    if section["op_determinism"]:
        tf.config.experimental.enable_op_determinism()
    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        tf.config.experimental.set_memory_growth(gpu, True)
    return {"device": "GPU" if gpus else "CPU", "gpus": len(gpus), "mixed_precision": bool(gpus) and section["mixed_precision"],
            "xla": bool(gpus) and section["xla"],
            # what TensorFlow's pools really are (tests import TF first: then they are TF's defaults)
            "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
            "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads()}


def configure_runtime(threads: int, section: dict, seed: int) -> dict:
    """Threads, instruction set, op determinism, seeds, GPU memory growth, mixed precision and
    XLA, before any op runs, on Keras' backend (``select_backend``); returns what a result depends
    on, for train.json. The input pipeline is tf.data on either backend."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    isa = pin_cpu_isa(section["cpu_isa"])
    import keras
    import tensorflow as tf
    backend = keras.backend.backend()
    facts = _configure_jax(threads, section) if backend == "jax" else _configure_tensorflow(threads, section)
    keras.mixed_precision.set_global_policy("mixed_float16" if facts["mixed_precision"] else "float32")
    # Python's, NumPy's, the backend's and Keras' seeds, before the first model is built: its initial
    # weights depend on nothing else
    keras.utils.set_random_seed(seed)
    return {**facts, "backend": backend, "threads": threads, "seed": seed,
            "cpu_isa": section["cpu_isa"], "onednn_max_cpu_isa": isa,
            "onednn_opts": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default (on)"),
            "op_determinism": bool(section["op_determinism"]),
            "tensorflow": tf.__version__, "keras": keras.__version__, "python": platform.python_version(),
            **cpu_description()}


def distribution(section: dict):
    """``tf.distribute.MirroredStrategy`` over the job's devices when its params ask for more than
    one GPU and more than one device is there (its GPUs where there are two or more, else the
    process's logical CPU devices where it has two or more), else None. ``batch_size`` stays the
    global batch, split evenly across the replicas, and the learning rate stays as set: the
    recipe does not depend on how many GPUs a job got (docs/design.md, "GPUs")."""
    if section["gpus"] <= 1:
        return None
    import keras
    if keras.backend.backend() != "tensorflow":
        raise PipelineError(f"gpus: {section['gpus']}: training on several devices uses TensorFlow's "
                            f"MirroredStrategy; on the {keras.backend.backend()} backend set gpus: 1")
    import tensorflow as tf
    gpus = [d.name for d in tf.config.list_logical_devices("GPU")]
    cpus = [d.name for d in tf.config.list_logical_devices("CPU")]
    devices = gpus if len(gpus) >= 2 else cpus if len(cpus) >= 2 else gpus
    if len(devices) < 2:
        print(f"note: gpus: {section['gpus']} asked for, {len(devices) or 'no'} GPU(s) here: one device", flush=True)
        return None
    if section["batch_size"] % len(devices):
        raise PipelineError(f"batch_size {section['batch_size']} does not split evenly over {len(devices)} devices")
    return tf.distribute.MirroredStrategy(devices)


def replicas(strategy) -> int:
    return strategy.num_replicas_in_sync if strategy is not None else 1


def model_scope(strategy):
    return strategy.scope() if strategy is not None else nullcontext()
