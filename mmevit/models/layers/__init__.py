"""Framework-free building blocks (plain torch; no registry, no config dicts)."""
from .attention import MultiheadSelfAttention
from .block import TransformerBlock
from .drop import drop_path, drop_path_rates
from .dtm import DeformableTokenMerging, DeformConv2x2
from .evo import (BNLinear, ConvBN, EvoAttention, LinearBN, attention_with_cls_row, blend_scores, cls_attention,
                  fuse_bn_modules, gather_tokens, representative_token, scatter_tokens, select_tokens,
                  subsample_grid)
from .grad_checkpoint import checkpoint_call
from .mlp import Mlp
from .patch_embed import PatchEmbed
from .pos_embed import resample_abs_pos_embed
from .rel_pos import GlobalSelfAttention
from .skipat import ECA, SkipAtPhi
from .weight_init import init_linear_and_norm

__all__ = ['MultiheadSelfAttention', 'TransformerBlock', 'Mlp', 'PatchEmbed', 'resample_abs_pos_embed', 'ECA', 'SkipAtPhi',
           'drop_path', 'drop_path_rates', 'BNLinear', 'ConvBN', 'EvoAttention', 'LinearBN',
           'attention_with_cls_row', 'blend_scores', 'cls_attention', 'fuse_bn_modules', 'gather_tokens',
           'representative_token', 'scatter_tokens', 'select_tokens', 'subsample_grid',
           'DeformableTokenMerging', 'DeformConv2x2', 'GlobalSelfAttention', 'checkpoint_call',
           'init_linear_and_norm']
