"""`type='SkipAtViT'` by bare name in mmseg, mmdet and mmpretrain: their registries, configs with custom_imports,
their own tools/train.py; and `import mmevit` with a toolbox missing."""
import importlib
import json
import os.path as osp
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from mmengine.registry import DefaultScope

import mmevit
from mmevit.models.backbones.skipat_vit import SkipAtViT

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
TOOLBOXES = ('mmseg', 'mmdet', 'mmpretrain')
TINY = dict(type='SkipAtViT', arch=dict(embed_dims=32, num_layers=4, num_heads=2, feedforward_channels=64),
            skip_indices=(2,), img_size=32, out_indices=(1, 3))


def run_python(code: str, timeout: int = 300, cwd: str = REPO) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=timeout, cwd=cwd)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc


# ------------------------------------------------------------------------------------------- registries
@pytest.mark.parametrize('toolbox', TOOLBOXES)
def test_builds_by_bare_name_in_toolbox_registry(toolbox):
    registry = importlib.import_module(f'{toolbox}.registry').MODELS
    assert registry.get('SkipAtViT') is SkipAtViT
    assert 'SkipAtViT' in mmevit.REGISTERED_INTO[toolbox]
    with DefaultScope.overwrite_default_scope(toolbox):
        model = registry.build(TINY)
    assert isinstance(model, SkipAtViT)
    outs = model(torch.rand(1, 3, 32, 48))
    assert [tuple(o.shape) for o in outs] == [(1, 32, 2, 3)] * 2


@pytest.mark.e2e
def test_builds_from_config_with_custom_imports(tmp_path):
    """A fresh process: only the config's custom_imports imports mmevit; the Runner-style build in each
    toolbox's default scope finds SkipAtViT by its bare name."""
    paths = {}
    for toolbox in TOOLBOXES:
        path = tmp_path / f'{toolbox}_cfg.py'
        path.write_text(f"custom_imports = dict(imports=['mmevit'], allow_failed_imports=False)\n"
                        f"default_scope = '{toolbox}'\nmodel = {TINY!r}\n")
        paths[toolbox] = str(path)
    code = textwrap.dedent(f"""
        import json, sys
        from mmengine.config import Config
        from mmengine.registry import MODELS, DefaultScope
        assert 'mmevit' not in sys.modules
        result = {{}}
        for toolbox, path in {paths!r}.items():
            cfg = Config.fromfile(path)
            with DefaultScope.overwrite_default_scope(cfg.default_scope):
                model = MODELS.build(cfg.model)
            result[toolbox] = type(model).__module__ + '.' + type(model).__name__
        print(json.dumps(result))
    """)
    result = json.loads(run_python(code).stdout.strip().splitlines()[-1])
    assert result == {tb: 'mmevit.models.backbones.skipat_vit.SkipAtViT' for tb in TOOLBOXES}


@pytest.mark.e2e
@pytest.mark.parametrize('missing', [('mmdet',), TOOLBOXES], ids='+'.join)
def test_import_with_missing_toolbox(missing):
    """A toolbox that cannot be imported is skipped; the others still get SkipAtViT."""
    code = textwrap.dedent(f"""
        import importlib, json, sys
        for name in {missing!r}:
            sys.modules[name] = None  # makes `import name` fail as if it were not installed
        import mmevit
        present = [t for t in {TOOLBOXES!r} if t not in {missing!r}]
        ok = {{t: importlib.import_module(t + '.registry').MODELS.get('SkipAtViT') is not None for t in present}}
        built = type(mmevit.MODELS.build({TINY!r})).__name__
        print(json.dumps(dict(registered=sorted(mmevit.REGISTERED_INTO), ok=ok, built=built)))
    """)
    result = json.loads(run_python(code).stdout.strip().splitlines()[-1])
    present = sorted(set(TOOLBOXES) - set(missing))
    assert result == dict(registered=present, ok={t: True for t in present}, built='SkipAtViT')


