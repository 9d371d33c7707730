# SkipAt-T on ImageNet-1k: skipat_s.py with the tiny backbone (192 channels).
_base_ = './skipat_s.py'

model = dict(backbone=dict(arch='t'), head=dict(in_channels=192))
