"""Inference on images and the model zoo (``model-index.yml``).

Importing this package imports no downstream library; the inferencers are
imported when one is built.
"""
from .inference import (build_inferencer, check_weights_fit, list_images,
                        load_weights, resolve_config, run_image_demo)
from .model_zoo import find_model, load_model_zoo, markdown_table

__all__ = [
    'build_inferencer', 'check_weights_fit', 'list_images', 'load_weights',
    'resolve_config', 'run_image_demo', 'find_model', 'load_model_zoo',
    'markdown_table'
]
