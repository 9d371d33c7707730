#!/usr/bin/env python
"""Layer-to-layer correlation of a ViT's attention (SkipAt's motivation), with a skip_indices suggestion.

    python tools/analysis/layer_correlation.py CONFIG CHECKPOINT --images DIR --out-dir DIR
    python tools/analysis/layer_correlation.py CONFIG CHECKPOINT --dataset --num-images 256 --out-dir DIR \\
        [--threshold 0.9] [--size 224] [--batch-size 16] [--biased] [--device cuda]

For the backbone of CONFIG's model (an mmpretrain classifier, an mmseg segmentor, an mmdet detector...)
with CHECKPOINT loaded (any supported format, converted and checked strictly), computes between the
attention layers, over the images (resized, shorter side to --size, and centre-cropped; normalised by the
config's data preprocessor):
  - linear CKA of the MSA outputs (SkipAt Fig. 3b),
  - linear CKA of the CLS attention maps (Fig. 3a) and their mean cosine similarity (Fig. 2),
as minibatch CKA (unbiased HSIC by default; see ``mmevit/analysis/correlation.py``). Writes
``cka_msa.png``, ``cka_cls_attn.png``, ``cos_cls_attn.png`` and ``layer_correlation.json`` (matrices,
block indices, settings, the suggested ``skip_indices`` and the rule) into --out-dir; refuses to overwrite.
"""
import argparse
import json
import os
import os.path as osp
import sys

import torch

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))
from mmevit.analysis.correlation import (SKIP_RULE, analyse_attention, batched, chunk_sizes,  # noqa: E402
                                         list_images, normalizer, plot_heatmap, resize_center_crop,
                                         suggest_skip_indices)
from mmevit.engine.convert import CheckpointMismatchError, convert_file_for_model, find_converter  # noqa: E402

OUTPUTS = dict(cka_msa=('cka_msa.png', 'linear CKA of the MSA outputs'),
               cka_cls_attn=('cka_cls_attn.png', 'linear CKA of the CLS attention maps'),
               cos_cls_attn=('cos_cls_attn.png', 'cosine similarity of the CLS attention maps'))
JSON_NAME = 'layer_correlation.json'


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('config', help='model config (mmpretrain / mmseg / mmdet / mmevit)')
    p.add_argument('checkpoint', help='checkpoint (official, timm, mmpretrain, mmevit...; path or URL)')
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument('--images', metavar='DIR', help='a folder of images')
    src.add_argument('--dataset', action='store_true', help="the images of the config's test_dataloader")
    p.add_argument('--num-images', type=int, default=64, help='images to use (default 64; at least 4)')
    p.add_argument('--out-dir', required=True, help='output folder (created; existing outputs are not '
                   'overwritten)')
    p.add_argument('--threshold', type=float, default=0.9, help='CKA threshold of the skip suggestion')
    p.add_argument('--size', type=int, help='input side (default: the backbone\'s img_size, else 224)')
    p.add_argument('--batch-size', type=int, default=16, help='minibatch size of the CKA (>= 4)')
    p.add_argument('--biased', action='store_true', help='biased HSIC estimator (default: unbiased)')
    p.add_argument('--device', default='cpu')
    p.add_argument('--trust-checkpoint', action='store_true',
                   help='fully unpickle CHECKPOINT (arbitrary code execution: only for files you trust)')
    args = p.parse_args(argv)
    if args.num_images < 4:
        p.error('--num-images must be >= 4')
    if args.batch_size < 4:
        p.error('--batch-size must be >= 4 (the unbiased HSIC needs 4 examples per minibatch)')
    if not 0 < args.threshold <= 1:
        p.error('--threshold must be in (0, 1]')
    return args


def build_model(config: str):
    from mmengine.config import Config
    from mmengine.registry import MODELS, DefaultScope
    if not osp.isfile(config):
        raise FileNotFoundError(f'config file not found: {config}')
    cfg = Config.fromfile(config)
    with DefaultScope.overwrite_default_scope(cfg.get('default_scope')):
        return cfg, MODELS.build(cfg.model)


