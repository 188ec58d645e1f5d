"""The feature store: Zarr v3 or HDF5 behind one schema."""

from __future__ import annotations

from prism_science.store.feature_store import (
    CHUNK_BYTES_LIMIT,
    DEFAULT_CHUNK_FRAMES,
    IDENTITY_FIELDS,
    SCHEMA_VERSION,
    Features,
    FeatureStore,
    StoredVideo,
    check_video_id,
    confined_path,
    describe_params,
    is_store,
    open_store,
    safe_name,
    store_format,
    video_id_from_path,
)
from prism_science.store.repair import RepairReport, VideoRepair, repair_store

__all__ = [
    "CHUNK_BYTES_LIMIT",
    "DEFAULT_CHUNK_FRAMES",
    "FeatureStore",
    "Features",
    "IDENTITY_FIELDS",
    "RepairReport",
    "SCHEMA_VERSION",
    "StoredVideo",
    "VideoRepair",
    "check_video_id",
    "confined_path",
    "describe_params",
    "is_store",
    "open_store",
    "repair_store",
    "safe_name",
    "store_format",
    "video_id_from_path",
]
