"""The model zoo: metafiles agree with their configs, no result or weight is claimed that a config cannot back,
converted third-party checkpoints come with a conversion command that works, and mmpretrain finds our
classifiers by name (``mmevit.model_zoo``)."""
import functools
import glob
import importlib.util
import json
import os.path as osp
import shlex

import pytest
import torch
from mmengine.config import Config
from mmengine.fileio import load
from mmengine.registry import DefaultScope

import mmevit
from mmevit.engine.convert import check_state_dict, convert_for_model
from mmevit.model_zoo import CLASSIFICATION, WeightsNeedConversion, metafile_tasks, register_model_index

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
INDEX = load(osp.join(REPO, 'model-index.yml'))
METAFILES = {rel: load(osp.join(REPO, rel)) for rel in INDEX['Import']}
ENTRIES = [(rel, m) for rel, meta in METAFILES.items() for m in meta['Models']]
CONVERTED = [m for _, m in ENTRIES if 'Converted From' in m]
CLASSIFIERS = [m['Name'] for rel, m in ENTRIES if metafile_tasks(METAFILES[rel]) == {CLASSIFICATION}]
RECIPE_FOLDERS = ('ade20k', 'imagenet')  # our training recipes: header, metafile and config agree
RECIPES = [(rel, m) for rel, m in ENTRIES if rel.split('/')[1] in RECIPE_FOLDERS]
# The official SkipAt release: checkpoints with timm-style keys that must be converted before they load.
OFFICIAL_RELEASE = 'https://github.com/Qualcomm-AI-research/skip-attention/releases/'
# Official file -> its variant in the fixtures' full-size key/shape manifest (ViT: the same keys minus the Phis).
MANIFEST = {'skipat-tiny.t7': 'skipat_tiny_patch16_224', 'vit-tiny.t7': 'skipat_tiny_patch16_224',
            'skipat-small.t7': 'skipat_small_patch16_224', 'vit-small.t7': 'skipat_small_patch16_224'}


@functools.lru_cache(maxsize=None)
def config_of(entry_config: str) -> Config:
    """A metafile entry's config, parsed once (the tests only read it)."""
    return Config.fromfile(osp.join(REPO, entry_config))


def name_of(entry) -> str:
    return entry['Name']


def stem(entry) -> str:
    return osp.splitext(osp.basename(entry['Config']))[0]


def recipe_of(cfg: Config) -> str:
    """'8 GPUs x 2 images (batch 16), 160k iterations, 512x512 crops', read off the config's values."""
    per_gpu, total = cfg.train_dataloader.batch_size, cfg.auto_scale_lr.base_batch_size
    assert total % per_gpu == 0, (total, per_gpu)
    if cfg.train_cfg.get('by_epoch'):
        schedule = f'{cfg.train_cfg.max_epochs} epochs'
    else:
        iters = cfg.train_cfg.max_iters
        schedule = f'{iters // 1000}k iterations' if iters % 1000 == 0 else f'{iters} iterations'
    if 'crop_size' in cfg:
        h, w = cfg.crop_size
    else:  # classification: the training crop of RandomResizedCrop
        h = w = [t for t in cfg.train_dataloader.dataset.pipeline if t.type == 'RandomResizedCrop'][0].scale
    return f'{total // per_gpu} GPUs x {per_gpu} images (batch {total}), {schedule}, {h}x{w} crops'


# ------------------------------------------------------------------------------------------- metafiles
def test_model_index_imports_every_metafile():
    on_disk = sorted(osp.relpath(p, REPO) for p in glob.glob(osp.join(REPO, 'configs', '**', '*metafile.yml'),
                                                              recursive=True))
    assert sorted(INDEX['Import']) == on_disk
    assert {'configs/ade20k/metafile.yml', 'configs/imagenet/metafile.yml'} <= set(on_disk)
    names = [m['Name'] for _, m in ENTRIES]
    assert len(names) == len(set(names)), 'duplicate model names'


@pytest.mark.parametrize('rel', sorted(METAFILES))
def test_metafile_declares_one_task(rel):
    """model_zoo registers a metafile with mmpretrain by its task: every metafile must say which it is."""
    assert len(metafile_tasks(METAFILES[rel])) == 1, metafile_tasks(METAFILES[rel])


@pytest.mark.parametrize('entry', [m for _, m in ENTRIES], ids=name_of)
def test_entry_names_its_config(entry):
    """Name = the config file name; a converted third-party checkpoint is `<config>_3rdparty_<data>`."""
    assert osp.isfile(osp.join(REPO, entry['Config'])), entry['Config']
    if 'Converted From' in entry:
        prefix = stem(entry) + '_3rdparty_'
        assert entry['Name'].startswith(prefix) and entry['Name'][len(prefix):], entry['Name']
    else:
        assert entry['Name'] == stem(entry) and '_3rdparty_' not in entry['Name']


