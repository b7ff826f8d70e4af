"""The registry of experiments: each name maps to a model builder, a data set, a trainer kind,
its params section (schema and defaults) and the figures the paper reports.

Adding an experiment is one ``register(Experiment(...))`` call here; Snakemake, dvc.yaml, the
schema and the report all read this registry."""

from __future__ import annotations

from dataclasses import dataclass, field

from imgclf.errors import PipelineError
from imgclf.sources import DATASETS  # the data set registry

KINDS = ("keras", "autokeras", "transfer", "finetune")


@dataclass(frozen=True)
class Paper:
    """What the paper prints for an experiment, exactly as printed (fractions, not percent; None
    where it is silent). ``same_task``: the figure was measured on the task this experiment runs
    (the same classes at 32x32), so it may stand beside our result in a plot."""

    top1: float | None = None
    top5: float | None = None
    params_m: float | None = None
    note: str = ""
    same_task: bool = True


@dataclass(frozen=True)
class Experiment:
    name: str
    title: str
    model: str  # a name in imgclf.models.MODELS
    dataset: str
    kind: str = "keras"
    paper: Paper = Paper()
    upstream: str | None = None  # experiment whose trained model this one starts from
    defaults: dict = field(default_factory=dict)  # overrides of the common defaults
    extra: dict = field(default_factory=dict)  # schema properties only this experiment has
    model_source: str = ""  # module file of the model family, a dependency of training


EXPERIMENTS: dict[str, Experiment] = {}


def register(experiment: Experiment) -> Experiment:
    if experiment.name in EXPERIMENTS:
        raise ValueError(f"experiment {experiment.name!r} registered twice")
    if experiment.dataset not in DATASETS or experiment.kind not in KINDS:
        raise ValueError(f"experiment {experiment.name!r}: bad dataset or kind")
    EXPERIMENTS[experiment.name] = experiment
    return experiment


def selected(params: dict) -> list[str]:
    """The experiments params select (``experiments``), in registry order."""
    return [name for name in EXPERIMENTS if name in params["experiments"]]


def get(name: str) -> Experiment:
    try:
        return EXPERIMENTS[name]
    except KeyError:
        raise PipelineError(f"unknown experiment {name!r}; known: {', '.join(EXPERIMENTS)}") from None


