from .benchmark import BenchResult, build_model, compare, count_gmacs, time_model

__all__ = ['BenchResult', 'build_model', 'compare', 'count_gmacs', 'time_model']
