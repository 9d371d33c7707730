"""A stand-in for the official SkipAt forward (Qualcomm-AI-research/skip-attention ``model/vit_skipat.py`` @
a7a312d on timm 0.5.4), for parity tests and for timing our model against the official computation: the same
modules with the official key names, and the same kernels in the same order as timm 0.5.4's ``VisionTransformer``
/ ``Attention`` / ``Mlp`` and Uformer's ``LeFF`` + ``eca_layer_1d`` run them (eager softmax attention, einops
views around the depth-wise conv, ``AdaptiveAvgPool1d`` ECA, six Phi modules whatever ``skip_indices`` is),
written from shared/design/references.md section 1 and checked against the official fixtures in
``tests/test_official_standins.py``.

``OfficialSkipAt(**arch)`` takes the official constructor kwargs (as the fixtures store them) and loads an
official state dict strictly.
"""
import math

import torch
from einops import rearrange
from torch import nn


class Attention(nn.Module):
    def __init__(self, dim, num_heads, qkv_bias):
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(B, N, C))


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim, num_heads, mlp_ratio, qkv_bias, eps):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, num_heads, qkv_bias)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x, feat_val=None):
        val = self.attn(self.norm1(x)) if feat_val is None else feat_val
        x = x + val
        return x + self.mlp(self.norm2(x)), val


class ECA1d(nn.Module):
    def __init__(self):
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool1d(1)
        self.conv = nn.Conv1d(1, 1, 3, padding=1, bias=False)

    def forward(self, x):
        y = self.avg_pool(x.transpose(-1, -2))
        y = self.conv(y.transpose(-1, -2)).sigmoid()
        return x * y.expand_as(x)


class LeFF(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.linear1 = nn.Sequential(nn.Linear(dim, hidden), nn.GELU())
        self.dwconv = nn.Sequential(nn.Conv2d(hidden, hidden, 5, 1, 2, groups=hidden), nn.GELU())
        self.linear2 = nn.Sequential(nn.Linear(hidden, dim))
        self.eca = ECA1d()

    def forward(self, x):
        hh = int(math.sqrt(x.shape[1]))
        x = rearrange(self.linear1(x), 'b (h w) c -> b c h w', h=hh, w=hh)
        x = rearrange(self.dwconv(x), 'b c h w -> b (h w) c', h=hh, w=hh)
        return self.eca(self.linear2(x))


class PatchEmbed(nn.Module):
    def __init__(self, patch_size, in_chans, dim):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, dim, patch_size, patch_size)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


class OfficialSkipAt(nn.Module):
    """The official ``VisionTransformerSkipAt`` forward, returning logits (``num_classes=0``: pre-logits)."""

    def __init__(self, img_size=224, patch_size=16, in_chans=3, num_classes=1000, embed_dim=768, depth=12,
                 num_heads=12, mlp_ratio=4., qkv_bias=True, skip_indices=(3, 4, 5, 6, 7, 8), norm_layer=None,
                 **unused):
        super().__init__()
        eps = (norm_layer or {}).get('eps', 1e-6)
        self.patch_embed = PatchEmbed(patch_size, in_chans, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, (img_size // patch_size) ** 2 + 1, embed_dim))
        self.blocks = nn.ModuleList(Block(embed_dim, num_heads, mlp_ratio, qkv_bias, eps) for _ in range(depth))
        self.norm = nn.LayerNorm(embed_dim, eps=eps)
        self.head = nn.Linear(embed_dim, num_classes) if num_classes else nn.Identity()
        for i in range(1, 7):
            setattr(self, f'param_{i}', LeFF(embed_dim, 2 * embed_dim))
        self.parametric = [getattr(self, f'param_{i}') for i in range(1, 7)]
        self.skip_indices = tuple(skip_indices)

    def forward(self, x):
        x = self.patch_embed(x)
        x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), dim=1) + self.pos_embed
        val, k = None, 0
        for i, blk in enumerate(self.blocks):
            if i in self.skip_indices:
                z = self.parametric[k](val[:, 1:])
                k += 1
                x, val = blk(x, torch.cat((val[:, :1], z), dim=1))
            else:
                x, val = blk(x)
        return self.head(self.norm(x)[:, 0])
