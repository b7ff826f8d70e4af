"""Which images go where: the class subset, the stratified train/val/test carve and the training
subsets of a run. Pure functions of labels and seeds (images are only indexed, no I/O): the
numbers of every experiment depend on them, so they are property-tested and mutation-tested."""

import numpy as np
from sklearn.model_selection import train_test_split

from imgclf.errors import PipelineError


def select_classes(available: list[str], n_classes: int, method: str, seed: int, wnids: list[str],
                   where: str = "data.imagenet200") -> list[str]:
    """The sorted class subset: a seeded draw of ``n_classes`` or exactly ``wnids`` (``where``: the
    data set's params section, for the error)."""
    available = sorted(available)
    if method == "list":
        if missing := sorted(set(wnids) - set(available)):
            raise PipelineError(f"{where}.wnids: not in the source: {', '.join(missing[:5])}")
        return sorted(wnids)
    if n_classes > len(available):
        raise PipelineError(f"{where}.n_classes: {n_classes} requested but the source has only "
                            f"{len(available)} classes")
    if n_classes == len(available):
        return available
    chosen = np.random.default_rng(seed).choice(len(available), size=n_classes, replace=False)
    return sorted(available[i] for i in chosen)


def select_in_order(available: list[str], settings: dict) -> list[str]:
    """``select_classes`` by a data set's prepare ``settings``, kept in the source's order (label
    numbers stay in order; all classes selected: the source's labels unchanged)."""
    chosen = set(select_classes(available, settings["n_classes"], settings["class_selection"], settings["class_seed"],
                                settings["wnids"], f"data.{settings['dataset']}"))
    return [name for name in available if name in chosen]


def stratified_split(labels: np.ndarray, fraction: float | int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (kept, held out), each sorted, with ``fraction`` of every class held out (an int:
    that many images in all, spread over the classes in proportion)."""
    kept, held = train_test_split(np.arange(len(labels)), test_size=fraction, stratify=labels, random_state=seed)
    return np.sort(kept), np.sort(held)


def carve(images: np.ndarray, labels: np.ndarray, fraction: float, seed: int):
    kept, held = stratified_split(labels, fraction, seed)
    return (images[kept], labels[kept]), (images[held], labels[held])


def check_classes(labels: np.ndarray, classes: list[str], what: str) -> None:
    """Every selected class has at least one image in ``what`` (a split of the source), or one line
    that names the first class without any."""
    counts = np.bincount(labels, minlength=len(classes)) if len(labels) else np.zeros(len(classes), int)
    empty = np.flatnonzero(counts == 0)
    if len(empty):
        raise PipelineError(f"{what}: class {classes[empty[0]]} has no images"
                            + (f" (and {len(empty) - 1} more classes)" if len(empty) > 1 else ""))


def check_carve(labels: np.ndarray, fraction: float, what: str) -> None:
    counts = np.bincount(labels)
    if counts.min() * fraction < 1:
        raise PipelineError(f"data.val_fraction: {fraction} leaves class {int(counts.argmin())} of {what} "
                            f"({int(counts.min())} images) with no held-out image")


def subset_size(size: int | float | None, available: int) -> int | None:
    """A subset size as a count: ``size`` images, or the fraction ``size`` (0 < size < 1) of
    ``available``, rounded half to even (None: all)."""
    if isinstance(size, float) and 0 < size < 1:
        return int(round(size * available))
    return size


def subset(images: np.ndarray, labels: np.ndarray, size: int | float | None, seed: int, where: str):
    """A stratified subset of ``size`` images, or of the fraction ``size`` of them (all of them when
    ``size`` is None); ``where`` names the param."""
    given, size = size, subset_size(size, len(labels))
    if size is None or size == len(labels):
        return images, labels
    what = f"{size}" if given == size else f"{given} of {len(labels)} images, {size},"
    if size > len(labels):
        raise PipelineError(f"{where}: {size} requested but the split has {len(labels)} images")
    if size < len(np.unique(labels)):
        raise PipelineError(f"{where}: {what} is fewer than the {len(np.unique(labels))} classes")
    chosen = _subset_indices(labels, size, seed)
    return images[chosen], labels[chosen]


def _subset_indices(labels: np.ndarray, size: int, seed: int) -> np.ndarray:
    """Sorted indices of a stratified draw of ``size`` (at least one per class) from ``labels``."""
    classes, counts = np.unique(labels, return_counts=True)
    if size == len(labels):
        return np.arange(len(labels))
    if counts.min() == 1:  # a class with one image keeps it; the draw is over the other classes
        single = np.isin(labels, classes[counts == 1])
        rest = np.flatnonzero(~single)
        picked = rest[_subset_indices(labels[rest], size - int(single.sum()), seed)] if len(rest) else rest
        return np.sort(np.concatenate([np.flatnonzero(single), picked]))
    drop = len(labels) - size
    if drop < len(classes):  # too few left out for a stratified draw: one image from each of the largest classes
        rng = np.random.default_rng(seed)
        removed = [rng.choice(np.flatnonzero(labels == c)) for c in classes[np.argsort(-counts, kind="stable")[:drop]]]
        return np.setdiff1d(np.arange(len(labels)), removed)
    chosen = stratified_split(labels, size, seed)[1]  # a count: size / len(labels) can round up one image
    if len(np.unique(labels[chosen])) == len(classes):
        return chosen
    # scikit-learn rounds a small class's share down to none (e.g. 2 of 8 images, one class of 2):
    # one image of every class, the rest drawn in proportion to what each class has left
    rng = np.random.default_rng(seed)
    share = (counts - 1) * (size - len(classes)) / (len(labels) - len(classes))
    quota = 1 + np.floor(share).astype(int)
    quota[np.argsort(-(share - np.floor(share)), kind="stable")[: size - quota.sum()]] += 1
    picks = [rng.choice(np.flatnonzero(labels == c), q, replace=False) for c, q in zip(classes, quota)]
    return np.sort(np.concatenate(picks))
