"""The process's compute set-up, shared by the train and evaluate commands: TensorFlow's thread
pools, the instruction set oneDNN may use, and what CPU a result came from."""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

# oneDNN's kernels are JIT-compiled for the CPU's best instruction set, and kernels for different
# sets sum in different orders: pinning the set makes an AVX-512 Xeon and an AVX2 EPYC run the same
# code. Names as oneDNN's ONEDNN_MAX_CPU_ISA takes them.
CPU_ISAS = {"native": None, "sse41": "SSE41", "avx": "AVX", "avx2": "AVX2", "avx2_vnni": "AVX2_VNNI",
            "avx512_core": "AVX512_CORE", "avx512_core_vnni": "AVX512_CORE_VNNI"}


def pin_cpu_isa(isa: str) -> str | None:
    """Set ONEDNN_MAX_CPU_ISA before TensorFlow loads oneDNN (it reads it once); return what is in
    force. The commands call this before importing TensorFlow; where TensorFlow is loaded already
    (tests), a different value would not take effect, and is not set."""
    value = CPU_ISAS[isa]
    if value is not None and "tensorflow" not in sys.modules:
        os.environ["ONEDNN_MAX_CPU_ISA"] = value
    return os.environ.get("ONEDNN_MAX_CPU_ISA")


def cpu_description() -> dict:
    """CPU model and the instruction-set flags that decide which kernels oneDNN can pick."""
    model, flags = platform.processor() or platform.machine(), []
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model in ("", platform.machine(), platform.processor()):
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = line.split(":", 1)[1].split()
                break
    except OSError:
        pass
    wanted = ("sse4_1", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
              "avx512_bf16", "amx_tile", "avx_vnni")
    return {"cpu_model": model, "cpu_flags": " ".join(f for f in wanted if f in flags)}


def set_threads(threads: int) -> None:
    """TensorFlow's thread pools, sized to what Snakemake gave the job (no oversubscription)."""
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(min(2, threads))
    except RuntimeError:  # TensorFlow already started in this process (tests): keep its pools
        pass


def split_cpu(count: int) -> None:
    """Test hook (``IMGCLF_LOGICAL_CPUS=2``): the CPU as ``count`` logical devices, so the
    multi-device path (``gpus`` > 1) runs on a machine without GPUs."""
    import tensorflow as tf

    if count > 1:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * count)
