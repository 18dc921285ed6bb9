"""Dataset helpers: the download-free demo data generator (``demo_shapes``)."""
