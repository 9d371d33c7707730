# ViT-B + UPerNet on ADE20K: the baseline of skipat_b_upernet.py (same class, recipe and timm ViT-B/16
# initialisation, no skipped block); comparable to mmseg's vit_vit-b16_mln_upernet_8xb2-160k_ade20k-512x512.
# Recipe: 8 GPUs x 2 images (batch 16), 160k iterations, 512x512 crops.
_base_ = './skipat_b_upernet.py'

model = dict(backbone=dict(skip_indices=()))
