"""``CheckedCocoDataset``: mmdet's ``CocoDataset`` (same arguments) that names the annotation file it cannot read
and refuses annotations of undeclared categories. Registered in mmevit's ``DATASETS`` and exported to mmdet's
(when mmdet is installed); our COCO configs use it.

What mmdet 3.3.0 does, and what this class does instead:

- missing ``ann_file``: ``FileNotFoundError`` naming it (unchanged);
- a file that is not valid json (truncated download, wrong file): ``JSONDecodeError: Expecting value: line 1
  column 13 (char 12)``, without the file -> ``ValueError`` naming it;
- an annotation whose ``category_id`` is not among the file's ``categories`` (a corrupt or hand-edited file):
  dropped silently -> ``ValueError`` naming the annotation id, its image and the file.

Annotations of *declared* categories that the config leaves out (``metainfo=dict(classes=...)`` selecting a
subset) are still skipped, as mmdet does: that is how a subset of COCO is trained.
"""
import importlib.util
import json
from typing import Optional

from ..registry import DATASETS, export_to

if importlib.util.find_spec('mmdet') is not None:
    from mmdet.datasets import CocoDataset
    from mmdet.datasets.api_wrappers import COCO

    class CheckedCOCO(COCO):
        """mmdet's ``COCO`` API whose load errors name the file, refusing undeclared category ids."""

        def __init__(self, annotation_file: Optional[str] = None) -> None:
            try:
                super().__init__(annotation_file)
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise ValueError(f'cannot read COCO annotations {annotation_file}: not a valid json file '
                                 f'(truncated or not COCO json?): {e}') from e
            declared = set(self.cats)
            undeclared = [a for a in self.dataset.get('annotations', []) if a.get('category_id') not in declared]
            if undeclared:
                first = undeclared[0]
                image = self.imgs.get(first.get('image_id'), {}).get('file_name', first.get('image_id'))
                raise ValueError(
                    f'{annotation_file}: {len(undeclared)} annotation(s) have a category_id that is not among the '
                    f'file\'s categories {sorted(declared)}, e.g. annotation {first.get("id")} of image {image} '
                    f'(category_id {first.get("category_id")!r})')

    @export_to('mmdet', registry='DATASETS')
    @DATASETS.register_module()
    class CheckedCocoDataset(CocoDataset):
        """mmdet's ``CocoDataset`` reading its annotations through ``CheckedCOCO`` (module docstring)."""

        COCOAPI = CheckedCOCO
