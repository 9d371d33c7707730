"""mmevit: efficient vision transformers for OpenMMLab 2.x (backbones for mmseg, mmdet, mmpretrain; denoisers)."""
import os
import os.path as osp
import shutil

from setuptools import find_packages, setup

ROOT = osp.dirname(osp.abspath(__file__))


def read_version() -> str:
    scope: dict = {}
    with open(osp.join(ROOT, 'mmevit', 'version.py')) as f:
        exec(f.read(), scope)
    return scope['__version__']


def read_requirements(name: str) -> list:
    with open(osp.join(ROOT, 'requirements', name)) as f:
        return [ln.split('#')[0].strip() for ln in f if ln.split('#')[0].strip()]


def add_mim_extension() -> None:
    """Expose configs/ and tools/ as mmevit/.mim/ (symlinks for editable installs, copies otherwise),
    the way mmseg/mmdet/mmpretrain package theirs, so that `mmevit::ade20k/...` resolves."""
    mim = osp.join(ROOT, 'mmevit', '.mim')
    os.makedirs(mim, exist_ok=True)
    for name in ('configs', 'tools', 'model-index.yml'):
        src, dst = osp.join(ROOT, name), osp.join(mim, name)
        if not osp.exists(src):
            continue
        if osp.islink(dst) or osp.isfile(dst):
            os.remove(dst)
        elif osp.isdir(dst):
            shutil.rmtree(dst)
        try:
            os.symlink(osp.relpath(src, mim), dst)
        except OSError:
            (shutil.copytree if osp.isdir(src) else shutil.copyfile)(src, dst)



if __name__ == '__main__':
    add_mim_extension()
    setup(
        name='mmevit',
        version=read_version(),
        description='Efficient vision transformers for OpenMMLab 2.x: SkipAt-ViT, LIT and Evo-ViT backbones for '
        'mmseg/mmdet/mmpretrain configs, Uformer and a video denoiser with SkipAt on mmengine, with '
        'official-checkpoint conversion and parity tests',
        long_description=open(osp.join(ROOT, 'README.md')).read() if osp.exists(osp.join(ROOT, 'README.md')) else '',
        long_description_content_type='text/markdown',
        license='Apache-2.0',
        python_requires='>=3.10',
        packages=find_packages(exclude=('configs', 'tools', 'tests', 'demo')),
        include_package_data=True,
        package_data={'mmevit': ['.mim/configs/**/*', '.mim/tools/**/*', '.mim/model-index.yml']},
        install_requires=read_requirements('runtime.txt'),
        extras_require={'tests': read_requirements('tests.txt')},
        zip_safe=False,
    )