def test_only_exported_classes_reach_the_toolboxes():
    """Backbones go to every toolbox; a class registered in mmevit's MODELS alone (a restoration loss named
    like mmdet's L1Loss) stays in mmevit's scope, and the child registries are mmevit's."""
    from mmevit import registry

    @registry.MODELS.register_module(name='L1Loss')
    class RestorationL1(torch.nn.Module):
        pass

    try:
        done = registry.register_into_toolboxes()
        for toolbox in TOOLBOXES:
            assert 'SkipAtViT' in done[toolbox] and 'L1Loss' not in done[toolbox]
        from mmdet.registry import MODELS as DET
        assert DET.get('L1Loss') is not RestorationL1 and DET.get('L1Loss').__module__.startswith('mmdet')
        assert registry.MODELS.get('L1Loss') is RestorationL1
    finally:
        registry.MODELS.module_dict.pop('L1Loss')
    for reg in (registry.DATASETS, registry.TRANSFORMS, registry.METRICS, registry.HOOKS, registry.DATA_SAMPLERS,
                registry.VISUALIZERS):
        assert reg.scope == 'mmevit' and reg.parent is not None
    with pytest.raises(ValueError, match='unknown toolboxes'):
        registry.export_to('mmagic2')


def test_config_type_typo_names_the_closest_registered_type(tmp_path):
    """`type='SkipAtVit'` in an mmseg config: tools/train.py refuses it naming the type and the registered
    spelling (mmengine's message alone names only the typo); the same for every scope and registry."""
    import importlib.util

    from mmevit.engine import runner_setup
    spec = importlib.util.spec_from_file_location('mmevit_train_tool_typo', osp.join(REPO, 'tools', 'train.py'))
    train = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train)
    config = osp.join(REPO, 'configs', 'demo', 'skipat_t_upernet_demo.py')
    with pytest.raises(runner_setup.UnregisteredTypeError,
                       match=r"type='SkipAtVit' is not a registered model in scope 'mmseg': did you mean "
                             r"'SkipAtViT'\?") as info:
        train.main([config, '--work-dir', str(tmp_path / 'work'), '--cfg-options', 'model.backbone.type=SkipAtVit'])
    assert isinstance(info.value, KeyError)  # what mmengine raises, so existing handlers still catch it
    assert 'SkipAtVit is not in the mmseg::model registry' in str(info.value)  # mmengine's own message kept

    from mmevit.registry import MODELS as MMEVIT_MODELS
    from mmseg.registry import MODELS as SEG_MODELS
    for scope, registry, cfg, hint in [
        ('mmevit', MMEVIT_MODELS, dict(type='Denoiser', generator=dict(type='Uformr')), "did you mean 'Uformer'"),
        ('mmseg', SEG_MODELS, dict(type='lit'), "did you mean 'LIT'"),
        ('mmseg', SEG_MODELS, dict(type='UperHed'), "did you mean 'UPerHead'"),
        ('mmseg', SEG_MODELS, dict(type='NoSuchThingAtAll'), 'no registered name is close.*custom_imports'),
    ]:
        with pytest.raises(KeyError, match=hint), runner_setup.registry_hints(), \
                DefaultScope.overwrite_default_scope(scope):
            registry.build(cfg)
    with pytest.raises(KeyError, match="^'other'$"), runner_setup.registry_hints():  # other KeyErrors unchanged
        raise KeyError('other')


# ------------------------------------------------------------------------- the toolboxes' own train.py
# About 20 s each on 2 CPU cores: two iterations of SkipAtViT-T on generated data, checkpoint written.
def toolbox_train(toolbox: str, tmp_path, config_text: str, checkpoint: str, timeout: int = 600) -> None:
    """Write ``config_text`` (no validation, log every iteration) and train it with ``<toolbox>/.mim/tools/train.py``;
    check it trained a SkipAtViT: finite losses, Phi weights in ``checkpoint``."""
    cfg = tmp_path / f'{toolbox}_train.py'
    cfg.write_text(textwrap.dedent(config_text) + textwrap.dedent("""
        val_cfg = val_dataloader = val_evaluator = None
        default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=1))
    """))
    work_dir = tmp_path / 'work'
    work_dir.mkdir()
    tool = osp.join(osp.dirname(importlib.import_module(toolbox).__file__), '.mim', 'tools', 'train.py')
    proc = subprocess.run([sys.executable, tool, str(cfg), '--work-dir', str(work_dir)], capture_output=True,
                          text=True, timeout=timeout, cwd=str(work_dir))
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-6000:]
    losses = re.findall(r' loss: ([-+.\w]+)', proc.stdout + proc.stderr)
    assert losses and all(np.isfinite(float(v)) for v in losses), losses
    state = torch.load(work_dir / checkpoint, map_location='cpu', weights_only=False)['state_dict']
    assert any(k.startswith('backbone.blocks.3.phi.') for k in state)


