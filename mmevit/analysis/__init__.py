from .benchmark import (PRESETS, BenchResult, build_model, compare, count_gmacs, forward, keep_freed_memory,
                        make_inputs, pair_ratios, peak_memory, prepare, time_model)
from .flops import PAPER_SIZES, FlopCount, count_flops, count_params, flops_of

__all__ = ['PRESETS', 'BenchResult', 'build_model', 'compare', 'count_gmacs', 'forward', 'keep_freed_memory',
           'make_inputs', 'pair_ratios', 'peak_memory', 'prepare', 'time_model', 'PAPER_SIZES', 'FlopCount',
           'count_flops', 'count_params', 'flops_of']
