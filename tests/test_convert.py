"""The family-agnostic checkpoint path (mmevit.engine.convert), from_official's registry and the one
converter CLI (tools/model_converters/convert.py)."""
import glob
import importlib.util
import os
import os.path as osp

import pytest
import torch

import mmevit
from mmevit.engine.convert import (CheckpointMismatchError, build_from_spec, check_state_dict,
                                   convert_for_model, find_converter)
from mmevit.models.backbones.base import BaseBackbone, check_indices
from mmevit.official import OFFICIAL_BUILDERS, register_official

from conftest import REPO

TINY = dict(embed_dims=32, num_layers=6, num_heads=2, feedforward_channels=64)


def _fixture(fixtures_dir):
    return torch.load(sorted(glob.glob(osp.join(fixtures_dir, 'skipat', '*.pt')))[0], weights_only=False)


def _classifier(fx, **backbone):
    """Our SkipAt classifier for the fixture's arch, with random weights."""
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import MODELS
    a = fx['arch']
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        return MODELS.build(dict(
            type='ImageClassifier',
            backbone=dict(type='SkipAtViT', arch=dict(embed_dims=a['embed_dim'], num_layers=a['depth'],
                                                      num_heads=a['num_heads'],
                                                      feedforward_channels=4 * a['embed_dim']),
                          img_size=a['img_size'], out_type='cls_token', **backbone),
            head=dict(type='VisionTransformerClsHead', num_classes=a['num_classes'], in_channels=a['embed_dim'])))


# ----------------------------------------------------------------------------------- convert_for_model
def test_official_checkpoint_in_any_container(fixtures_dir):
    fx = _fixture(fixtures_dir)
    model = _classifier(fx)
    sd = {'module.' + k: v for k, v in fx['state_dict'].items()}
    state, dropped = convert_for_model({'state_dict_ema': sd}, model)
    check_state_dict(state, model)  # exactly the model's keys and shapes
    assert state['head.layers.head.weight'] is fx['state_dict']['head.weight']
    # The unused attention of skipped blocks is dropped, and named; nothing else is.
    assert 'blocks.3.attn.qkv.weight' in dropped and 'blocks.2.attn.qkv.weight' not in dropped
    assert all(k.startswith(tuple(f'blocks.{i}.' for i in range(3, 9))) for k in dropped)
    model.load_state_dict(state, strict=True)


def test_whole_model_checkpoint_passes_through_and_is_converted(fixtures_dir):
    fx = _fixture(fixtures_dir)
    model = _classifier(fx)
    own = model.state_dict()
    state, dropped = convert_for_model({'state_dict': own, 'meta': {}}, model)
    assert not dropped and set(state) == set(own)
    assert all(state[k] is own[k] for k in own)
    # An mmpretrain ViT classifier checkpoint (backbone.layers.*, ln1, ffn) is renamed by the family.
    vit = _classifier(fx, skip_indices=())
    mmpre = {}
    for k, v in vit.state_dict().items():
        if k.startswith('backbone.'):
            k = ('backbone.' + k[9:].replace('blocks.', 'layers.').replace('norm1', 'ln1').replace('norm2', 'ln2')
                 .replace('mlp.fc1', 'ffn.layers.0.0').replace('mlp.fc2', 'ffn.layers.1')
                 .replace('patch_embed.proj', 'patch_embed.projection'))
            k = 'backbone.ln1.' + k[len('backbone.norm.'):] if k.startswith('backbone.norm.') else k
        mmpre[k] = v
    state, _ = convert_for_model(mmpre, vit)
    check_state_dict(state, vit)


def test_bare_backbone_target_takes_backbone_of_whole_model_checkpoint():
    seg_like = {'backbone.' + k: v for k, v in mmevit.models.SkipAtViT(TINY, skip_indices=(2, 3)).state_dict().items()}
    seg_like['decode_head.conv_seg.weight'] = torch.zeros(4, 32, 1, 1)
    target = mmevit.models.SkipAtViT(TINY, skip_indices=(2, 3))
    state, dropped = convert_for_model({'state_dict': seg_like, 'optimizer': {}}, target)
    check_state_dict(state, target)
    assert dropped == ['decode_head.conv_seg.weight']


