"""The registry of experiments: each name maps to a model, a data set, a trainer kind and its
params section (schema and defaults). The paper's figures, notes and titles are in
``imgclf.paper``, which only the report reads.

Adding an experiment is one ``register(Experiment(...))`` call here (and, for a new model, its
builder under ``imgclf.models``); the schema, both engines' stages and the report read this
registry. Training and evaluation take the record from the CLI and never import this module, so
editing it reruns only the experiments whose values change (their ``config/resolved`` files)."""

from dataclasses import dataclass, field

from imgclf.datasets import DATASETS
from imgclf.errors import PipelineError
from imgclf.models import module_of

KINDS = ("keras", "autokeras", "transfer", "finetune")
# the model module of the kinds that are not one registered builder (imgclf.models.<module>)
KIND_MODULE = {"autokeras": "autokeras_search", "transfer": "transfer", "finetune": "transfer"}


@dataclass(frozen=True)
class Experiment:
    name: str
    model: str  # a registered builder (@register_model), or the kind's model for the other kinds
    dataset: str
    kind: str = "keras"
    upstream: str | None = None  # experiment whose trained model this one starts from
    defaults: dict = field(default_factory=dict)  # overrides of the common defaults
    extra: dict = field(default_factory=dict)  # schema properties only this experiment has

    @property
    def module(self) -> str:
        """The model module training builds this experiment from (``imgclf.models.<module>``)."""
        return KIND_MODULE.get(self.kind) or module_of(self.model)

    def record(self) -> dict:
        """What a run's result depends on in this record (its resolved train file holds it)."""
        return {"model": self.model, "dataset": self.dataset, "kind": self.kind, "upstream": self.upstream,
                "module": self.module}


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


@dataclass(frozen=True)
class Param:
    """A key every experiment's section has. ``role``: what it decides; ``result``: the trained
    model; ``evaluation``: the evaluation only; ``scheduling``: where and how a job runs (cluster
    requests), never what it computes; ``runs``: how many runs there are. ``evaluated``:
    evaluate reads it too."""

    schema: dict
    default: object
    description: str
    role: str = "result"
    evaluated: bool = False


