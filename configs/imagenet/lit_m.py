# LIT-M on ImageNet-1k: lit_s.py with 18 blocks in stage 3 and drop path 0.3 (the official lit-medium.yaml).
# Recipe: 8 GPUs x 128 images (batch 1024), 300 epochs, 224x224 crops.
_base_ = './lit_s.py'

model = dict(backbone=dict(arch='m', drop_path_rate=0.3))
