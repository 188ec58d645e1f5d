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
    describe_params,
    open_store,
    store_format,
    video_id_from_path,
)

__all__ = [
    "CHUNK_BYTES_LIMIT",
    "DEFAULT_CHUNK_FRAMES",
    "FeatureStore",
    "Features",
    "IDENTITY_FIELDS",
    "SCHEMA_VERSION",
    "StoredVideo",
    "describe_params",
    "open_store",
    "store_format",
    "video_id_from_path",
]
