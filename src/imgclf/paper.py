"""What the paper says of each experiment: its title, and the figures exactly as printed
(fractions, not percent; None where it is silent). Only the report reads this module, so editing a
note or a title reruns the report alone."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Paper:
    """``same_task``: the figure was measured on the task the experiment runs (the same classes
    at 32x32), so it may stand beside our result in a plot."""

    title: str
    top1: float | None = None
    top5: float | None = None
    params_m: float | None = None
    note: str = ""
    same_task: bool = True


_DENSENET_NOTE = ("printed under 'ImageNet Acc (Top 1/Top 5)', but these are the top-1/top-5 *error* rates of the "
                  "ImageNet-1k DenseNets at 224x224 (as listed for Keras' pretrained DenseNets): copied from there, "
                  "not a 32x32 200-class result, so not plotted beside ours")

PAPER = {
    "seed_cnn": Paper("Exp. 1: the paper's large-kernel CNN, (3,32,32) read channels-last", params_m=0.795,
                      note="paper reports the summary (795,000 params) but no accuracy"),
    "seed_cnn_hwc": Paper("Exp. 1 corrected: same layer plan on 32x32x3 channels-last"),
    "autokeras": Paper("Exp. 2: AutoKeras image classifier on a 10,000-image subset", top1=0.2236,
                       note="best of 5 trials (paper's text says 24%; its trial table shows 0.2236)"),
    "alexnet32": Paper("Exp. 3: AlexNet adapted to 32x32 (5 conv + 3 FC, ~0.8M params)", top1=0.12, params_m=0.8,
                       note="paper: best accuracy ~12%"),
    **{f"densenet{depth}": Paper(f"Exp. 4: DenseNet-{depth} from scratch", top1=round(top1_err / 100, 4),
                                 top5=None if top5_err is None else round(top5_err / 100, 4), params_m=params,
                                 note=_DENSENET_NOTE, same_task=False)
       for depth, (top1_err, top5_err, params) in {121: (25.02, 7.71, 8.0), 169: (23.80, 6.85, 14.3),
                                                   201: (22.58, 6.34, 20.2), 161: (22.20, None, 28.9)}.items()},
    "densenet121_small_stem": Paper("Exp. 4 extended: DenseNet-121 with a 32x32 stem"),
    "cifar_base_cnn": Paper("Exp. 5 baseline: CNN from scratch on CIFAR-10", top1=0.82, note="paper: 82% test accuracy"),
    "cifar_densenet201_transfer": Paper("Exp. 5: DenseNet-201, frozen pretrained features + new softmax", top1=0.098,
                                        note="paper: sat at chance (train acc 0.1005, val acc 0.098)"),
    "cifar_densenet201_finetune": Paper("Exp. 6: fine-tune the transfer model's top blocks, k-fold CV", top1=0.805,
                                        note="paper: 80.5% test accuracy"),
}


def of(name: str) -> Paper:
    """The paper's entry for an experiment; an experiment the paper does not have gets its name."""
    return PAPER.get(name) or Paper(name)


@dataclass(frozen=True)
class Published:
    """A figure published on a data set (not the paper's): its model, test top-1 as a fraction,
    and where it is published."""

    model: str
    top1: float
    where: str


_FASHION = "github.com/zalandoresearch/fashion-mnist, README: benchmark"
# figures on a whole data set (all its classes, its own test split), by the data's identity: the
# MD5 of its test images (an mnist_idx source's idx_md5.test_images), whatever the source's name
PUBLISHED = {
    "8181f5470baa50b63fa0f6fddb340f0a": [  # Fashion-MNIST
        Published("human performance", 0.835, _FASHION),
        Published("2 conv + pooling, TensorFlow's tutorial CNN", 0.916, _FASHION),
        Published("Google AutoML Vision (24 compute hours)", 0.939, _FASHION),
        Published("ResNet-18", 0.949, _FASHION),
        Published("DenseNet-BC (768K params)", 0.954, _FASHION),
        Published("WRN-28-10 + random erasing", 0.963, _FASHION),
    ],
}
