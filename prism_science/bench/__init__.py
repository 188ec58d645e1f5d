"""The paper's CV-for-Science benchmarks, one command each (docs/bench.md).

``prism-science bench {flyvsfly,calms21,chimpact,kabr} --root ROOT --model NAME --out RUN_DIR``
reads the dataset as released, extracts clips centred on the labeled frames, trains the paper's
MAP-pooler probe per seed and evaluates with the dataset's own metric::

    from prism_science.bench import BenchOptions, run_bench
    results = run_bench(BenchOptions("kabr", root, "videoprism-v1-base", out))

One module per dataset (layout, split, samples, native predictions), ``protocol`` (the protocol
and probe configs), ``cache`` (clips -> tokens, the fp16 cache), ``train`` (the probe on
streamed tokens), ``report`` (metrics, results, checks) and ``run`` (the stages).
"""

from prism_science.bench.protocol import ProbeConfig, Protocol
from prism_science.bench.run import DATASETS, BenchOptions, dry_run, run_bench

__all__ = ["DATASETS", "BenchOptions", "ProbeConfig", "Protocol", "dry_run", "run_bench"]
