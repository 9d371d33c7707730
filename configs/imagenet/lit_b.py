# LIT-B on ImageNet-1k: lit_s.py with widths 128-1024, 4-32 heads, 18 blocks in stage 3 and drop path 0.5 (the
# official lit-base.yaml).
# Recipe: 8 GPUs x 128 images (batch 1024), 300 epochs, 224x224 crops.
_base_ = './lit_s.py'

model = dict(backbone=dict(arch='b', drop_path_rate=0.5), head=dict(in_channels=1024))
