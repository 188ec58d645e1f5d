"""Videos to stored features: clip windows, the encoder pass, jobs and their runners.

windows -> features (one video) -> jobs (a batch into a store) -> run (local) / cluster (Dask).
"""

from __future__ import annotations

from prism_science.extraction.features import (
    iter_video_features,
    load_encoder,
)
from prism_science.extraction.jobs import (
    ExtractOptions,
    ExtractReport,
    FeatureWriter,
    VideoJob,
    VideoSource,
    check_store_compatible,
    extract_ranges,
    find_videos,
    prepare_video,
)
from prism_science.extraction.run import (
    run_extraction,
)
from prism_science.extraction.windows import (
    WindowParams,
)

__all__ = [
    "ExtractOptions",
    "ExtractReport",
    "FeatureWriter",
    "VideoJob",
    "VideoSource",
    "WindowParams",
    "check_store_compatible",
    "extract_ranges",
    "find_videos",
    "iter_video_features",
    "load_encoder",
    "prepare_video",
    "run_extraction",
]