@pytest.mark.parametrize('entry', [m for _, m in ENTRIES], ids=name_of)
def test_no_results_without_weights_and_no_unconverted_weights(entry):
    """Results belong to a checkpoint trained/evaluated with the config; Weights must load into the config's
    model as it stands, so never an official file that needs conversion."""
    if entry.get('Results'):
        assert entry.get('Weights'), f"{entry['Name']} lists Results but no Weights"
    weights = entry.get('Weights')
    if weights:
        assert not weights.endswith('.t7') and not weights.startswith(OFFICIAL_RELEASE), weights
        assert weights != entry.get('Converted From', {}).get('Weights'), weights


@pytest.mark.parametrize('entry', CONVERTED, ids=name_of)
def test_converted_from_gives_a_valid_command(entry):
    src = entry['Converted From']
    assert src['Weights'].startswith('https://') and src['Code'].startswith('https://')
    argv = shlex.split(src['Command'])
    assert argv[:2] == ['python', 'tools/model_converters/convert.py'] and osp.isfile(osp.join(REPO, argv[1]))
    args = _converter().parse_args(argv[2:])
    assert (args.src, args.dst, args.config, args.model) == \
        (src['Weights'], entry['Name'] + '.pth', entry['Config'], None)
    assert not (args.force or args.allow_missing), 'the documented conversion must be strict'


@pytest.mark.parametrize('rel,entry', RECIPES, ids=[m['Name'] for _, m in RECIPES])
def test_recipe_in_header_metafile_and_config_agree(rel, entry):
    path = osp.join(REPO, entry['Config'])
    cfg = config_of(entry['Config'])
    recipe = recipe_of(cfg)
    header = [ln for ln in open(path).read().splitlines() if ln.startswith('# Recipe: ')]
    assert header == [f'# Recipe: {recipe}.'], header
    meta = entry['Metadata']
    assert meta['Recipe'] == recipe
    assert meta['Batch Size'] == cfg.auto_scale_lr.base_batch_size
    assert meta['Crop Size'] == recipe.split(', ')[-1].split()[0]
    if cfg.train_cfg.get('by_epoch'):
        assert meta['Epochs'] == cfg.train_cfg.max_epochs and 'Iterations' not in meta
    else:
        assert meta['Iterations'] == cfg.train_cfg.max_iters and 'Epochs' not in meta
    if 'Pretrained' in meta:  # the ImageNet checkpoint the backbone starts from
        assert meta['Pretrained'] == cfg.model.backbone.init_cfg.checkpoint


