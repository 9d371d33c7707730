"""Datasets. ``demo_ade`` generates the bundled demo dataset (ADE20K layout) used by ``tools/demo.py``.

The demo config loads it with mmseg's own ``BaseSegDataset`` (classes and palette given as ``metainfo``), so
nothing here needs mmseg.
"""
from .demo_ade import (CLASSES as DEMO_CLASSES, PALETTE as DEMO_PALETTE, ensure_demo_ade, generate_demo_ade,
                       read_manifest, render_sample)

__all__ = ['DEMO_CLASSES', 'DEMO_PALETTE', 'ensure_demo_ade', 'generate_demo_ade', 'read_manifest',
           'render_sample']
