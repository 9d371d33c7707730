# SkipAt-B on ImageNet-1k: skipat_s.py with the base backbone (768 channels). SkipAt publishes no B checkpoint.
_base_ = './skipat_s.py'

model = dict(backbone=dict(arch='b'), head=dict(in_channels=768))
