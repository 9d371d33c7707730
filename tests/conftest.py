import os.path as osp

import pytest

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
FIXTURES = osp.join(osp.dirname(REPO), 'shared', 'fixtures')


@pytest.fixture(scope='session')
def fixtures_dir() -> str:
    if not osp.isdir(FIXTURES):
        pytest.fail(f'parity fixtures not found at {FIXTURES} (shared/ must sit beside the repo)')
    return FIXTURES
