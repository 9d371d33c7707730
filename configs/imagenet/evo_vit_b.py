# Evo-ViT-B (DeiT-B with slow-fast token evolution) on ImageNet-1k: evo_vit_s.py with the base width.
# Recipe: 8 GPUs x 128 images (batch 1024), 300 epochs, 224x224 crops.
# lr 1e-3 for that batch, not rescaled by default: see evo_vit_s.py for fewer GPUs.
_base_ = './evo_vit_s.py'

model = dict(backbone=dict(arch='b'), head=dict(in_channels=768))
