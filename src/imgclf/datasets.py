"""The data set registry: the layouts a source can be in, the data sets the experiments train
on, and the sources built into every params file. Records only; nothing here reads data.

A source (params: ``data.sources.<name>``) is an archive or a folder in one ``Layout``; each
``DataSet`` names the source it is prepared from (``data.<dataset>.source``). A layout's module
under ``imgclf.sources`` has ``prepare(path, out_dir, settings, workers) -> meta``, where
``settings`` are the data set's prepare params (``settings``, below), and writes one prepared
directory atomically.

Adding a layout: its module under ``src/imgclf/sources/`` and a ``Layout`` record here. Adding a
data set: a ``DataSet`` record here (its params appear in the schema by themselves)."""

import importlib
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Sample:
    """An embedded sample in a layout: ``imgclf make-sample NAME`` writes ``data/sample/<filename>``."""

    name: str
    filename: str
    md5: str
    size: int


@dataclass(frozen=True)
class Layout:
    name: str
    module: str  # under imgclf.sources
    text: str  # what the layout is, for the schema
    suffix: str | None = None  # the downloaded archive's suffix; None: a folder only, read in place
    sample: Sample | None = None
    folder: bool = False  # a source with a path and no md5 is a folder read in place (its files hashed by the engines)
    options: dict = field(default_factory=dict)  # keys of a source entry its prepare reads, with their defaults


@dataclass(frozen=True)
class DataSet:
    name: str
    layouts: tuple[str, ...]  # the layouts it can be prepared from
    default_source: str
    reads: tuple[str, ...]  # the common data params its prepare reads (besides its own section)
    official: str = ""  # the built-in source of the real data set, the one the paper's figures are on
    params: dict = field(default_factory=dict)  # schema properties of its own section, besides `source`


LAYOUTS: dict[str, Layout] = {}
DATASETS: dict[str, DataSet] = {}


def _register(registry: dict, record):
    if record.name in registry:
        raise ValueError(f"{record.name!r} registered twice")
    registry[record.name] = record
    return record


_register(LAYOUTS, Layout(
    "tiny_imagenet_zip", "tiny_imagenet",
    "a zip laid out as Tiny ImageNet (tiny-imagenet-200/wnids.txt, words.txt, train/<wnid>/images/*.JPEG, "
    "val/images + val/val_annotations.txt)",
    suffix=".zip", sample=Sample("tiny_imagenet", "tiny-imagenet-200.zip", "0db935cffc187c26460add642d0b2688", 27900265),
))
_register(LAYOUTS, Layout(
    "cifar10_binary", "cifar10",
    "CIFAR-10's binary tarball (cifar-10-batches-bin/data_batch_1..5.bin, test_batch.bin)",
    suffix=".tar.gz", sample=Sample("cifar10", "cifar-10-binary.tar.gz", "0fff36e41ba27dd38f07143b7633d9c4", 5826157),
))
_register(LAYOUTS, Layout(
    "folder", "folder", "a class-per-folder image tree: <class>/*.jpg, or train/<class>/ and val/<class>/",
))
_register(LAYOUTS, Layout(
    "mnist_idx", "mnist_idx",
    "the MNIST format (MNIST, Fashion-MNIST, KMNIST, EMNIST): train-images-idx3-ubyte, train-labels-idx1-ubyte, "
    "t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte, gzipped or not, in a folder (a path without md5) or an archive",
    suffix=".archive", folder=True, options={"classes": [], "prefix": "", "idx_md5": {}},
))

# what every prepare stage's result depends on; `jpeg_draft` only where JPEGs are decoded
COMMON_READS = ("image_size", "resize_filter", "val_fraction", "split_seed")
LIMITS = ("max_image_bytes",)  # read by prepare too, but a limit: it refuses, never changes a result



def class_params(n_classes: int) -> dict:
    """A data set's class subset: how many of its source's classes it keeps, and how they are chosen."""
    return {
        "n_classes": ("integer", "number of classes kept", n_classes, {"minimum": 2}),
        "class_selection": ("string", "'seeded': a seeded draw from the source's classes; 'list': exactly `wnids`",
                            "seeded", {"enum": ["seeded", "list"]}),
        "class_seed": ("integer", "seed of the class draw", 0, {"minimum": 0}),
        "wnids": ("array", "explicit class list (the source's class names), used when class_selection is 'list'", [],
                  {"items": {"type": "string"}, "uniqueItems": True}),
    }


