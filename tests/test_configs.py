"""Every config under configs/ loads and builds its model in its toolbox; recipe invariants; `mmevit::` packaging."""
import copy
import glob
import inspect
import os
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import MODELS, DefaultScope

import mmevit
from mmevit.models.backbones.skipat_vit import DEFAULT_SKIP_INDICES, SkipAtViT

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIG_ROOT = osp.join(REPO, 'configs')
CONFIGS = sorted(p for p in glob.glob(osp.join(CONFIG_ROOT, '**', '*.py'), recursive=True)
                 if '_base_' not in p.split(os.sep))
# The SkipAt recipes and their ViT baselines (other families' configs in these folders have their own tests).
SKIPAT = [p for p in CONFIGS if osp.basename(p).startswith(('skipat_', 'vit_'))]
ADE20K = [p for p in SKIPAT if osp.basename(osp.dirname(p)) == 'ade20k']
IMAGENET = [p for p in SKIPAT if osp.basename(osp.dirname(p)) == 'imagenet']
# The toolbox that builds each config folder's models.
SCOPES = {'ade20k': 'mmseg', 'imagenet': 'mmpretrain'}
DIMS = {'t': 192, 's': 384, 'b': 768}
HALF = [127.5, 127.5, 127.5]
BACKBONE_KWARGS = set(inspect.signature(SkipAtViT).parameters) | {'type'}


def rel(path: str) -> str:
    return osp.relpath(path, CONFIG_ROOT)


def expected_variant(path: str):
    """``skipat_s_upernet.py`` -> ('s', the paper's skip indices); ``vit_b.py`` -> ('b', ())."""
    family, size = osp.basename(path).split('_')[:2]
    size = size.removesuffix('.py')
    return size, (DEFAULT_SKIP_INDICES if family == 'skipat' else ())


def build(cfg: Config, device: str = 'meta') -> torch.nn.Module:
    """Build ``cfg.model`` in the config's toolbox as the Runner does, without loading any checkpoint."""
    model_cfg = copy.deepcopy(cfg.model)
    if cfg.get('data_preprocessor') is not None:
        model_cfg.setdefault('data_preprocessor', copy.deepcopy(cfg.data_preprocessor))
    if 'backbone' in model_cfg:
        model_cfg.backbone.init_cfg = None
    # The scope only for this build (init_default_scope would leave it set for every later test).
    with DefaultScope.overwrite_default_scope(cfg.default_scope), torch.device(device):
        return MODELS.build(model_cfg)


def test_configs_found():
    assert len(ADE20K) >= 7 and len(IMAGENET) == 6, (ADE20K, IMAGENET)


@pytest.mark.parametrize('path', CONFIGS, ids=rel)
def test_config_loads_and_builds(path):
    cfg = Config.fromfile(path)
    assert 'model' in cfg
    folder = osp.basename(osp.dirname(path))
    if folder in SCOPES:
        assert cfg.custom_imports == dict(imports=['mmevit'], allow_failed_imports=False)
        assert cfg.default_scope == SCOPES[folder]
    assert cfg.get('default_scope') in ('mmseg', 'mmdet', 'mmpretrain', 'mmevit'), cfg.get('default_scope')
    assert isinstance(build(cfg), torch.nn.Module)


@pytest.mark.parametrize('path', CONFIGS, ids=rel)
def test_lr_is_never_rescaled_silently(path):
    """As in mmdet, auto_scale_lr ships disabled (a 1-GPU run of an 8-GPU recipe must not train at 1/8 of the
    lr unless asked: `tools/train.py --auto-scale-lr`); where it is set, it names the recipe's total batch."""
    auto = Config.fromfile(path).get('auto_scale_lr')
    if auto is not None:
        assert auto.get('enable', False) is False, auto
        assert isinstance(auto.base_batch_size, int) and auto.base_batch_size > 0, auto


