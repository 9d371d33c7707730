# ViT-S on ImageNet-1k: the baseline of skipat_s.py (same class and recipe, no skipped block).
_base_ = './skipat_s.py'

model = dict(backbone=dict(skip_indices=()))
