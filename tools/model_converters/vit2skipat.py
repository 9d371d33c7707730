"""Turn a pretrained ViT/DeiT checkpoint into a SkipAt-ViT checkpoint for chosen ``skip_indices``.

    python tools/model_converters/vit2skipat.py SRC DST --arch s --skip-indices 3 4 5 6 7 8
    python tools/model_converters/vit2skipat.py SRC DST --model 'SkipAtViT:arch=s,img_size=384' \\
        --skip-indices 3 4 5 6 7 8 [--phi-init identity|default] [--shift 20] [--seed 0] [--force]

SRC: timm/DeiT, the official SkipAt repo's ViT baselines (``vit-*.t7``, timm keys), mmpretrain/mmseg ViT
(bare or a whole classifier with ``backbone.*``), or an mmevit ViT (``skip_indices=()``). Weights shared
with the SkipAt model are copied unchanged; the skipped blocks' ``norm1``/``attn`` and the classifier head
are dropped (listed); each skipped block's Phi is initialised by ``--phi-init`` (``identity``: the skipped
block starts by reusing the last computed block's MSA output; ``default``: PyTorch init as the official
code; see ``mmevit/analysis/retrofit.py``). DST is ``{'state_dict', 'meta'}`` of the SkipAtViT backbone,
readable with ``torch.load(weights_only=True)`` and loadable strictly into ``SkipAtViT(skip_indices=...)``;
fine-tune from it with ``backbone=dict(..., init_cfg=dict(type='Pretrained', checkpoint=DST))``.
"""
import argparse
import importlib.util
import os
import os.path as osp
import sys

import torch

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))
import mmevit  # noqa: E402
from mmevit import compat  # noqa: E402
from mmevit.analysis.retrofit import PHI_INITS, retrofit_skipat  # noqa: E402
from mmevit.engine.convert import CheckpointMismatchError, build_from_spec  # noqa: E402
from mmevit.models.backbones.skipat_vit import SkipAtViT  # noqa: E402
from mmevit.models.checkpoint import read_checkpoint  # noqa: E402

_spec = importlib.util.spec_from_file_location('_mmevit_convert_tool', osp.join(osp.dirname(__file__), 'convert.py'))
_convert_tool = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_convert_tool)
check_paths = _convert_tool.check_paths


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('src', help='pretrained ViT/DeiT checkpoint (path or URL)')
    p.add_argument('dst', help='output SkipAt-ViT checkpoint (must not exist, unless --force)')
    p.add_argument('--skip-indices', type=int, nargs='+', required=True,
                   help='0-based blocks that skip attention (the paper: 3 4 5 6 7 8)')
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument('--arch', help=f'SkipAtViT arch name ({", ".join(sorted(set(SkipAtViT.arch_zoo)))})')
    target.add_argument('--model', metavar='SPEC', help="a SkipAtViT spec without skip_indices, e.g. "
                        "'SkipAtViT:arch=s,img_size=384' or 'SkipAtViT:arch=dict(embed_dims=...)'")
    p.add_argument('--phi-init', choices=PHI_INITS, default='identity', help='Phi initialisation rule')
    p.add_argument('--shift', type=float, default=20., help='GELU shift of the identity Phi (default 20)')
    p.add_argument('--seed', type=int, default=0, help='seed of the PyTorch-default part of Phi\'s init')
    p.add_argument('--force', action='store_true', help='overwrite DST if it exists (never SRC)')
    p.add_argument('--trust-checkpoint', action='store_true',
                   help='fully unpickle SRC (arbitrary code execution: only for files you trust)')
    return p.parse_args(argv)


def build_target(args) -> SkipAtViT:
    spec = args.model or f'SkipAtViT:arch={args.arch}'
    name, _, rest = spec.partition(':')
    if name != 'SkipAtViT':
        raise ValueError(f'--model must be a SkipAtViT spec, got {name!r}')
    if 'skip_indices' in rest:
        raise ValueError('give the skipped blocks with --skip-indices, not in --model')
    spec = f'{spec}{"," if rest else ""}skip_indices={tuple(args.skip_indices)!r}'
    return build_from_spec(spec, device='cpu')


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        check_paths(args.src, args.dst, args.force)
        model = build_target(args)
        if args.trust_checkpoint:
            with compat.trust_checkpoints():
                checkpoint = read_checkpoint(args.src)
        else:
            checkpoint = read_checkpoint(args.src)
        state, attention, other = retrofit_skipat(checkpoint, model, args.phi_init, args.shift, args.seed)
    except (CheckpointMismatchError, FileExistsError, FileNotFoundError, IsADirectoryError, KeyError,
            TypeError, ValueError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 1
    state = {k: v.detach().clone().contiguous() for k, v in state.items()}
    meta = dict(converted_from=osp.basename(args.src), mmevit_version=mmevit.__version__,
                target=args.model or f'SkipAtViT:arch={args.arch}', skip_indices=list(model.skip_indices),
                phi_init=args.phi_init, shift=args.shift if args.phi_init == 'identity' else None, seed=args.seed,
                dropped_attention=attention, dropped_keys=other)
    tmp = args.dst + '.tmp'
    torch.save({'state_dict': state, 'meta': meta}, tmp)
    os.replace(tmp, args.dst)  # a failed save never leaves a half-written DST
    print(f'{args.src} -> {args.dst}: SkipAtViT with skip_indices {list(model.skip_indices)}, {len(state)} keys, '
          f'Phi init {args.phi_init!r}')
    print(f'dropped the attention of the skipped blocks ({len(attention)} keys): ' + ', '.join(attention))
    if other:
        print(f'dropped {len(other)} other source keys: ' + ', '.join(other))
    return 0


if __name__ == '__main__':
    sys.exit(main())
