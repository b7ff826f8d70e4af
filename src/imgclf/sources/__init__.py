"""One module per source layout (the records are in ``imgclf.datasets``). Each has
``prepare(path, out_dir, settings, workers) -> meta`` and writes one prepared directory atomically."""