@pytest.mark.parametrize('path', ADE20K, ids=rel)
def test_ade20k_config(path):
    cfg = Config.fromfile(path)
    size, skip = expected_variant(path)
    dims = DIMS[size]
    model = cfg.model
    assert model.type == 'EncoderDecoder' and model.pretrained is None
    bb = model.backbone
    # _delete_ worked: nothing of mmseg's VisionTransformer kwargs survived the override.
    assert set(bb) <= BACKBONE_KWARGS, set(bb) - BACKBONE_KWARGS
    assert not {'mlp_ratio', 'norm_cfg', 'act_cfg', 'embed_dims', 'num_layers', 'norm_eval'} & set(bb)
    assert (bb.type, bb.arch, tuple(bb.skip_indices)) == ('SkipAtViT', size, skip)
    assert (tuple(bb.img_size), tuple(bb.out_indices), bb.final_norm, bb.with_cls_token, bb.drop_path_rate) == \
        ((512, 512), (2, 5, 8, 11), False, True, 0.1)
    assert bb.init_cfg.type == 'Pretrained' and bb.init_cfg.checkpoint.startswith('https://')
    if size in 'ts':
        kind = 'skipat' if skip else 'vit'
        assert bb.init_cfg.checkpoint.endswith(f"/{kind}-{dict(t='tiny', s='small')[size]}.t7")
    # Channels of neck and heads follow the backbone width.
    assert model.neck.in_channels == [dims] * 4 and model.neck.out_channels == dims
    assert model.neck.scales == [4, 2, 1, 0.5]
    assert model.decode_head.in_channels == [dims] * 4 and model.auxiliary_head.in_channels == dims
    assert model.decode_head.num_classes == model.auxiliary_head.num_classes == 150
    # Normalisation of the official checkpoints, 512 crops, batch 8 x 2.
    assert model.data_preprocessor.mean == HALF and model.data_preprocessor.std == HALF
    assert tuple(model.data_preprocessor.size) == (512, 512) == tuple(cfg.crop_size)
    assert cfg.train_dataloader.batch_size == 2
    assert cfg.auto_scale_lr == dict(enable=False, base_batch_size=16)
    warmup, poly = cfg.param_scheduler
    assert (warmup.type, warmup.end, poly.type, poly.begin, poly.end) == ('LinearLR', 1500, 'PolyLR', 1500, 160000)
    assert cfg.train_cfg.max_iters == 160000
    ow = cfg.optim_wrapper
    assert ow.optimizer.type == 'AdamW'
    assert {k: v.decay_mult for k, v in ow.paramwise_cfg.custom_keys.items()} == \
        {'pos_embed': 0., 'cls_token': 0., 'norm': 0.}
    if not path.endswith('_lrd.py'):
        assert (ow.optimizer.lr, ow.optimizer.weight_decay) == (6e-5, 0.01)

    net = build(cfg, 'cpu' if size == 't' else 'meta')
    assert type(net).__name__ == 'EncoderDecoder' and isinstance(net.backbone, SkipAtViT)
    assert net.backbone.embed_dims == dims and net.backbone.skip_indices == skip
    if size == 't':  # a real forward on a small input: backbone -> neck -> UPerHead
        net.eval()
        with torch.no_grad():
            out = net(torch.rand(1, 3, 64, 96), mode='tensor')
        assert out.shape == (1, 150, 16, 24)


@pytest.mark.parametrize('path', IMAGENET, ids=rel)
def test_imagenet_config(path):
    cfg = Config.fromfile(path)
    size, skip = expected_variant(path)
    model = cfg.model
    bb = model.backbone
    assert model.type == 'ImageClassifier' and set(bb) <= BACKBONE_KWARGS
    assert (bb.type, bb.arch, tuple(bb.skip_indices), bb.out_type, bb.final_norm) == \
        ('SkipAtViT', size, skip, 'cls_token', True)
    assert model.head.type == 'VisionTransformerClsHead' and model.head.in_channels == DIMS[size]
    assert model.head.loss == dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original')
    assert [a.type for a in model.train_cfg.augments] == ['Mixup', 'CutMix']
    # Evaluation as the official checkpoints expect: mean = std = 0.5, bicubic short side 248, centre crop 224.
    assert cfg.data_preprocessor.mean == HALF and cfg.data_preprocessor.std == HALF
    for loader in (cfg.val_dataloader, cfg.test_dataloader):
        resize, crop = loader.dataset.pipeline[1:3]
        assert (resize.type, resize.scale, resize.edge, resize.interpolation) == ('ResizeEdge', 248, 'short', 'bicubic')
        assert (crop.type, crop.crop_size) == ('CenterCrop', 224)
    erasing = [t for t in cfg.train_dataloader.dataset.pipeline if t.type == 'RandomErasing'][0]
    assert erasing.fill_color == HALF
    # DeiT schedule: batch 1024 (8 x 128), AdamW 1e-3, 5 warm-up epochs then cosine, 300 epochs.
    assert cfg.train_dataloader.batch_size * 8 == cfg.auto_scale_lr.base_batch_size == 1024
    assert cfg.auto_scale_lr.enable is False
    assert (cfg.optim_wrapper.optimizer.type, cfg.optim_wrapper.optimizer.lr) == ('AdamW', 1e-3)
    assert [s.type for s in cfg.param_scheduler] == ['LinearLR', 'CosineAnnealingLR']
    assert cfg.train_cfg.max_epochs == cfg.param_scheduler[1].end == 300

    net = build(cfg, 'cpu' if size == 't' else 'meta')
    assert type(net).__name__ == 'ImageClassifier' and isinstance(net.backbone, SkipAtViT)
    assert net.backbone.skip_indices == skip
    if size == 't':
        assert net.data_preprocessor.mean.flatten().tolist() == HALF
        net.eval()
        with torch.no_grad():
            assert net(torch.rand(2, 3, 64, 64), mode='tensor').shape == (2, 1000)


