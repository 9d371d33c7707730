# Uformer-T on SIDD: the Uformer-B recipe (uformer_b.py) with the tiny network (embed dims 16, two blocks per level).
# Recipe: 1 GPUs x 32 images (batch 32), 750k iterations, 128x128 crops.
_base_ = ['./uformer_b.py']
model = dict(generator=dict(arch='t'))
