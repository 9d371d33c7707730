from .skipat_vit import SkipAtViT

__all__ = ['SkipAtViT']