def dataset_images(cfg, num: int):
    """The first ``num`` images of the config's test set, as loaded by its pipeline (uint8 CHW, BGR)."""
    from mmengine.registry import DATASETS, DefaultScope
    loader = cfg.get('test_dataloader') or {}
    if 'dataset' not in loader:
        raise ValueError('the config has no test_dataloader.dataset (use --images DIR)')
    with DefaultScope.overwrite_default_scope(cfg.get('default_scope')):
        dataset = DATASETS.build(loader['dataset'])
    if len(dataset) < num:
        raise ValueError(f'the test set has {len(dataset)} images, fewer than --num-images {num}')
    for i in range(num):
        item = dataset[i]
        inputs = item['inputs'] if isinstance(item, dict) else None
        if not isinstance(inputs, torch.Tensor) or inputs.dim() != 3:
            raise ValueError(f'test set item {i} has no (C, H, W) "inputs" tensor after its pipeline')
        yield inputs


def folder_images(files):
    import mmcv
    for f in files:
        img = mmcv.imread(f)  # BGR, as LoadImageFromFile
        if img is None:
            raise ValueError(f'cannot read image {f}')
        yield torch.from_numpy(img).permute(2, 0, 1)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        outputs = [osp.join(args.out_dir, name) for name, _ in OUTPUTS.values()] + [osp.join(args.out_dir, JSON_NAME)]
        existing = [f for f in outputs if osp.exists(f)]
        if existing:
            raise FileExistsError(f'refusing to overwrite {", ".join(existing)}')
        files = list_images(args.images)[:args.num_images] if args.images else None
        if files is not None and len(files) < args.num_images:
            print(f'note: {args.images} has {len(files)} images, using all of them')
        num = len(files) if files is not None else args.num_images

        cfg, model = build_model(args.config)
        state, _ = convert_file_for_model(args.checkpoint, model) if not args.trust_checkpoint else \
            _trusted_convert(args.checkpoint, model)
        model.load_state_dict(state, strict=True)
        _, backbone = find_converter(model)
        size = args.size or (getattr(backbone, 'img_size', None) or (224,))[0]
        prefix = 1 if getattr(backbone, 'with_cls_token', True) else 0
        model.to(args.device).eval()

        norm = normalizer(getattr(model, 'data_preprocessor', None))
        images = folder_images(files) if files is not None else dataset_images(cfg, num)
        crops = (resize_center_crop(img, size) for img in images)
        sizes = chunk_sizes(num, args.batch_size, 4 if not args.biased else 2)
        batches = (norm(b.to(args.device)) for b in batched(crops, sizes))
        result = analyse_attention(backbone, batches, prefix, unbiased=not args.biased,
                                   progress=lambda b, n: print(f'batch {b}/{len(sizes)}: {n}/{num} images',
                                                               flush=True))
    except (CheckpointMismatchError, FileExistsError, FileNotFoundError, KeyError, TypeError, ValueError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 1

    blocks = [b if b is not None else i for i, b in enumerate(result['blocks'])]
    skip = suggest_skip_indices(result['cka_msa'], blocks, args.threshold)
    no_attn = [b for b in range(getattr(backbone, 'num_layers', len(blocks))) if b not in blocks]
    result.update(config=args.config, checkpoint=args.checkpoint, size=size, batch_sizes=sizes,
                  source=args.images or 'test_dataloader', threshold=args.threshold, skip_rule=SKIP_RULE,
                  suggested_skip_indices=skip, blocks_without_attention=no_attn)
    os.makedirs(args.out_dir, exist_ok=True)
    for key, (name, title) in OUTPUTS.items():
        if key in result:
            how = f', {result["estimator"]} HSIC' if key.startswith('cka') else ', mean over images'
            plot_heatmap(result[key], blocks, f'{title}\n({num} images{how})', osp.join(args.out_dir, name))
    with open(osp.join(args.out_dir, JSON_NAME), 'x') as f:
        json.dump(result, f, indent=1)
    print(f'blocks with attention: {blocks}' + (f' (no attention: {no_attn})' if no_attn else ''))
    adjacent = [result['cka_msa'][i][i + 1] for i in range(len(blocks) - 1)]
    print('CKA of adjacent MSA outputs: ' + ' '.join(f'{a:.3f}' for a in adjacent))
    if 'cls_attn_skipped' in result:
        print(f'CLS attention maps not compared: {result["cls_attn_skipped"]}')
    print(f'suggested skip_indices at CKA >= {args.threshold}: {skip}')
    print(f'wrote {args.out_dir}')
    return 0


def _trusted_convert(checkpoint: str, model):
    from mmevit import compat
    with compat.trust_checkpoints():
        return convert_file_for_model(checkpoint, model)


if __name__ == '__main__':
    sys.exit(main())