# a subset size: a count of images, or a fraction of the split
SUBSET = {"anyOf": [{"type": "integer", "minimum": 10}, {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
                    {"type": "null"}]}
COMMON: dict[str, Param] = {
    "epochs": Param({"type": "integer", "minimum": 1}, 10, "training epochs"),
    "batch_size": Param({"type": "integer", "minimum": 1}, 64, "mini-batch size"),
    "learning_rate": Param({"type": "number", "exclusiveMinimum": 0}, 1e-3, "initial learning rate"),
    "optimizer": Param({"type": "string", "enum": ["adam", "sgd", "rmsprop"]}, "adam", "optimizer"),
    "weight_decay": Param({"type": "number", "minimum": 0}, 0.0, "decoupled weight decay (0: none)"),
    "lr_schedule": Param({"type": "string", "enum": ["constant", "cosine"]}, "constant", "learning-rate schedule"),
    "augment_flip": Param({"type": "boolean"}, False, "random horizontal flips"),
    "augment_crop": Param({"type": "integer", "minimum": 0, "maximum": 16}, 0, "pad by N pixels and randomly crop back (0: off)"),
    "train_subset": Param(
        SUBSET, None, "train on a stratified subset of this many training images, or this fraction of them (0 < f < 1, "
        "rounded to whole images; one params file fits data of any size) (null: all)", evaluated=True),
    "val_subset": Param(
        SUBSET, None, "monitor each epoch on a stratified subset of this many validation images, or this fraction of "
        "them (null: all)"),
    "seeds": Param(
        {"type": "array", "items": {"type": "integer", "minimum": 0}, "minItems": 1, "uniqueItems": True}, [0],
        "one training run per seed (weights, subsets, order, augmentation, dropout), each its own stage; "
        "the report gives mean and std over them", role="runs"),
    "steps_per_epoch": Param(
        {"type": ["integer", "null"], "minimum": 1}, None, "cut each epoch to this many mini-batches of the (full) "
        "training split (null: the whole split); for a rehearsal at full data size (bench/bench_paper_scale.py)"),
    "bn_recalibration": Param(
        {"type": "boolean"}, True, "after training, set BatchNorm moving statistics to their average over (at most 10,000 "
        "of) the training images (weights untouched), and score each epoch's validation pass with statistics recalibrated on 512 "
        "of them; no effect on models without trainable BatchNorm"),
    "train_eval_images": Param(
        {"type": ["integer", "null"], "minimum": 10}, 1000,
        "evaluate also scores a stratified subset of this many of the images the model trained on, in "
        "inference mode, as a sanity check (null: all of them)", role="evaluation", evaluated=True),
    "backend": Param(
        {"type": "string", "enum": ["tensorflow", "jax"]}, "tensorflow",
        "Keras backend of the train and evaluate jobs (KERAS_BACKEND); 'jax' needs the jax extra "
        "(pip install -e '.[jax]'); AutoKeras and the fused CPU optimizers are TensorFlow's", evaluated=True),
    "cpu_isa": Param(
        {"type": "string", "enum": ["native", "sse41", "avx", "avx2", "avx2_vnni", "avx512_core", "avx512_core_vnni"]},
        "avx2", "highest instruction set oneDNN's CPU kernels may use (ONEDNN_MAX_CPU_ISA): a fixed set makes "
        "different x86-64 CPUs run the same kernels; 'native' uses the best the CPU has", evaluated=True),
    "op_determinism": Param(
        {"type": "boolean"}, True, "tf.config.experimental.enable_op_determinism: deterministic kernels only"),
    "threads": Param(
        {"type": "integer", "minimum": 1}, 4,
        "CPU threads of the train and evaluate jobs (Snakemake caps them at --cores). Graph building is "
        "single-threaded, so on few cores 1 lets two DenseNet jobs overlap. On JAX: 1, or every core the job "
        "may use (XLA has no thread-count setting)", evaluated=True),
    "run_eagerly": Param(
        {"type": "boolean"}, False, "skip TensorFlow graph building (about a minute for a DenseNet): faster for a "
        "handful of steps, as on the embedded sample; far slower for real training", evaluated=True),
    "mixed_precision": Param({"type": "boolean"}, False, "mixed_float16 on a GPU (ignored on CPU)"),
    "xla": Param({"type": "boolean"}, False, "XLA-compile the training step on a GPU (ignored on CPU)"),
    "runtime_min": Param({"type": "integer", "minimum": 1}, 60, "cluster wall-time request of training, minutes", role="scheduling"),
    "mem_mb": Param({"type": "integer", "minimum": 256}, 8000, "cluster memory request of training, MB", role="scheduling"),
    "gpus": Param({"type": "integer", "minimum": 0}, 1, "GPUs a cluster training job asks for", role="scheduling"),
}


def experiment_schema(experiment: Experiment) -> dict:
    common = {key: {**param.schema, "default": param.default, "description": param.description}
              for key, param in COMMON.items()}
    properties = {key: {**prop, "default": experiment.defaults.get(key, prop["default"])}
                  for key, prop in {**common, **experiment.extra}.items()}
    description = f"experiment {experiment.name}: {experiment.model} ({experiment.kind}) on {experiment.dataset}"
    return {"type": "object", "description": description, "additionalProperties": False, "default": {},
            "properties": properties}


def check_params(experiment: Experiment, section: dict, where: str) -> None:
    """Checks across keys of one section (the schema checks each key on its own)."""
    if experiment.kind == "autokeras" and section["backend"] != "tensorflow":
        raise PipelineError(f"{where}.backend: AutoKeras runs on the TensorFlow backend only")
    subset = section["train_subset"]
    if experiment.kind == "finetune" and isinstance(subset, int) and subset < 2 * section["kfold"]:
        raise PipelineError(f"{where}.train_subset: {section['train_subset']} is too few for {section['kfold']} folds")


def _decides_result(key: str) -> bool:
    """A section's own keys, and the common ones whose role is ``result``, decide a training run's result."""
    return key not in COMMON or COMMON[key].role == "result"


def result_keys(experiment: Experiment) -> list[str]:
    return [key for key in [*COMMON, *experiment.extra] if _decides_result(key)]


def result_params(section: dict) -> dict:
    return {key: value for key, value in section.items() if _decides_result(key)}


def evaluation_keys() -> list[str]:
    """The keys of a section the evaluate stage reads."""
    return [key for key, param in COMMON.items() if param.evaluated]


# --- the paper's experiments (their figures and titles: imgclf.paper) -------------------------

_STEM = {"stem": {
    "type": "string", "enum": ["imagenet", "small"], "default": "imagenet",
    "description": "'imagenet': 7x7/2 conv + 3x3/2 pool; 'small': 3x3/1 conv, no pooling (suited to 32x32)"}}

# bench/bench_determinism.py on an AVX-512 Xeon: pinning oneDNN to AVX2 costs the seed CNN's large
# 5x5 convolutions 35-40 % of their speed (DenseNet-121: 1 %, the CIFAR CNN: 14 %), more than the
# 15 % a machine-independent default may cost, so the seed CNNs use the CPU's best kernels
for _name in ("seed_cnn", "seed_cnn_hwc"):
    register(Experiment(_name, _name, "imagenet200",
                        defaults={"epochs": 30, "learning_rate": 5e-4, "runtime_min": 30, "cpu_isa": "native"}))
register(Experiment(
    "autokeras", "autokeras", "imagenet200", kind="autokeras",
    defaults={"train_subset": 10000, "epochs": 10, "runtime_min": 240},
    extra={
        "max_trials": {"type": "integer", "minimum": 1, "default": 5, "description": "AutoKeras trials (paper: 5)"},
        "block_type": {
            "type": ["string", "null"], "enum": ["vanilla", "resnet", "xception", "efficient", None],
            "default": "vanilla",
            "description": "restrict the search to one ImageBlock type; null searches all (ResNet50/EfficientNetB7 "
            "at 224x224: impractical on CPU)"},
        "tuner": {"type": "string", "enum": ["greedy", "random", "bayesian", "hyperband"], "default": "greedy",
                  "description": "keras-tuner search algorithm"},
    },
))
register(Experiment("alexnet32", "alexnet32", "imagenet200", defaults={"epochs": 30, "runtime_min": 30}))
for _depth, _runtime in {121: 240, 169: 300, 201: 360, 161: 600}.items():
    register(Experiment(f"densenet{_depth}", f"densenet{_depth}", "imagenet200", extra=_STEM,
                        defaults={"epochs": 30, "runtime_min": _runtime, "mem_mb": 16000}))
register(Experiment("densenet121_small_stem", "densenet121", "imagenet200", extra=_STEM,
                    defaults={"epochs": 30, "stem": "small", "runtime_min": 900, "mem_mb": 16000}))
register(Experiment("cifar_base_cnn", "cifar_cnn", "cifar10",
                    defaults={"epochs": 30, "augment_flip": True, "augment_crop": 4, "runtime_min": 30}))
register(Experiment(
    "cifar_densenet201_transfer", "densenet201", "cifar10", kind="transfer", upstream="densenet201",
    defaults={"epochs": 10, "runtime_min": 60},
    extra={"weights": {
        "type": "string", "default": "pipeline",
        "description": "'pipeline': the DenseNet-201 trained in experiment densenet201; 'imagenet': Keras' "
        "download and cache; or a path to a local DenseNet-201 no-top weights file"}},
))
register(Experiment(
    "cifar_densenet201_finetune", "densenet201", "cifar10", kind="finetune", upstream="cifar_densenet201_transfer",
    defaults={"epochs": 5, "runtime_min": 120},
    extra={
        "lr_factor": {"type": "number", "exclusiveMinimum": 0, "maximum": 1, "default": 0.1,
                      "description": "fine-tuning learning rate = learning_rate (the from-scratch rate) x lr_factor"},
        "unfreeze_from": {"type": "string", "default": "conv5_block1_",
                          "description": "layers from the first whose name starts with this prefix on are trainable "
                                         "(BatchNormalization stays frozen)"},
        "kfold": {"type": "integer", "minimum": 2, "default": 5, "description": "k of the k-fold cross-validation"},
    },
))
