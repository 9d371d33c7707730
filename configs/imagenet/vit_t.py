# ViT-T on ImageNet-1k: the baseline of skipat_t.py (same class and recipe, no skipped block).
_base_ = './skipat_t.py'

model = dict(backbone=dict(skip_indices=()))
