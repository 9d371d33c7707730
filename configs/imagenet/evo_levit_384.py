# Evo-LeViT-384 on ImageNet-1k: evo_levit_256.py with the 384 architecture (drop path 0.1, as LeViT-384).
# Recipe: 8 GPUs x 256 images (batch 2048), 1000 epochs, 224x224 crops.
# lr 2e-3 for that batch, not rescaled by default: see evo_levit_256.py for fewer GPUs and the distillation set-up.
_base_ = './evo_levit_256.py'

model = dict(backbone=dict(arch='384', drop_path_rate=0.1), head=dict(in_channels=768))