# a subset size: a count of images, or a fraction of the split
SUBSET = {"anyOf": [{"type": "integer", "minimum": 10}, {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
                    {"type": "null"}]}
COMMON = {
    "epochs": ({"type": "integer", "minimum": 1}, 10, "training epochs"),
    "batch_size": ({"type": "integer", "minimum": 1}, 64, "mini-batch size"),
    "learning_rate": ({"type": "number", "exclusiveMinimum": 0}, 1e-3, "initial learning rate"),
    "optimizer": ({"type": "string", "enum": ["adam", "sgd", "rmsprop"]}, "adam", "optimizer"),
    "weight_decay": ({"type": "number", "minimum": 0}, 0.0, "decoupled weight decay (0: none)"),
    "lr_schedule": ({"type": "string", "enum": ["constant", "cosine"]}, "constant", "learning-rate schedule"),
    "augment_flip": ({"type": "boolean"}, False, "random horizontal flips"),
    "augment_crop": ({"type": "integer", "minimum": 0, "maximum": 16}, 0, "pad by N pixels and randomly crop back (0: off)"),
    "train_subset": (
        SUBSET,
        None,
        "train on a stratified subset of this many training images, or this fraction of them (0 < f < 1, "
        "rounded to whole images; one params file fits data of any size) (null: all)",
    ),
    "val_subset": (
        SUBSET,
        None,
        "monitor each epoch on a stratified subset of this many validation images, or this fraction of them "
        "(null: all)",
    ),
    "seeds": (
        {"type": "array", "items": {"type": "integer", "minimum": 0}, "minItems": 1, "uniqueItems": True}, [0],
        "one training run per seed (weights, subsets, order, augmentation, dropout), each its own stage; "
        "the report gives mean and std over them",
    ),
    "bn_recalibration": (
        {"type": "boolean"}, True,
        "after training, set BatchNorm moving statistics to their average over the training images "
        "(weights untouched); no effect on models without trainable BatchNorm",
    ),
    "train_eval_images": (
        {"type": ["integer", "null"], "minimum": 10}, 1000,
        "evaluate also scores a stratified subset of this many of the images the model trained on, in "
        "inference mode, as a sanity check (null: all of them)",
    ),
    "cpu_isa": (
        {"type": "string", "enum": ["native", "sse41", "avx", "avx2", "avx2_vnni", "avx512_core", "avx512_core_vnni"]},
        "avx2",
        "highest instruction set oneDNN's CPU kernels may use (ONEDNN_MAX_CPU_ISA): a fixed set makes "
        "different x86-64 CPUs run the same kernels; 'native' uses the best the CPU has",
    ),
    "op_determinism": (
        {"type": "boolean"}, True, "tf.config.experimental.enable_op_determinism: deterministic kernels only",
    ),
    "threads": (
        {"type": "integer", "minimum": 1}, 4,
        "CPU threads of the train and evaluate jobs (Snakemake caps them at --cores). Graph building is "
        "single-threaded, so on few cores 1 lets two DenseNet jobs overlap",
    ),
    "run_eagerly": (
        {"type": "boolean"}, False,
        "skip TensorFlow graph building (about a minute for a DenseNet): faster for a handful of steps, "
        "as on the embedded sample; far slower for real training",
    ),
    "mixed_precision": ({"type": "boolean"}, False, "mixed_float16 on a GPU (ignored on CPU)"),
    "xla": ({"type": "boolean"}, False, "XLA-compile the training step on a GPU (ignored on CPU)"),
    "runtime_min": ({"type": "integer", "minimum": 1}, 60, "cluster wall-time request of training, minutes"),
    "mem_mb": ({"type": "integer", "minimum": 256}, 8000, "cluster memory request of training, MB"),
    "gpus": ({"type": "integer", "minimum": 0}, 1, "GPUs a cluster training job asks for"),
}


def experiment_schema(experiment: Experiment) -> dict:
    properties = {}
    for key, (schema, default, description) in COMMON.items():
        default = experiment.defaults.get(key, default)
        properties[key] = {**schema, "default": default, "description": description}
    for key, prop in experiment.extra.items():
        properties[key] = {**prop, "default": experiment.defaults.get(key, prop["default"])}
    return {
        "type": "object",
        "description": f"experiment {experiment.name}: {experiment.title}",
        "additionalProperties": False,
        "default": {},
        "properties": properties,
    }


def check_params(experiment: Experiment, section: dict, where: str) -> None:
    """Checks across keys of one section (the schema checks each key on its own)."""
    subset = section["train_subset"]
    if experiment.kind == "finetune" and isinstance(subset, int) and subset < 2 * section["kfold"]:
        raise PipelineError(f"{where}.train_subset: {section['train_subset']} is too few for {section['kfold']} folds")


def section_keys(experiment: Experiment) -> list[str]:
    return [*COMMON, *experiment.extra]


# cluster requests and the seed list: they choose where and how often a run happens, not what it computes
SCHEDULING_KEYS = ("runtime_min", "mem_mb", "gpus")
RUN_SET_KEYS = ("seeds",)
EVALUATION_KEYS = ("train_eval_images",)  # read by evaluate only


def result_keys(experiment: Experiment) -> list[str]:
    """The keys of a section a training run's result depends on (its DVC and Snakemake params)."""
    return [key for key in section_keys(experiment) if key not in SCHEDULING_KEYS + RUN_SET_KEYS + EVALUATION_KEYS]


def result_params(section: dict) -> dict:
    return {key: value for key, value in section.items()
            if key not in SCHEDULING_KEYS + RUN_SET_KEYS + EVALUATION_KEYS}


def upstream_seed(experiment: Experiment, seed: int, params: dict) -> int | None:
    """The seed of the upstream run this run starts from: the same seed where the upstream
    experiment has it, else the upstream's first seed."""
    if experiment.upstream is None:
        return None
    seeds = params[experiment.upstream]["seeds"]
    return seed if seed in seeds else seeds[0]


# --- the paper's experiments ---------------------------------------------------------------

_DENSENET_NOTE = (
    "printed under 'ImageNet Acc (Top 1/Top 5)', but these are the top-1/top-5 *error* rates of the "
    "ImageNet-1k DenseNets at 224x224 (as listed for Keras' pretrained DenseNets): copied from there, "
    "not a 32x32 200-class result, so not plotted beside ours"
)
# bench/bench_determinism.py on an AVX-512 Xeon: pinning oneDNN to AVX2 costs the seed CNN's large
# 5x5 convolutions 35-40 % of their speed (DenseNet-121: 1 %, the CIFAR CNN: 14 %), more than the
# 15 % a machine-independent default may cost, so the seed CNNs use the CPU's best kernels
_SEED_CNN_ISA = {"cpu_isa": "native"}
_STEM = {
    "stem": {
        "type": "string",
        "enum": ["imagenet", "small"],
        "default": "imagenet",
        "description": "'imagenet': 7x7/2 conv + 3x3/2 pool; 'small': 3x3/1 conv, no pooling (suited to 32x32)",
    }
}

register(Experiment(
    "seed_cnn", "Exp. 1: the paper's large-kernel CNN, (3,32,32) read channels-last", "seed_cnn", "imagenet200",
    paper=Paper(params_m=0.795, note="paper reports the summary (795,000 params) but no accuracy"),
    defaults={"epochs": 30, "learning_rate": 5e-4, "runtime_min": 30, **_SEED_CNN_ISA},
    model_source="seed_cnn.py",
))
register(Experiment(
    "seed_cnn_hwc", "Exp. 1 corrected: same layer plan on 32x32x3 channels-last", "seed_cnn_hwc", "imagenet200",
    defaults={"epochs": 30, "learning_rate": 5e-4, "runtime_min": 30, **_SEED_CNN_ISA},
    model_source="seed_cnn.py",
))
register(Experiment(
    "autokeras", "Exp. 2: AutoKeras image classifier on a 10,000-image subset", "autokeras", "imagenet200",
    kind="autokeras",
    paper=Paper(top1=0.2236, note="best of 5 trials (paper's text says 24%; its trial table shows 0.2236)"),
    defaults={"train_subset": 10000, "epochs": 10, "runtime_min": 240},
    extra={
        "max_trials": {"type": "integer", "minimum": 1, "default": 5, "description": "AutoKeras trials (paper: 5)"},
        "block_type": {
            "type": ["string", "null"],
            "enum": ["vanilla", "resnet", "xception", "efficient", None],
            "default": "vanilla",
            "description": "restrict the search to one ImageBlock type; null searches all (ResNet50/EfficientNetB7 "
            "at 224x224: impractical on CPU)",
        },
        "tuner": {
            "type": "string", "enum": ["greedy", "random", "bayesian", "hyperband"], "default": "greedy",
            "description": "keras-tuner search algorithm",
        },
    },
    model_source="autokeras_search.py",
))
register(Experiment(
    "alexnet32", "Exp. 3: AlexNet adapted to 32x32 (5 conv + 3 FC, ~0.8M params)", "alexnet32", "imagenet200",
    paper=Paper(top1=0.12, params_m=0.8, note="paper: best accuracy ~12%"),
    defaults={"epochs": 30, "runtime_min": 30},
    model_source="alexnet.py",
))
for _depth, (_top1_err, _top5_err, _params) in {
    121: (25.02, 7.71, 8.0), 169: (23.80, 6.85, 14.3), 201: (22.58, 6.34, 20.2), 161: (22.20, None, 28.9)
}.items():
    register(Experiment(
        f"densenet{_depth}", f"Exp. 4: DenseNet-{_depth} from scratch", f"densenet{_depth}", "imagenet200",
        paper=Paper(
            top1=round(_top1_err / 100, 4),
            top5=None if _top5_err is None else round(_top5_err / 100, 4),
            params_m=_params, note=_DENSENET_NOTE, same_task=False,
        ),
        defaults={"epochs": 30, "runtime_min": {121: 240, 169: 300, 201: 360, 161: 600}[_depth], "mem_mb": 16000},
        extra=_STEM,
        model_source="densenet.py",
    ))
register(Experiment(
    "densenet121_small_stem", "Exp. 4 extended: DenseNet-121 with a 32x32 stem", "densenet121", "imagenet200",
    defaults={"epochs": 30, "stem": "small", "runtime_min": 900, "mem_mb": 16000},
    extra=_STEM,
    model_source="densenet.py",
))
register(Experiment(
    "cifar_base_cnn", "Exp. 5 baseline: CNN from scratch on CIFAR-10", "cifar_cnn", "cifar10",
    paper=Paper(top1=0.82, note="paper: 82% test accuracy"),
    defaults={"epochs": 30, "augment_flip": True, "augment_crop": 4, "runtime_min": 30},
    model_source="cifar_cnn.py",
))
register(Experiment(
    "cifar_densenet201_transfer", "Exp. 5: DenseNet-201, frozen pretrained features + new softmax", "densenet201",
    "cifar10", kind="transfer",
    paper=Paper(top1=0.098, note="paper: sat at chance (train acc 0.1005, val acc 0.098)"),
    upstream="densenet201",
    defaults={"epochs": 10, "runtime_min": 60},
    extra={
        "weights": {
            "type": "string", "default": "pipeline",
            "description": "'pipeline': the DenseNet-201 trained in experiment densenet201; 'imagenet': Keras' "
            "download and cache; or a path to a local DenseNet-201 no-top weights file",
        },
    },
    model_source="transfer.py",
))
register(Experiment(
    "cifar_densenet201_finetune", "Exp. 6: fine-tune the transfer model's top blocks, k-fold CV", "densenet201",
    "cifar10", kind="finetune",
    paper=Paper(top1=0.805, note="paper: 80.5% test accuracy"),
    upstream="cifar_densenet201_transfer",
    defaults={"epochs": 5, "runtime_min": 120},
    extra={
        "lr_factor": {
            "type": "number", "exclusiveMinimum": 0, "maximum": 1, "default": 0.1,
            "description": "fine-tuning learning rate = learning_rate (the from-scratch rate) x lr_factor",
        },
        "unfreeze_from": {
            "type": "string", "default": "conv5_block1_",
            "description": "layers from the first whose name starts with this prefix on are trainable "
            "(BatchNormalization stays frozen)",
        },
        "kfold": {"type": "integer", "minimum": 2, "default": 5, "description": "k of the k-fold cross-validation"},
    },
    model_source="transfer.py",
))