def test_check_state_dict_names_every_problem():
    model = mmevit.models.SkipAtViT(TINY, skip_indices=(2, 3))
    state = dict(model.state_dict())
    del state['blocks.0.norm1.weight']
    state['blocks.0.mlp.fc1.weight'] = torch.zeros(3, 32)
    state['encoderlayer_0.blocks.0.attn.qkv.weight'] = torch.zeros(1)
    with pytest.raises(CheckpointMismatchError) as e:
        check_state_dict(state, model, source='ckpt.pth')
    msg = str(e.value)
    assert 'ckpt.pth' in msg and 'blocks.0.norm1.weight' in msg and 'encoderlayer_0.blocks.0.attn.qkv.weight' in msg
    assert 'blocks.0.mlp.fc1.weight: checkpoint (3, 32) vs model (64, 32)' in msg
    check_state_dict({k: v for k, v in model.state_dict().items() if k != 'cls_token'}, model, allow_missing=True)
    with pytest.raises(CheckpointMismatchError, match='shape mismatches'):
        check_state_dict(state, model, allow_missing=True, allow_unexpected=True)


def test_foreign_family_checkpoint_is_refused_by_name():
    """An official Uformer/LIT-style state dict handed to a SkipAt model is not silently half-loaded."""
    model = mmevit.models.SkipAtViT(TINY, skip_indices=(2, 3))
    uformer_like = {'encoderlayer_0.blocks.0.norm1.weight': torch.ones(32), 'output_proj.proj.0.weight': torch.ones(3)}
    with pytest.raises(KeyError, match='unrecognised ViT checkpoint'):
        convert_for_model(uformer_like, model)


def test_model_without_mmevit_network_is_named():
    with pytest.raises(TypeError, match='Linear has no mmevit backbone'):
        find_converter(torch.nn.Linear(2, 2))
    seq = torch.nn.Sequential(torch.nn.Linear(2, 2), mmevit.models.SkipAtViT(TINY, skip_indices=(2, 3)))
    prefix, module = find_converter(seq)
    assert prefix == '1.' and isinstance(module, BaseBackbone)


def test_build_from_spec():
    model = build_from_spec("SkipAtViT:arch='t',skip_indices=(),img_size=64")
    assert model.pos_embed.is_meta and model.skip_indices == () and model.embed_dims == 192
    assert build_from_spec('SkipAtViT:arch=s').embed_dims == 384  # bare words are strings
    with pytest.raises(KeyError, match="'NoSuchNet' is not registered"):
        build_from_spec('NoSuchNet:arch=s')
    with pytest.raises(ValueError, match='key=value'):
        build_from_spec('SkipAtViT:s')


def test_check_indices_errors():
    assert check_indices(-1, 4) == (3,)
    assert check_indices((0, -2), 4) == (0, 2)
    for bad, err in [(2.0, TypeError), ('2', TypeError), ((1, 1), ValueError), ((2, 1), ValueError),
                     ((4,), ValueError), ((True,), TypeError), ((), ValueError)]:
        with pytest.raises(err, match='out_indices'):
            check_indices(bad, 4)


# -------------------------------------------------------------------------------------- from_official
def test_from_official_is_a_registry():
    assert 'skipat_vit' in OFFICIAL_BUILDERS
    with pytest.raises(ValueError, match="unknown model 'resnet'"):
        mmevit.from_official('resnet', {}, {})
    with pytest.raises(TypeError, match='arch must be a dict'):
        mmevit.from_official('skipat_vit', [1], {})

    @register_official('_test_family')
    def build(arch, state_dict):
        return torch.nn.Linear(arch['n'], 1).eval()

    try:
        assert mmevit.from_official('_test_family', {'n': 3}, {}).in_features == 3
        with pytest.raises(KeyError, match='already registered'):
            register_official('_test_family')(lambda a, s: None)
    finally:
        del OFFICIAL_BUILDERS['_test_family']


