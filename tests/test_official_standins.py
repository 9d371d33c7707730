"""The official-computation stand-ins (``mmevit.analysis.official``) reproduce the official fixtures, and
``official_pair`` gives an official/ours pair with identical outputs (what the speed comparisons rely on)."""
import glob
import os.path as osp

import pytest
import torch

from mmevit.analysis.official import OfficialSkipAt, official_pair

FIXTURES = osp.join(osp.dirname(__file__), '..', '..', 'shared', 'fixtures')


@pytest.mark.parametrize('path', sorted(glob.glob(osp.join(FIXTURES, 'skipat', '*.pt'))), ids=osp.basename)
def test_skipat_standin_reproduces_official_fixture(path):
    fx = torch.load(path, weights_only=False)
    model = OfficialSkipAt(**fx['arch']).eval()
    model.load_state_dict(fx['state_dict'])  # strict: the official key set, six Phi modules included
    with torch.no_grad():
        torch.testing.assert_close(model(fx['input']), fx['output'], atol=1e-5, rtol=1e-4)


def test_skipat_fixtures_exist():
    assert glob.glob(osp.join(FIXTURES, 'skipat', '*.pt')), f'no SkipAt fixtures under {FIXTURES}'


@pytest.mark.parametrize('name, size, shape', [('skipat-t', 64, (2, 1000)), ('uformer-t', 64, (2, 3, 64, 64)),
                                               ('lit-ti', 64, (2, 512))])
def test_official_pair_has_identical_outputs(name, size, shape):
    official, ours = official_pair(name, size)
    x = torch.rand(2, 3, size, size)
    with torch.no_grad():
        a, b = official(x), ours(x)
    a, b = (t[-1] if isinstance(t, (tuple, list)) else t for t in (a, b))
    assert a.shape == b.shape == shape
    assert a.abs().max() > 1e-3  # not a degenerate all-zero output
    torch.testing.assert_close(b, a, atol=1e-4, rtol=1e-3)


def test_official_pair_unknown_name():
    with pytest.raises(KeyError, match='no official stand-in'):
        official_pair('skipat-x', 64)
