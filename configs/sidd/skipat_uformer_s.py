# SkipAt-Uformer-S on SIDD: uformer_s.py with decoder-side SkipAt. Every decoder block reuses the attention
# matrices of its mirrored encoder block (same level, same block index, hence the same windows and shift) and
# computes only values and the output projection (skipat='attention', whose FLOPs fit the SkipAt paper's
# 12 -> 11 / 44 -> 39 / 89 -> 79 G at 256x256). skipat='feature' (a SkipAt Phi from the encoder block's MSA
# output) is the other reading: --cfg-options model.generator.skipat=feature.
# Recipe: 1 GPUs x 32 images (batch 32), 750k iterations, 128x128 crops.
_base_ = ['./uformer_s.py']
model = dict(generator=dict(skipat='attention'))
