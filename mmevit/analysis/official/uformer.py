"""A stand-in for the official Uformer forward (ZhendongWang6/Uformer ``model.py`` @ 65fc970), for tests and
timing: the same math in the same order of kernels, reshapes and copies as the official code runs them
(token layout (B, H*W, C) between modules, ``torch.roll`` + permuted-copy window partitioning, separate
``to_q``/``to_kv`` linears, the bias gathered from the table and the SW-MSA mask rebuilt in every block, eager
softmax attention, LeFF through einops views), written from the description in
shared/design/references.md §4 and checked against the official parity fixture in ``tests/test_uformer.py``.

It runs on an official state dict (official keys) and the official constructor kwargs; square inputs whose
side is a multiple of the official ``img_size``'s window layout, as the official model needs.
"""
import math
from typing import Mapping

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn


class OfficialUformerOps(nn.Module):
    """``OfficialUformerOps(arch, state_dict)(x)`` returns what the official ``Uformer(**arch)`` returns."""

    def __init__(self, arch: Mapping, state_dict: Mapping[str, torch.Tensor]) -> None:
        super().__init__()
        self.arch = dict(arch)
        self.sd = {k: v.clone() for k, v in state_dict.items()}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, sd = self.arch, self.sd
        depths, heads, win = a['depths'], a['num_heads'], a.get('win_size', 8)
        img = a['img_size']
        y = F.leaky_relu(F.conv2d(x, sd['input_proj.proj.0.weight'], sd['input_proj.proj.0.bias'], padding=1))
        y = y.flatten(2).transpose(1, 2).contiguous()
        skips = []
        for i in range(4):
            y = self._layer(f'encoderlayer_{i}', y, depths[i], heads[i], img // 2 ** i, win, False)
            skips.append(y)
            y = self._resample(y, f'dowsample_{i}.conv.0', F.conv2d, stride=2, padding=1)
        y = self._layer('conv', y, depths[4], heads[4], img // 16, win, False)
        for i in range(4):
            up = self._resample(y, f'upsample_{i}.deconv.0', F.conv_transpose2d, stride=2)
            y = torch.cat([up, skips[3 - i]], -1)
            y = self._layer(f'decoderlayer_{i}', y, depths[5 + i], heads[5 + i], img // 2 ** (3 - i), win,
                            a.get('modulator', False))
        B, L, D = y.shape
        H = int(math.sqrt(L))
        y = F.conv2d(y.transpose(1, 2).view(B, D, H, H), sd['output_proj.proj.0.weight'],
                     sd['output_proj.proj.0.bias'], padding=1)
        return x + y if a.get('dd_in', 3) == 3 else y

    def _resample(self, x, key, op, **kw):
        B, L, C = x.shape
        H = int(math.sqrt(L))
        x = x.transpose(1, 2).contiguous().view(B, C, H, H)
        return op(x, self.sd[key + '.weight'], self.sd[key + '.bias'], **kw).flatten(2).transpose(1, 2).contiguous()

    def _layer(self, name, x, depth, heads, res, win, modulator):
        w = min(res, win)
        for j in range(depth):
            shift = 0 if (j % 2 == 0 or res <= win or not self.arch.get('shift_flag', True)) else win // 2
            x = self._block(f'{name}.blocks.{j}.', x, heads, w, shift, modulator)
        return x

    @staticmethod
    def _partition(x, w):
        B, H, W, C = x.shape
        return x.view(B, H // w, w, W // w, w, C).permute(0, 1, 3, 2, 4, 5).contiguous().view(-1, w, w, C)

    def _block(self, p, x, heads, w, s, modulator):
        sd = self.sd
        B, L, C = x.shape
        H = W = int(math.sqrt(L))
        N = w * w
        mask = None
        if s:
            img_mask = torch.zeros((1, H, W, 1)).type_as(x)
            cnt = 0
            for hs in (slice(0, -w), slice(-w, -s), slice(-s, None)):
                for ws in (slice(0, -w), slice(-w, -s), slice(-s, None)):
                    img_mask[:, hs, ws, :] = cnt
                    cnt += 1
            mw = self._partition(img_mask, w).view(-1, N)
            mask = mw.unsqueeze(1) - mw.unsqueeze(2)
            mask = mask.masked_fill(mask != 0, float(-100.0)).masked_fill(mask == 0, float(0.0))
        shortcut = x
        x = F.layer_norm(x, (C,), sd[p + 'norm1.weight'], sd[p + 'norm1.bias']).view(B, H, W, C)
        if s:
            x = torch.roll(x, shifts=(-s, -s), dims=(1, 2))
        xw = self._partition(x, w).view(-1, N, C)
        if modulator:
            xw = xw + sd[p + 'modulator.weight']
        B_ = xw.shape[0]
        q = F.linear(xw, sd[p + 'attn.qkv.to_q.weight'], sd[p + 'attn.qkv.to_q.bias'])
        q = q.reshape(B_, N, 1, heads, C // heads).permute(2, 0, 3, 1, 4)[0]
        kv = F.linear(xw, sd[p + 'attn.qkv.to_kv.weight'], sd[p + 'attn.qkv.to_kv.bias'])
        kv = kv.reshape(B_, N, 2, heads, C // heads).permute(2, 0, 3, 1, 4)
        k, v = kv[0], kv[1]
        q = q * (C // heads) ** -0.5
        attn = q @ k.transpose(-2, -1)
        index = sd[p + 'attn.relative_position_index']
        bias = sd[p + 'attn.relative_position_bias_table'][index.view(-1)].view(N, N, -1)
        attn = attn + bias.permute(2, 0, 1).contiguous().unsqueeze(0)
        if mask is not None:
            nW = mask.shape[0]
            attn = attn.view(B_ // nW, nW, heads, N, N) + mask.unsqueeze(1).unsqueeze(0)
            attn = attn.view(-1, heads, N, N)
        attn = attn.softmax(dim=-1)
        out = (attn @ v).transpose(1, 2).reshape(B_, N, C)
        out = F.linear(out, sd[p + 'attn.proj.weight'], sd[p + 'attn.proj.bias']).view(-1, w, w, C)
        out = out.view(B, H // w, W // w, w, w, -1).permute(0, 1, 3, 2, 4, 5).contiguous().view(B, H, W, -1)
        if s:
            out = torch.roll(out, shifts=(s, s), dims=(1, 2))
        x = shortcut + out.view(B, H * W, C)
        h = F.layer_norm(x, (C,), sd[p + 'norm2.weight'], sd[p + 'norm2.bias'])
        h = F.gelu(F.linear(h, sd[p + 'mlp.linear1.0.weight'], sd[p + 'mlp.linear1.0.bias']))
        h = rearrange(h, ' b (h w) (c) -> b c h w ', h=H, w=W)
        h = F.gelu(F.conv2d(h, sd[p + 'mlp.dwconv.0.weight'], sd[p + 'mlp.dwconv.0.bias'], padding=1,
                            groups=h.shape[1]))
        h = rearrange(h, ' b c h w -> b (h w) c', h=H, w=W)
        return x + F.linear(h, sd[p + 'mlp.linear2.0.weight'], sd[p + 'mlp.linear2.0.bias'])


def to_official_state_dict(model: nn.Module) -> dict:
    """An mmevit ``Uformer`` (baseline) state dict in the official layout: ``attn.qkv`` split into
    ``to_q``/``to_kv``, LeFF keys ``linear1.0``/``dwconv.0``/``linear2.0``, ``relative_position_index`` added."""
    out = {}
    for k, v in model.state_dict().items():
        if '.attn.qkv.' in k:
            C = v.shape[0] // 3
            head, _, tail = k.rpartition('.qkv.')
            out[f'{head}.qkv.to_q.{tail}'] = v[:C].clone()
            out[f'{head}.qkv.to_kv.{tail}'] = v[C:].clone()
            continue
        if k.endswith('attn.relative_position_bias_table'):
            w = (math.isqrt(v.shape[0]) + 1) // 2
            coords = torch.stack(torch.meshgrid(torch.arange(w), torch.arange(w), indexing='ij')).flatten(1)
            rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (w - 1)
            out[k.replace('relative_position_bias_table', 'relative_position_index')] = \
                rel[..., 0] * (2 * w - 1) + rel[..., 1]
        for ours, official in (('.mlp.fc1.', '.mlp.linear1.0.'), ('.mlp.dwconv.', '.mlp.dwconv.0.'),
                               ('.mlp.fc2.', '.mlp.linear2.0.')):
            k = k.replace(ours, official)
        out[k] = v.clone()
    return out
