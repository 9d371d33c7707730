# SkipAt-T on ImageNet-1k: skipat_s.py with the tiny backbone (192 channels).
# Recipe: 8 GPUs x 128 images (batch 1024), 300 epochs, 224x224 crops.
_base_ = './skipat_s.py'

model = dict(backbone=dict(arch='t'), head=dict(in_channels=192))