# -------------------------------------------------------------------------------------- converter CLI
def _cli():
    spec = importlib.util.spec_from_file_location('convert_cli', osp.join(REPO, 'tools', 'model_converters',
                                                                         'convert.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _official_file(fixtures_dir, tmp_path):
    fx = _fixture(fixtures_dir)
    src = str(tmp_path / 'official.pth')
    torch.save({'model': fx['state_dict']}, src)
    return fx, src


def _spec(fx):
    a = fx['arch']
    return (f"SkipAtViT:arch=dict(embed_dims={a['embed_dim']},num_layers={a['depth']},num_heads={a['num_heads']},"
            f"feedforward_channels={4 * a['embed_dim']}),img_size={a['img_size']},out_type='raw',"
            f"out_indices={tuple(range(a['depth']))}")


def test_cli_backbone_spec_matches_official_blocks(fixtures_dir, tmp_path, capsys):
    fx, src = _official_file(fixtures_dir, tmp_path)
    dst = str(tmp_path / 'backbone.pth')
    assert _cli().main([src, dst, '--model', _spec(fx)]) == 0
    out = capsys.readouterr().out
    # 6 skipped blocks x (norm1, attn.qkv, attn.proj) x (weight, bias) + the classifier head = 38
    assert 'dropped 38 source keys' in out and 'blocks.3.attn.qkv.weight' in out and 'head.weight' in out
    ckpt = torch.load(dst, weights_only=True)  # plain tensors and data
    backbone = build_from_spec(_spec(fx), device='cpu').eval()
    backbone.load_state_dict(ckpt['state_dict'], strict=True)
    with torch.no_grad():
        outs = backbone(fx['input'])
    for i in range(11):  # the official block outputs are stored before the final norm
        torch.testing.assert_close(outs[i], fx['extra']['block_outputs'][i], rtol=1e-4, atol=1e-4)


def test_cli_config_classifier_matches_official_logits(fixtures_dir, tmp_path):
    fx, src = _official_file(fixtures_dir, tmp_path)
    a = fx['arch']
    cfg = tmp_path / 'cls.py'
    cfg.write_text(f"""
default_scope = 'mmpretrain'
model = dict(type='ImageClassifier',
             backbone=dict(type='SkipAtViT', arch=dict(embed_dims={a['embed_dim']}, num_layers={a['depth']},
                           num_heads={a['num_heads']}, feedforward_channels={4 * a['embed_dim']}),
                           img_size={a['img_size']}, out_type='cls_token'),
             head=dict(type='VisionTransformerClsHead', num_classes={a['num_classes']}, in_channels={a['embed_dim']}))
""")
    dst = str(tmp_path / 'cls.pth')
    assert _cli().main([src, dst, '--config', str(cfg)]) == 0
    model = _classifier(fx).eval()
    model.load_state_dict(torch.load(dst, weights_only=True)['state_dict'], strict=True)
    with torch.no_grad():
        torch.testing.assert_close(model(fx['input'], mode='tensor'), fx['output'], rtol=1e-4, atol=1e-4)


def test_cli_never_overwrites_src_or_user_files(fixtures_dir, tmp_path, capsys):
    fx, src = _official_file(fixtures_dir, tmp_path)
    before = open(src, 'rb').read()
    cli = _cli()
    sub = tmp_path / 'sub'
    sub.mkdir()
    # SRC == DST is refused even with --force, in any spelling.
    for dst in (src, str(sub / '..' / 'official.pth')):
        assert cli.main([src, dst, '--model', _spec(fx), '--force']) == 1
        assert 'is the source checkpoint' in capsys.readouterr().err
    os.link(src, str(tmp_path / 'hardlink.pth'))
    assert cli.main([src, str(tmp_path / 'hardlink.pth'), '--model', _spec(fx), '--force']) == 1
    assert open(src, 'rb').read() == before
    user = tmp_path / 'exists.pth'
    user.write_bytes(b'user data')
    assert cli.main([src, str(user), '--model', _spec(fx)]) == 1
    assert 'exists' in capsys.readouterr().err and user.read_bytes() == b'user data'
    assert cli.main([src, str(user), '--model', _spec(fx), '--force']) == 0
    assert 'state_dict' in torch.load(str(user), weights_only=True)


def test_cli_mismatch_fails_naming_keys(fixtures_dir, tmp_path, capsys):
    fx, src = _official_file(fixtures_dir, tmp_path)
    dst = tmp_path / 'out.pth'
    # A wider model than the checkpoint: every mis-shaped key is named, nothing is written.
    spec = _spec(fx).replace(f"feedforward_channels={4 * fx['arch']['embed_dim']}", 'feedforward_channels=8')
    assert _cli().main([src, str(dst), '--model', spec]) == 1
    err = capsys.readouterr().err
    assert 'blocks.0.mlp.fc1.weight' in err and 'shape mismatches' in err and not dst.exists()


def test_cli_full_mmevit_training_checkpoint_converts_backbone(tmp_path, capsys):
    backbone = mmevit.models.SkipAtViT(TINY, skip_indices=(2, 3))
    full = {'meta': {'epoch': 1}, 'optimizer': {'state': {}},
            'state_dict': {**{'backbone.' + k: v for k, v in backbone.state_dict().items()},
                           'decode_head.conv_seg.weight': torch.zeros(4, 32, 1, 1)}}
    src = str(tmp_path / 'iter_10.pth')
    torch.save(full, src)
    dst = str(tmp_path / 'backbone.pth')
    spec = 'SkipAtViT:arch=dict(embed_dims=32,num_layers=6,num_heads=2,feedforward_channels=64),skip_indices=(2,3)'
    assert _cli().main([src, dst, '--model', spec]) == 0
    assert 'decode_head.conv_seg.weight' in capsys.readouterr().out
    state = torch.load(dst, weights_only=True)['state_dict']
    assert all(torch.equal(state[k], v) for k, v in backbone.state_dict().items())
