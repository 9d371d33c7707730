"""Framework-free building blocks (plain torch; no registry, no config dicts)."""
from .attention import MultiheadSelfAttention
from .block import TransformerBlock
from .drop import drop_path, drop_path_rates
from .mlp import Mlp
from .patch_embed import PatchEmbed
from .pos_embed import resample_abs_pos_embed
from .skipat import ECA, SkipAtPhi

__all__ = ['MultiheadSelfAttention', 'TransformerBlock', 'Mlp', 'PatchEmbed', 'resample_abs_pos_embed', 'ECA', 'SkipAtPhi',
           'drop_path', 'drop_path_rates']