def write_image(path, h: int, w: int, seed: int = 0) -> None:
    import cv2
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8))


@pytest.mark.e2e
def test_mmseg_train_script(tmp_path):
    import cv2
    root = tmp_path / 'ade'
    rng = np.random.default_rng(0)
    for i in range(2):  # ADEChallengeData2016 layout: jpg images, png labels 0 (ignored) .. 150
        write_image(root / 'images' / 'training' / f'a{i}.jpg', 48, 64, seed=i)
        (root / 'annotations' / 'training').mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / 'annotations' / 'training' / f'a{i}.png'),
                    rng.integers(0, 151, (48, 64), dtype=np.uint8))
    toolbox_train('mmseg', tmp_path, f"""
        _base_ = ['{REPO}/configs/ade20k/skipat_t_upernet.py']
        crop_size = (64, 64)
        data_preprocessor = dict(size=crop_size)
        model = dict(data_preprocessor=data_preprocessor, backbone=dict(img_size=crop_size, init_cfg=None),
                     decode_head=dict(channels=32), auxiliary_head=dict(channels=16))
        train_pipeline = [
            dict(type='LoadImageFromFile'),
            dict(type='LoadAnnotations', reduce_zero_label=True),
            dict(type='RandomResize', scale=(128, 64), ratio_range=(0.5, 2.0), keep_ratio=True),
            dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
            dict(type='RandomFlip', prob=0.5),
            dict(type='PhotoMetricDistortion'),
            dict(type='PackSegInputs'),
        ]
        train_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False,
                                dataset=dict(data_root='{root}', pipeline=train_pipeline))
        train_cfg = dict(max_iters=2, val_interval=100)
    """, 'iter_2.pth')


@pytest.mark.e2e
def test_mmdet_train_script(tmp_path, tiny_retinanet_config):
    root = tmp_path / 'coco'
    images, annotations = [], []
    for i in range(2):
        write_image(root / 'images' / f'{i}.jpg', 96, 128, seed=i)
        images.append(dict(id=i, file_name=f'{i}.jpg', height=96, width=128))
        annotations.append(dict(id=i, image_id=i, category_id=i % 2, bbox=[10, 20, 40, 30], area=1200, iscrowd=0))
    (root / 'ann.json').write_text(json.dumps(dict(
        images=images, annotations=annotations, categories=[dict(id=0, name='cat'), dict(id=1, name='dog')])))
    toolbox_train('mmdet', tmp_path, f"""
        _base_ = ['{tiny_retinanet_config}']
        model = dict(backbone=dict(init_cfg=None))
        train_pipeline = [
            dict(type='LoadImageFromFile'),
            dict(type='LoadAnnotations', with_bbox=True),
            dict(type='Resize', scale=(128, 128), keep_ratio=True),
            dict(type='RandomFlip', prob=0.5),
            dict(type='PackDetInputs'),
        ]
        train_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False, dataset=dict(
            data_root='{root}/', ann_file='ann.json', data_prefix=dict(img='images/'),
            metainfo=dict(classes=('cat', 'dog')), pipeline=train_pipeline,
            filter_cfg=dict(filter_empty_gt=False, min_size=0)))
        train_cfg = dict(max_epochs=1, val_interval=10)
    """, 'epoch_1.pth')


@pytest.mark.e2e
def test_mmpretrain_train_script(tmp_path):
    root = tmp_path / 'folders'
    for c in ('cat', 'dog'):
        for i in range(2):
            write_image(root / c / f'{i}.jpg', 40, 40, seed=i)
    toolbox_train('mmpretrain', tmp_path, f"""
        _base_ = ['{REPO}/configs/imagenet/skipat_t.py']
        model = dict(backbone=dict(img_size=32), head=dict(num_classes=2))
        data_preprocessor = dict(num_classes=2)
        train_pipeline = [
            dict(type='LoadImageFromFile'),
            dict(type='RandomResizedCrop', scale=32, backend='pillow', interpolation='bicubic'),
            dict(type='RandomFlip', prob=0.5),
            dict(type='PackInputs'),
        ]
        train_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False, dataset=dict(
            _delete_=True, type='CustomDataset', data_root='{root}', pipeline=train_pipeline))
        train_cfg = dict(max_epochs=1, val_interval=10)
    """, 'epoch_1.pth')