_register(DATASETS, DataSet(
    "imagenet200", ("tiny_imagenet_zip", "folder", "mnist_idx"), "sample_tiny_imagenet", (*COMMON_READS, "jpeg_draft"),
    "tiny_imagenet", params={
        **class_params(200),
        "test_fraction": ("number", "for an image folder without val/: stratified fraction held out as test", 0.1,
                          {"exclusiveMinimum": 0, "exclusiveMaximum": 0.5}),
    },
))
_register(DATASETS, DataSet("cifar10", ("cifar10_binary", "mnist_idx"), "sample_cifar10", COMMON_READS, "cifar10",
                            params=class_params(10)))


def _sample_source(layout: Layout) -> dict:
    sample = layout.sample
    return {"url": f"file:{sample_archive(sample)}", "md5": sample.md5, "size": sample.size, "layout": layout.name}


def sample_archive(sample: Sample) -> str:
    return f"data/sample/{sample.filename}"


SAMPLES = {layout.sample.name: layout.sample for layout in LAYOUTS.values() if layout.sample}

# the named sources every params file has (an entry of the same name in data.sources replaces one):
# the embedded samples and the real data sets
BUILTIN_SOURCES = {
    "sample_tiny_imagenet": _sample_source(LAYOUTS["tiny_imagenet_zip"]),
    "sample_cifar10": _sample_source(LAYOUTS["cifar10_binary"]),
    "tiny_imagenet": {"url": "http://cs231n.stanford.edu/tiny-imagenet-200.zip", "md5": "90528d7ca1a48142e341f4ef8d21d0de",
                      "size": 248100043, "layout": "tiny_imagenet_zip"},
    "cifar10": {"url": "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz", "md5": "c32a1d4ab5d03f1284b67883e8d87530",
                "size": 170052171, "layout": "cifar10_binary"},
    # Debian's dataset-fashion-mnist; upstream's four files (github.com/zalandoresearch/fashion-mnist)
    # in a folder are the same IDX bytes: the MD5s are of the decompressed files, so both pass
    "fashion_mnist": {
        "path": "/usr/share/datasets/fashion-mnist", "layout": "mnist_idx",
        "classes": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"],
        "prefix": "",
        "idx_md5": {"train_images": "f4a8712d7a061bf5bd6d2ca38dc4d50a", "train_labels": "9018921c3c673c538a1fc5bad174d6f9",
                    "test_images": "8181f5470baa50b63fa0f6fddb340f0a", "test_labels": "15d484375f8d13e6eb1aabb0c3f46965"}},
}


def source_of(dataset: str, data: dict) -> tuple[str, dict]:
    """The name and entry of the source ``dataset`` is prepared from (``data``: params' data section)."""
    name = data[dataset]["source"]
    return name, data["sources"][name]


def sample_of(entry: dict) -> Sample | None:
    """The embedded sample a source entry points at (its url or path is the sample's file, in the
    sample's layout), or None: a sample is generated only for the data sets whose source it is."""
    where = entry.get("path") or entry.get("url", "").removeprefix("file:")
    sample = LAYOUTS[entry["layout"]].sample
    return sample if sample is not None and where == sample_archive(sample) else None


def read_in_place(entry: dict) -> bool:
    """Whether a source is a folder read where it is (no download stage): a folder layout's, or a
    path without md5 in a layout that can be a folder."""
    layout = LAYOUTS[entry["layout"]]
    return layout.suffix is None or (layout.folder and "md5" not in entry)


def settings(dataset: str, data: dict) -> dict:
    """What ``dataset``'s prepare reads: the common data params it names, its own section (the
    source's name, which the prepared data record; its files are the stage's input), and the keys
    of the source entry its layout reads (defaults filled by the params check)."""
    _, entry = source_of(dataset, data)
    return {**{key: data[key] for key in (*DATASETS[dataset].reads, *LIMITS)}, **data[dataset], "dataset": dataset,
            **{key: entry[key] for key in LAYOUTS[entry["layout"]].options}}


def layout_module(layout: str):
    """The module that prepares sources in ``layout``."""
    return importlib.import_module(f"imgclf.sources.{LAYOUTS[layout].module}")


def prepare_keys(dataset: str, data: dict) -> list[str]:
    """The dotted params keys of ``settings``: what prepare's result depends on besides its source."""
    name, entry = source_of(dataset, data)
    return [*(f"data.{key}" for key in DATASETS[dataset].reads),
            *(f"data.{dataset}.{key}" for key in ("source", *DATASETS[dataset].params)),
            *(f"data.sources.{name}.{key}" for key in LAYOUTS[entry["layout"]].options)]