# ------------------------------------------------------------------------ converting official checkpoints
def _converter():
    spec = importlib.util.spec_from_file_location(
        'mmevit_convert_cli', osp.join(REPO, 'tools', 'model_converters', 'convert.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _official_layout(fixtures_dir, entry, make=torch.empty, device='cpu'):
    """State dict of the official file named in Converted From (keys/shapes from the official manifest)."""
    official = osp.basename(entry['Converted From']['Weights'])
    with open(osp.join(fixtures_dir, 'manifests', 'skipat.json')) as f:
        man = json.load(f)[MANIFEST[official]]
    keys = {k: v for k, v in man['keys'].items() if not (official.startswith('vit-') and k.startswith('param_'))}
    ctor = dict(man['ctor'], skip_indices=() if official.startswith('vit-') else tuple(man['ctor']['skip_indices']))
    return ctor, {k: make(*shape, device=device) for k, shape in keys.items()}


@pytest.mark.parametrize('entry', [m for m in CONVERTED if osp.basename(m['Converted From']['Weights']) in MANIFEST],
                         ids=name_of)
def test_official_skipat_layout_converts_strictly_to_config_model(fixtures_dir, entry):
    """The official keys of each converted entry cover the config's model exactly (meta device: free)."""
    from mmengine.registry import MODELS
    cfg = config_of(entry['Config'])
    _, official = _official_layout(fixtures_dir, entry, device='meta')
    with DefaultScope.overwrite_default_scope(cfg.default_scope), torch.device('meta'):
        model = MODELS.build(cfg.model)
    state, dropped = convert_for_model(official, model)
    check_state_dict(state, model)  # raises listing any missing/unexpected key or shape mismatch
    # Dropped: exactly the unused attention of the skipped blocks (the head converts to mmpretrain's).
    skipped = model.backbone.skip_indices
    assert set(dropped) == {k for k in official if k.startswith('blocks.') and int(k.split('.')[1]) in skipped
                            and k.split('.')[2] in ('norm1', 'attn')}


@pytest.mark.e2e
@pytest.mark.parametrize('name', ['skipat_t_3rdparty_in1k', 'vit_t_3rdparty_in1k'])
def test_documented_command_gives_official_model_by_name(fixtures_dir, tmp_path, capsys, monkeypatch, name):
    """Run the metafile's command on an official-layout file (random weights), load the result through
    mmpretrain by model name: its logits are the official model's (mmevit.from_official, parity-tested)."""
    import mmpretrain
    entry = next(m for m in CONVERTED if m['Name'] == name)
    torch.manual_seed(0)
    ctor, official = _official_layout(fixtures_dir, entry, make=lambda *s, device: torch.randn(*s) * 0.02)
    src = tmp_path / osp.basename(entry['Converted From']['Weights'])
    torch.save({'model': official}, src)
    argv = shlex.split(entry['Converted From']['Command'])[2:]
    argv[0:2] = [str(src), str(tmp_path / argv[1])]
    monkeypatch.chdir(REPO)  # the command's paths are relative to the repository
    assert _converter().main(argv) == 0, capsys.readouterr().err
    dst = str(tmp_path / f'{name}.pth')
    assert set(torch.load(dst, weights_only=True)) == {'state_dict', 'meta'}

    model = mmpretrain.get_model(name, pretrained=dst)
    reference = mmevit.from_official('skipat_vit', ctor, official)
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(model(x, mode='tensor'), reference(x), atol=1e-4, rtol=1e-3)

    from mmpretrain import ImageClassificationInferencer
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        result = ImageClassificationInferencer(name, pretrained=dst)(
            torch.randint(0, 256, (200, 260, 3), dtype=torch.uint8).numpy())[0]
    assert result['pred_scores'].shape == (1000,) and 0 <= result['pred_label'] < 1000


# ------------------------------------------------------------------------------------ mmpretrain ModelHub
def test_classifiers_registered_with_mmpretrain_and_nothing_else():
    from mmpretrain.apis import ModelHub, list_models
    assert sorted(mmevit.MODEL_ZOO) == sorted(n.lower() for n in CLASSIFIERS)
    assert {'skipat_t_3rdparty_in1k', 'vit_s_3rdparty_in1k', 'skipat_b'} <= set(mmevit.MODEL_ZOO)
    segmentors = [m['Name'] for rel, m in ENTRIES if metafile_tasks(METAFILES[rel]) != {CLASSIFICATION}]
    assert segmentors and not any(ModelHub.has(n.lower()) for n in segmentors)
    # mmpretrain's own index registers lazily on first use: no clash with ours, ours stay.
    assert set(mmevit.MODEL_ZOO) <= set(list_models())
    assert register_model_index() == mmevit.MODEL_ZOO  # idempotent


def test_name_clash_from_another_file_is_named(tmp_path):
    meta = tmp_path / 'configs' / 'x' / 'metafile.yml'
    meta.parent.mkdir(parents=True)
    meta.write_text('Collections:\n  - Name: X\n    Metadata:\n      Task: Image Classification\n'
                    'Models:\n  - Name: skipat_b\n    In Collection: X\n    Config: configs/x/a.py\n')
    (tmp_path / 'model-index.yml').write_text('Import:\n  - configs/x/metafile.yml\n')
    with pytest.raises(ValueError, match=r"'skipat_b'.*already registered.*imagenet/metafile.yml"):
        register_model_index(str(tmp_path / 'model-index.yml'))


@pytest.mark.parametrize('name', sorted(mmevit.MODEL_ZOO))
def test_get_model_by_name_builds_our_classifier(name):
    import mmpretrain
    from mmevit.registry import MODELS
    entry = next(m for _, m in ENTRIES if m['Name'] == name)
    with torch.device('meta'):
        model = mmpretrain.get_model(name)
    cfg = config_of(entry['Config'])
    assert type(model).__name__ == cfg.model.type == 'ImageClassifier'
    assert type(model.backbone) is MODELS.get(cfg.model.backbone.type)  # our class, not a toolbox namesake
    assert osp.samefile(model._config.filename, osp.join(REPO, entry['Config']))
    if type(model.backbone).__name__ == 'SkipAtViT':
        assert model.backbone.skip_indices == (() if name.startswith('vit_') else (3, 4, 5, 6, 7, 8))
    if 'Parameters' in entry['Metadata']:
        assert sum(p.numel() for p in model.parameters()) == entry['Metadata']['Parameters']


@pytest.mark.parametrize('entry', [m for m in CONVERTED if m['Name'] in CLASSIFIERS], ids=name_of)
def test_unconverted_weights_explain_the_command(entry):
    from mmpretrain.apis import ModelHub
    with pytest.raises(WeightsNeedConversion, match='need conversion') as err:
        ModelHub._models_dict[entry['Name']].weights  # what get_model(pretrained=True) reads
    assert entry['Converted From']['Command'] in str(err.value)
    assert f"pretrained='{entry['Name']}.pth'" in str(err.value)


def test_pretrained_true_raises_instead_of_an_untrained_model():
    """mmpretrain would warn and return an untrained model; ours say how to get the weights instead."""
    import mmpretrain
    from mmpretrain import ImageClassificationInferencer
    with pytest.raises(WeightsNeedConversion, match='skipat_s_3rdparty_in1k has no downloadable'):
        mmpretrain.get_model('skipat_s_3rdparty_in1k', pretrained=True)
    with pytest.raises(WeightsNeedConversion):  # the inferencer's default is pretrained=True
        ImageClassificationInferencer('skipat_s_3rdparty_in1k')
