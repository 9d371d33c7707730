# ViT-B on ImageNet-1k: the baseline of skipat_b.py (same class and recipe, no skipped block).
_base_ = './skipat_b.py'

model = dict(backbone=dict(skip_indices=()))
