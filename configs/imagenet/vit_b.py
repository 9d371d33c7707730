# ViT-B on ImageNet-1k: the baseline of skipat_b.py (same class and recipe, no skipped block).
# Recipe: 8 GPUs x 128 images (batch 1024), 300 epochs, 224x224 crops.
_base_ = './skipat_b.py'

model = dict(backbone=dict(skip_indices=()))
