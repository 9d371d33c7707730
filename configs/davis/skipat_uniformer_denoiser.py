# SkipAt UniFormer video denoiser on DAVIS (sigma 30): uniformer_denoiser.py with every decoder attention block
# reusing the attention probabilities of its mirrored encoder block (Phi = identity on the attention matrix, as
# the SkipAt paper's video-denoising experiment): the decoder computes only values and the output projection.
# 33.65 -> 28.02 GMACs per 7x128x128 clip (-16.7 %; the paper: -17 %, 35.24 -> 35.16 dB).
# Recipe: 4 GPUs x 4 images (batch 16), 300k iterations, 128x128 crops.
_base_ = ['./uniformer_denoiser.py']
model = dict(generator=dict(skip_attention=True))
