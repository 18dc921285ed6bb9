"""Analysis tools: FLOPs with the official counting rules, effective receptive
fields and throughput/memory versus input size (CLIs in ``tools/analysis/``)."""
from .backbones import PEERS, LastStage, build_last_stage
from .erf import erf_map, erf_summary, mass_area_fraction, plot_erfs
from .flops import SPEC_GFLOPS, count_flops, counted_ss2d_core
from .scaling import plot_scaling, run_scaling, write_table

__all__ = [
    'PEERS', 'LastStage', 'build_last_stage', 'erf_map', 'erf_summary',
    'mass_area_fraction', 'plot_erfs', 'SPEC_GFLOPS', 'count_flops',
    'counted_ss2d_core', 'plot_scaling', 'run_scaling', 'write_table'
]