# ------------------------------------------------------------------------------------- layer-wise lr decay
def _lrd_lrs(model: torch.nn.Module, param_groups) -> dict:
    """Parameter name -> lr, for param groups of one parameter each (as the layer-decay constructors make)."""
    names = {id(p): n for n, p in model.named_parameters()}
    return {names[id(p)]: g['lr'] for g in param_groups for p in g['params']}


def test_backbone_layer_depth_fits_mmpretrain_constructor():
    """SkipAtViT.get_layer_depth gives mmpretrain's layer-decay constructor increasing lrs along the blocks."""
    from mmpretrain.engine.optimizers import LearningRateDecayOptimWrapperConstructor
    cfg = Config.fromfile(osp.join(CONFIG_ROOT, 'ade20k', 'skipat_s_upernet_lrd.py'))
    net = build(cfg)
    ow = copy.deepcopy(cfg.optim_wrapper)
    constructor = LearningRateDecayOptimWrapperConstructor(
        dict(type=ow.type, optimizer=ow.optimizer), ow.paramwise_cfg)
    groups = []
    constructor.add_params(groups, net, get_layer_depth=lambda n: net.backbone.get_layer_depth(n, 'backbone.'))
    lrs = _lrd_lrs(net, groups)
    rate, base = ow.paramwise_cfg.layer_decay_rate, ow.optimizer.lr
    assert lrs['backbone.pos_embed'] == pytest.approx(base * rate ** 13)
    assert lrs['backbone.blocks.0.attn.qkv.weight'] < lrs['backbone.blocks.11.attn.qkv.weight']
    assert lrs['backbone.blocks.3.phi.fc1.weight'] == pytest.approx(base * rate ** 9)
    assert lrs['decode_head.conv_seg.weight'] == base


def test_lrd_config_builds_its_optim_wrapper():
    from mmengine.optim import build_optim_wrapper
    cfg = Config.fromfile(osp.join(CONFIG_ROOT, 'ade20k', 'skipat_s_upernet_lrd.py'))
    net = build(cfg, 'cpu')
    wrapper = build_optim_wrapper(net, copy.deepcopy(cfg.optim_wrapper))
    lrs = _lrd_lrs(net, wrapper.optimizer.param_groups)
    first, last, head = (lrs[f'{m}.weight'] for m in ('backbone.blocks.0.mlp.fc1', 'backbone.blocks.11.mlp.fc1',
                                                      'decode_head.conv_seg'))
    assert first < last < head == cfg.optim_wrapper.optimizer.lr


# ----------------------------------------------------------------------------------------- packaging
def test_mim_configs_installed():
    """`pip install -e .` (setup.py's add_mim_extension) exposes configs/ and model-index.yml as mmevit/.mim/."""
    from mmengine.utils import get_installed_path
    mim = osp.join(get_installed_path('mmevit'), '.mim')
    assert osp.samefile(osp.join(mim, 'configs'), CONFIG_ROOT)
    assert osp.isfile(osp.join(mim, 'model-index.yml'))
    assert osp.isfile(osp.join(mim, 'configs', 'ade20k', 'skipat_s_upernet.py'))


def test_model_index_lists_every_config():
    from mmengine.fileio import load
    index = load(osp.join(REPO, 'model-index.yml'))
    listed = set()
    for meta in index['Import']:
        for m in load(osp.join(REPO, meta))['Models']:
            assert osp.isfile(osp.join(REPO, m['Config'])), m['Config']
            listed.add(osp.join(REPO, m['Config']))
    recipes = [p for p in CONFIGS if osp.basename(osp.dirname(p)) not in ('demo', )]
    assert set(recipes) <= listed, sorted(set(recipes) - listed)


