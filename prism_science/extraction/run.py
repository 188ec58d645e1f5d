"""Run an extraction: plan the jobs of every video, then run them here or on a Dask cluster.

``run_extraction`` is what ``prism-science extract`` runs; the jobs (discovery, store records,
resume ranges, chunk writing) are :mod:`prism_science.extraction.jobs`, the local runner is
below, the Dask runner is :mod:`prism_science.extraction.cluster`.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from typing import Any

import torch

from prism_science.errors import PrismError, StoreError
from prism_science.extraction.cluster import run_distributed
from prism_science.extraction.features import (
    feature_key,
    feature_provenance,
    load_encoder,
    model_feature_shape,
)
from prism_science.extraction.jobs import (
    ExtractOptions,
    ExtractReport,
    VideoJob,
    VideoSource,
    check_store_compatible,
    extract_ranges,
    find_videos,
    prepare_video,
)
from prism_science.store import FeatureStore, open_store

__all__ = ["run_extraction"]

logger = logging.getLogger(__name__)


def run_extraction(
    paths: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    options: ExtractOptions,
    *,
    glob: str | None = None,
    recursive: bool = False,
    cluster: str | None = None,
    cluster_options: dict[str, Any] | None = None,
) -> ExtractReport:
    """Extract features of every video under ``paths`` into the store ``out``.

    Parameters
    ----------
    paths : sequence of path
        Files and folders (see :func:`find_videos`).
    out : path
        The store (``.h5``/``.hdf5``: HDF5, else Zarr v3; ``options.format`` overrides).
    options : ExtractOptions
        Model, window parameters, device, batch size, overwrite.
    glob, recursive
        Folder search (see :func:`find_videos`).
    cluster : str, optional
        ``local:N``, ``tcp://HOST:PORT`` or ``slurm`` to run on Dask (Zarr stores only).
    cluster_options : dict, optional
        Extra options for :func:`prism_science.extraction.cluster.run_distributed`.

    Returns
    -------
    ExtractReport
        Per-video outcome; ``report.ok`` is False when some video failed.

    Raises
    ------
    PrismError
        The model cannot be loaded, or the store cannot be opened or would mix parameters.
    """
    t0 = time.perf_counter()
    sources, problems = find_videos(paths, glob=glob, recursive=recursive)
    device = "cpu" if cluster else options.device
    model = load_encoder(options.model, device=device)
    params = options.params
    params.check(int(model.num_frames))
    key = feature_key(model, params)
    provenance = feature_provenance(model, params)
    shape = model_feature_shape(model, params)
    report = ExtractReport(store_path=str(out), key=key, failed=list(problems))
    previous_threads = torch.get_num_threads()
    if not cluster and next(model.parameters()).device.type == "cpu":
        # The decode thread needs a core: oversubscribed torch threads slow both down a lot.
        torch.set_num_threads(options.threads or max(1, (os.cpu_count() or 1) - 1))
    try:
        _run(store_path=out, sources=sources, model=model, key=key, provenance=provenance,
             shape=shape, options=options, report=report, cluster=cluster,
             cluster_options=cluster_options)
    finally:
        torch.set_num_threads(previous_threads)
    report.seconds = time.perf_counter() - t0
    return report


def _run(*, store_path: str | os.PathLike[str], sources: list[VideoSource], model: Any,
         key: str, provenance: dict[str, Any], shape: tuple[int, ...], options: ExtractOptions,
         report: ExtractReport, cluster: str | None,
         cluster_options: dict[str, Any] | None) -> None:
    with open_store(store_path, "a", format=options.format) as store:
        if cluster and store.format != "zarr":
            raise StoreError(
                f"{store_path}: HDF5 stores take one writer at a time, so distributed extraction "
                "(--cluster) needs a Zarr store: use --format zarr or a path without .h5"
            )
        check_store_compatible(store, key, provenance, (s.video_id for s in sources),
                               options.overwrite)
        jobs: list[VideoJob] = []
        for source in sources:
            try:
                job = prepare_video(store, source, key, shape, provenance,
                                    overwrite=options.overwrite,
                                    chunk_frames=options.chunk_frames)
            except Exception as exc:  # noqa: BLE001 - one bad video must not stop the batch
                report.failed.append((str(source.path), _reason(exc)))
                continue
            if job is None:
                report.skipped.append(source.video_id)
                logger.info("%s: features %s complete, skipped", source.video_id, key)
            else:
                jobs.append(job)
        if cluster:
            run_distributed(store, jobs, key, options, report, cluster,
                            **(cluster_options or {}))
        else:
            _run_local(model, store, jobs, key, options, report)


def _reason(exc: Exception) -> str:
    """The message of an expected error; type, message and a logged traceback otherwise."""
    if isinstance(exc, PrismError | OSError):
        logger.error("%s", exc)
        return str(exc)
    logger.error("unexpected %s", type(exc).__name__, exc_info=exc)
    return f"{type(exc).__name__}: {exc} (unexpected; please report it with the log)"


def _run_local(model: Any, store: FeatureStore, jobs: list[VideoJob], key: str,
               options: ExtractOptions, report: ExtractReport) -> None:
    from tqdm.auto import tqdm

    overall = tqdm(total=sum(j.missing_frames for j in jobs), desc="all videos", unit="frame",
                   disable=not options.progress, position=0)
    try:
        for job in jobs:
            vid = job.source.video_id
            bar = tqdm(total=job.missing_frames, desc=vid[-40:], unit="frame", leave=False,
                       disable=not options.progress, position=1)

            def advance(n: int, bar: Any = bar) -> None:
                bar.update(n)
                overall.update(n)

            try:
                report.frames += extract_ranges(
                    model, store, vid, job.source.path, key, options.params, job.ranges,
                    batch_size=options.batch_size, on_frames=advance)
                store.mark_complete(vid, key)
                report.extracted.append(vid)
            except Exception as exc:  # noqa: BLE001 - one bad video must not stop the batch
                report.failed.append((str(job.source.path), _reason(exc)))
            finally:
                bar.close()
    finally:
        overall.close()
