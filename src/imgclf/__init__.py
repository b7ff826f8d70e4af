"""Reproducible image-classification experiments driven by Snakemake and DVC."""

__version__ = "0.1.0"
