# SkipAt-B on ImageNet-1k: skipat_s.py with the base backbone (768 channels). SkipAt publishes no B checkpoint.
# Recipe: 8 GPUs x 128 images (batch 1024), 300 epochs, 224x224 crops.
_base_ = './skipat_s.py'

model = dict(backbone=dict(arch='b'), head=dict(in_channels=768))