def test_downstream_config_inherits_with_mmevit_scope(tmp_path, monkeypatch):
    """`_base_ = ['mmevit::ade20k/skipat_s_upernet.py']` resolves through the installed package."""
    from mmengine.config import utils as config_utils
    if 'mmevit' not in config_utils.MODULE2PACKAGE:
        # mmengine only resolves `pkg::` for the OpenMMLab packages it lists; `import mmevit` should add itself.
        monkeypatch.setitem(config_utils.MODULE2PACKAGE, 'mmevit', 'mmevit')
    down = tmp_path / 'my_skipat.py'
    down.write_text("_base_ = ['mmevit::ade20k/skipat_s_upernet.py']\n"
                    'model = dict(decode_head=dict(num_classes=19), auxiliary_head=dict(num_classes=19))\n')
    cfg = Config.fromfile(str(down))
    assert cfg.model.backbone.type == 'SkipAtViT' and cfg.model.backbone.arch == 's'
    assert cfg.model.decode_head.num_classes == 19 and cfg.model.decode_head.in_channels == [384] * 4
    assert cfg.auto_scale_lr.base_batch_size == 16


def test_import_mmevit_enables_mmevit_scope_in_configs():
    from mmengine.config.utils import MODULE2PACKAGE
    assert MODULE2PACKAGE.get('mmevit') == 'mmevit'


# ----------------------------------------------------------------------------------------- hardening (issue 12)
# The data preprocessors that refuse NaN/Inf training batches (mmevit/models/data_preprocessors.py).
FINITE_PREPROCESSORS = {'mmseg': 'FiniteSegDataPreProcessor', 'mmdet': 'FiniteDetDataPreprocessor',
                        'mmpretrain': 'FiniteClsDataPreprocessor', 'mmevit': 'RestorationDataPreprocessor'}


@pytest.mark.parametrize('path', CONFIGS, ids=rel)
def test_config_hardening(path):
    """Every shipped config:
    - lists RNGStateHook (exact --resume; configs/_base_/rng_state.py), by a name that builds in its own scope;
    - refuses NaN/Inf training batches in its data preprocessor (mmevit/models/data_preprocessors.py);
    - segmentation: loads annotations with LoadSegAnnotations and the heads' num_classes (files named on
      errors, labels range-checked), in training and testing; COCO: reads them through CheckedCocoDataset.
    """
    from mmengine.registry import HOOKS

    from mmevit.engine.hooks.rng_state import RNGStateHook
    cfg = Config.fromfile(path)
    hooks = [h for h in cfg.get('custom_hooks') or [] if h.type in ('RNGStateHook', 'mmevit.RNGStateHook')]
    assert len(hooks) == 1, cfg.get('custom_hooks')
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        assert type(HOOKS.build(copy.deepcopy(hooks[0]))) is RNGStateHook

    model = cfg.model
    dp = model.get('data_preprocessor') or cfg.get('data_preprocessor') or {}
    assert dp.get('type') == FINITE_PREPROCESSORS[cfg.default_scope], (dp.get('type'), cfg.default_scope)
    if cfg.default_scope == 'mmseg':
        num_classes = model.decode_head.num_classes
        for loader in (cfg.train_dataloader, cfg.val_dataloader, cfg.test_dataloader):
            loads = [t for t in loader.dataset.pipeline if 'Annotations' in t.type]
            assert [(t.type, t.num_classes) for t in loads] == [('LoadSegAnnotations', num_classes)], loads
    if cfg.default_scope == 'mmdet':
        for loader in (cfg.train_dataloader, cfg.val_dataloader, cfg.test_dataloader):
            assert loader.dataset.type == 'CheckedCocoDataset'


def test_shipped_checked_classes_build_in_their_toolbox():
    """The names the configs use resolve in the toolboxes' registries (exported by mmevit)."""
    import importlib
    for toolbox, name in FINITE_PREPROCESSORS.items():
        if toolbox != 'mmevit':
            assert importlib.import_module(f'{toolbox}.registry').MODELS.get(name) is mmevit.MODELS.get(name)
    from mmevit.registry import DATASETS, TRANSFORMS
    assert importlib.import_module('mmseg.registry').TRANSFORMS.get('LoadSegAnnotations') is \
        TRANSFORMS.get('LoadSegAnnotations')
    assert importlib.import_module('mmdet.registry').DATASETS.get('CheckedCocoDataset') is \
        DATASETS.get('CheckedCocoDataset')
