"""Run an extraction: plan the jobs of every video, run them, then settle from the store.

``run_extraction`` is what ``prism-science extract`` runs; the jobs (discovery, store records,
resume ranges, chunk writing, shards, completion) are :mod:`prism_science.extraction.jobs`, the
local runner is below, the Dask runner is :mod:`prism_science.extraction.cluster`. Every run
ends with :func:`~prism_science.extraction.jobs.settle_videos`: completion is read from the
store's chunk markers, not from which tasks reported back.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from prism_science.errors import ClusterError, PrismError, StoreError
from prism_science.extraction.cluster import (
    check_cluster_spec,
    run_distributed,
    slurm_cluster_kwargs,
)
from prism_science.extraction.features import (
    default_threads,
    feature_key,
    feature_provenance,
    load_encoder,
    model_feature_shape,
    resolve_device,
)
from prism_science.extraction.jobs import (
    ExtractOptions,
    ExtractReport,
    Shard,
    VideoJob,
    VideoSource,
    assign_shards,
    check_store_compatible,
    extract_ranges,
    find_videos,
    intersect_ranges,
    prepare_video,
    probe_video,
    settle_videos,
    store_lock,
)
from prism_science.extraction.subjects import (
    default_tracks_path,
    file_sha256,
    subject_crops,
    subject_key,
)
from prism_science.store import FeatureStore, open_store, store_format

__all__ = ["run_extraction"]

logger = logging.getLogger(__name__)

CTRL_C = "interrupted (Ctrl-C); the chunks written so far are kept"


def run_extraction(
    paths: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    options: ExtractOptions,
    *,
    glob: str | None = None,
    recursive: bool = False,
    cluster: str | None = None,
    cluster_options: dict[str, Any] | None = None,
    shard: Shard | str | None = None,
    task_frames: int = 8192,
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
    shard : Shard or str, optional
        Run only this shard's share of the work, here, with no coordinator (``"i/N"`` or
        ``"auto"``, see :meth:`Shard.parse`); Zarr stores only, not with ``cluster``.
    task_frames : int
        Videos longer than this are split into units of whole shard files of about this many
        frames (for job-array shards and Dask tasks).

    Returns
    -------
    ExtractReport
        The outcome of every input video; ``report.ok`` is False when some video failed or was
        left incomplete. Ctrl-C stops the run early and returns the report with
        ``interrupted`` and ``user_interrupt`` set (the store keeps every written chunk).

    Raises
    ------
    PrismError
        The model cannot be loaded, or the store cannot be opened or would mix parameters.
    """
    t0 = time.perf_counter()
    if isinstance(shard, str):
        shard = Shard.parse(shard)
    if cluster:
        check_cluster_spec(cluster)
    if cluster == "slurm":  # memory, time and counts refused now, before anything is prepared
        slurm_cluster_kwargs((cluster_options or {}).get("slurm") or {},
                             workers_per_gpu=(cluster_options or {}).get("workers_per_gpu", 1))
    if shard is not None and cluster:
        raise ClusterError("--shard runs its share of the work in this process with no "
                           "coordinator; it cannot be combined with --cluster: drop one")
    fmt = store_format(out, options.format)
    if fmt != "zarr" and (cluster or shard is not None):
        raise StoreError(
            f"{out}: HDF5 stores take one writer at a time, so distributed extraction "
            f"({'--cluster' if cluster else '--shard'}) needs a Zarr store: use --format zarr "
            "or a path without .h5"
        )
    sources, problems = find_videos(paths, glob=glob, recursive=recursive)
    device = "cpu" if cluster else options.device
    previous_threads = torch.get_num_threads()
    if not cluster and resolve_device(device).type == "cpu":
        # Set before loading: the matmul backend is measured at the threads extraction uses.
        # On a busy machine the decode thread keeps a core (default_threads, docs/extraction.md).
        torch.set_num_threads(options.threads or default_threads())
        logger.info("%d torch thread(s) (%s)", torch.get_num_threads(),
                    "--threads" if options.threads else
                    "default: all usable cores when idle, else one left to decoding")
    try:
        model = load_encoder(options.model, device=device, precision=options.precision,
                             matmul=options.matmul, batch_size=options.batch_size)
    except BaseException:
        torch.set_num_threads(previous_threads)
        raise
    params = options.params
    params.check(int(model.num_frames))
    key = feature_key(model, params)
    provenance = feature_provenance(model, params)
    shape = model_feature_shape(model, params)
    report = ExtractReport(store_path=str(out), key=key, failed=list(problems),
                           shard=None if shard is None else str(shard))
    cluster_options = dict(cluster_options or {})
    cluster_options.setdefault("task_frames", task_frames)
    try:
        if options.boxes:
            _run_subject_boxes(store_path=out, sources=sources, model=model, key=key,
                               provenance=provenance, shape=shape, options=options,
                               report=report, cluster=cluster, shard=shard,
                               task_frames=task_frames)
        elif options.subjects:
            _run_subjects(store_path=out, sources=sources, model=model, key=key,
                          provenance=provenance, shape=shape, options=options, report=report,
                          cluster=cluster, cluster_options=cluster_options, shard=shard,
                          task_frames=task_frames)
        else:
            _run(store_path=out, sources=sources, model=model, key=key, provenance=provenance,
                 shape=shape, options=options, report=report, cluster=cluster,
                 cluster_options=cluster_options, shard=shard, task_frames=task_frames)
    finally:
        torch.set_num_threads(previous_threads)
    report.seconds = time.perf_counter() - t0
    return report


def _prepare(store: FeatureStore, sources: list[VideoSource], probes: dict[str, Any], key: str,
             provenance: dict[str, Any], shape: tuple[int, ...], options: ExtractOptions,
             report: ExtractReport, lock: Any) -> tuple[list[VideoJob], list[tuple[str, int, int]]]:
    """Record every video; returns the jobs and ``(id, frames, shard_frames)`` of all videos."""
    check_store_compatible(store, key, provenance, (s.video_id for s in sources),
                           options.overwrite)
    jobs: list[VideoJob] = []
    videos: list[tuple[str, int, int]] = []
    for source in sources:
        if source.video_id not in probes:
            continue
        if lock is not None:
            lock.touch()
        try:
            job = prepare_video(store, source, key, shape, provenance,
                                overwrite=options.overwrite, chunk_frames=options.chunk_frames,
                                probe=probes[source.video_id],
                                shard_frames=options.shard_frames)
        except Exception as exc:  # noqa: BLE001 - one bad video must not stop the batch
            report.failed.append((str(source.path), _reason(exc)))
            continue
        if job is None:
            report.skipped.append(source.video_id)
            logger.info("%s: features %s complete, skipped", source.video_id, key)
            videos.append((source.video_id, probes[source.video_id].n_frames,
                           store.shard_frames(source.video_id, key)))
        else:
            jobs.append(job)
            videos.append((source.video_id, job.n_frames, job.chunk_frames))
    return jobs, videos


def _run(*, store_path: str | os.PathLike[str], sources: list[VideoSource], model: Any,
         key: str, provenance: dict[str, Any], shape: tuple[int, ...], options: ExtractOptions,
         report: ExtractReport, cluster: str | None, cluster_options: dict[str, Any],
         shard: Shard | None, task_frames: int, crop: Any | None = None) -> None:
    probes: dict[str, Any] = {}
    for source in sources:  # outside the store lock: it reads every video
        try:
            probes[source.video_id] = probe_video(source)
        except Exception as exc:  # noqa: BLE001 - one bad video must not stop the batch
            report.failed.append((str(source.path), _reason(exc)))
    zarr = store_format(store_path, options.format) == "zarr"
    # Concurrent shards (and runs) create records one at a time; chunks need no lock.
    with store_lock(store_path) if zarr else contextlib.nullcontext() as lock:
        store = open_store(store_path, "a", format=options.format)
        try:
            jobs, videos = _prepare(store, sources, probes, key, provenance, shape, options,
                                    report, lock)
        except BaseException:
            store.close()
            raise
    wrote: set[str] = set()
    errors: dict[str, str] = {}
    owned: dict[str, list[tuple[int, int]]] | None = None
    try:
        try:
            if cluster:
                run_distributed(store, jobs, key, options, report, cluster, wrote=wrote,
                                errors=errors, **cluster_options)
            elif shard is not None:
                units = assign_shards(videos, task_frames, shard.count)[shard.index]
                owned = {}
                for vid, start, stop in units:
                    owned.setdefault(vid, []).append((start, stop))
                mine = [VideoJob(j.source, j.n_frames, j.chunk_frames,
                                 intersect_ranges(j.ranges, owned.get(j.source.video_id, [])))
                        for j in jobs]
                mine = [j for j in mine if j.ranges]
                logger.info("shard %s: %d unit(s) of %d video(s), %d frame(s) still to write",
                            shard, len(units), len(owned), sum(j.missing_frames for j in mine))
                _run_local(model, store, mine, key, options, report, wrote, errors, crop)
            else:
                _run_local(model, store, jobs, key, options, report, wrote, errors, crop)
        except KeyboardInterrupt:
            report.interrupted, report.user_interrupt = CTRL_C, True
            logger.warning("%s", CTRL_C)
        settle_videos(store, key, jobs, report, wrote=wrote, errors=errors, owned=owned)
    finally:
        store.close()


def _subject_tracks(source: VideoSource, out: str | os.PathLike[str],
                    options: ExtractOptions) -> tuple[Any, Path]:
    """The tracks of ``source``: read from ``options.subjects`` or made by the tracker."""
    from prism_science.tracks import read_tracks, track_video, write_tracks_csv

    if options.subjects != "auto":
        path = Path(options.subjects).resolve()
        return read_tracks(path, video=str(source.path)), path
    if not options.n_animals:
        raise PrismError("--subjects auto runs the built-in tracker and needs --n-animals N "
                         "(how many animals the video shows)")
    path = default_tracks_path(out, source.video_id)
    if path.exists() and not options.overwrite:
        logger.info("%s: reusing the tracks written by an earlier run (%s); --overwrite "
                    "re-tracks", source.video_id, path)
        return read_tracks(path, video=str(source.path)), path
    result = track_video(source.path, options.n_animals)
    write_tracks_csv(result.tracks, path, video=str(source.path))
    logger.info("%s: tracked %d animal(s); tracks written to %s", source.video_id,
                options.n_animals, path)
    return read_tracks(path, video=str(source.path)), path


def _run_subjects(*, store_path: str | os.PathLike[str], sources: list[VideoSource],
                  model: Any, key: str, provenance: dict[str, Any], shape: tuple[int, ...],
                  options: ExtractOptions, report: ExtractReport, cluster: str | None,
                  cluster_options: dict[str, Any], shard: Shard | None,
                  task_frames: int) -> None:
    """Per-subject extraction: each subject of the one video is its own feature set."""
    if len(sources) != 1:
        raise PrismError(
            f"--subjects extracts one video at a time (its tracks belong to one video); "
            f"{len(sources)} videos were given: run one command per video")
    source = sources[0]
    tracks, tracks_path = _subject_tracks(source, store_path, options)
    probe = probe_video(source)
    crops = subject_crops(tracks, probe.n_frames, (probe.height, probe.width),
                          int(model.image_size), crop_size=options.crop_size,
                          align_heading=options.align_heading, video=str(source.path))
    tracks_sha = file_sha256(tracks_path)
    keys = []
    for crop in crops:
        sub_key = subject_key(key, crop.subject)
        keys.append(sub_key)
        sub_provenance = {**provenance, "crop": crop.identity(tracks_sha),
                          "tracks_path": str(tracks_path)}
        sub_report = ExtractReport(store_path=report.store_path, key=sub_key,
                                   shard=report.shard)
        sub_options = dict(cluster_options)
        if cluster:
            sub_options["crop_spec"] = {
                "tracks_path": str(tracks_path), "subject": crop.subject,
                "crop_size": crop.size, "align_heading": options.align_heading}
        logger.info("%s: subject %r, crops of %d px -> %s", source.video_id, crop.subject,
                    crop.size, sub_key)
        _run(store_path=store_path, sources=sources, model=model, key=sub_key,
             provenance=sub_provenance, shape=shape, options=options, report=sub_report,
             cluster=cluster, cluster_options=sub_options, shard=shard,
             task_frames=task_frames, crop=crop)
        _merge(report, sub_report, crop.subject)
        if sub_report.interrupted:
            break
    report.key = ", ".join(keys)


def _run_subject_boxes(*, store_path: str | os.PathLike[str], sources: list[VideoSource],
                       model: Any, key: str, provenance: dict[str, Any],
                       shape: tuple[int, ...], options: ExtractOptions, report: ExtractReport,
                       cluster: str | None, shard: Shard | None, task_frames: int) -> None:
    """RoI features (``--boxes``): every subject's feature set from one decode of the video."""
    from tqdm.auto import tqdm

    from prism_science.extraction.roi import extract_box_ranges, roi_output_size, subject_boxes

    if not options.subjects:
        raise PrismError("--boxes pools each subject's box: give the boxes with --subjects "
                         "TRACKS (ChimpACT COCO, KABR CVAT, a CSV with w, h) or --subjects auto")
    if cluster:
        raise ClusterError("--boxes pools every subject from one decode of the video in one "
                           "process; --cluster is not supported with it: drop --cluster, or "
                           "share the work with --shard i/N")
    if options.crop_size is not None or options.align_heading:
        raise PrismError("--crop-size and --align-heading shape crops; --boxes pools the "
                         "whole frame's tokens over each box: drop one or the other")
    if len(sources) != 1:
        raise PrismError(
            f"--subjects extracts one video at a time (its tracks belong to one video); "
            f"{len(sources)} videos were given: run one command per video")
    output_size = roi_output_size(options.params)
    source = sources[0]
    tracks, tracks_path = _subject_tracks(source, store_path, options)
    probe = probe_video(source)
    targets = subject_boxes(tracks, probe.n_frames, (probe.height, probe.width),
                            output_size=output_size, video=str(source.path))
    tracks_sha = file_sha256(tracks_path)
    zarr = store_format(store_path, options.format) == "zarr"
    parts = []  # (boxes, key, report, jobs, videos) per subject
    with store_lock(store_path) if zarr else contextlib.nullcontext() as lock:
        store = open_store(store_path, "a", format=options.format)
        try:
            for boxes in targets:
                sub_key = subject_key(key, boxes.subject)
                sub_provenance = {**provenance, "roi": boxes.identity(tracks_sha),
                                  "tracks_path": str(tracks_path)}
                sub_report = ExtractReport(store_path=report.store_path, key=sub_key,
                                           shard=report.shard)
                jobs, videos = _prepare(store, sources, {source.video_id: probe}, sub_key,
                                        sub_provenance, shape, options, sub_report, lock)
                parts.append((boxes, sub_key, sub_report, jobs, videos))
        except BaseException:
            store.close()
            raise
    try:
        owned: dict[str, list[tuple[int, int]]] | None = None
        if shard is not None and parts:
            owned = {}
            for vid, start, stop in assign_shards(parts[0][4], task_frames,
                                                  shard.count)[shard.index]:
                owned.setdefault(vid, []).append((start, stop))
        work = []
        for boxes, sub_key, _, jobs, _ in parts:
            for job in jobs:
                ranges = job.ranges if owned is None else intersect_ranges(
                    job.ranges, owned.get(job.source.video_id, []))
                if ranges:
                    work.append((sub_key, boxes, ranges))
        written: dict[str, int] = {}
        failure: str | None = None
        frames = {f for _, _, ranges in work for a, b in ranges for f in range(a, b)}
        bar = tqdm(total=len(frames), desc=source.video_id[-40:], unit="frame",
                   disable=not options.progress or not work)

        def advance(n: int) -> None:
            bar.update(n)
            report.frames += n  # frames decoded and encoded once for all subjects

        try:
            if work:
                logger.info("%s: RoI features of %d subject(s) from one decode -> %s",
                            source.video_id, len(work), ", ".join(k for k, _, _ in work))
                written = extract_box_ranges(
                    model, store, source.video_id, source.path, options.params, work,
                    batch_size=options.batch_size, on_frames=advance)
        except KeyboardInterrupt:
            report.interrupted, report.user_interrupt = CTRL_C, True
            logger.warning("%s", CTRL_C)
        except Exception as exc:  # noqa: BLE001 - reported per subject, the store is kept
            failure = _reason(exc)
        finally:
            bar.close()
        for boxes, sub_key, sub_report, jobs, _ in parts:
            sub_report.interrupted = report.interrupted
            wrote = {source.video_id} if written.get(sub_key) else set()
            errors = {source.video_id: failure} if failure and any(
                k == sub_key for k, _, _ in work) else {}
            settle_videos(store, sub_key, jobs, sub_report, wrote=wrote, errors=errors,
                          owned=owned)
            _merge(report, sub_report, boxes.subject)
    finally:
        store.close()
    report.key = ", ".join(p[1] for p in parts)


def _merge(report: ExtractReport, part: ExtractReport, subject: str) -> None:
    """Add one subject's outcome to the run's report (ids become ``video@subject``)."""
    def tag(vid: str) -> str:
        return f"{vid}@{subject}"

    report.extracted += [tag(v) for v in part.extracted]
    report.skipped += [tag(v) for v in part.skipped]
    report.completed += [tag(v) for v in part.completed]
    report.failed += [(p, f"subject {subject!r}: {why}") for p, why in part.failed]
    report.incomplete += [(tag(v), why) for v, why in part.incomplete]
    report.waiting += [(tag(v), why) for v, why in part.waiting]
    if hasattr(report, "short"):  # videos shorter than their container declares
        report.short += [(tag(v), why) for v, why in part.short]
    report.frames += part.frames
    report.interrupted = report.interrupted or part.interrupted
    report.user_interrupt = report.user_interrupt or part.user_interrupt


def _reason(exc: Exception) -> str:
    """The message of an expected error; type, message and a logged traceback otherwise."""
    if isinstance(exc, PrismError | OSError):
        logger.error("%s", exc)
        return str(exc)
    logger.error("unexpected %s", type(exc).__name__, exc_info=exc)
    return f"{type(exc).__name__}: {exc} (unexpected; please report it with the log)"


def _run_local(model: Any, store: FeatureStore, jobs: list[VideoJob], key: str,
               options: ExtractOptions, report: ExtractReport, wrote: set[str],
               errors: dict[str, str], crop: Any | None = None) -> None:
    """Compute the missing ranges of ``jobs`` in this process (completion: settle_videos)."""
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
                frames = extract_ranges(
                    model, store, vid, job.source.path, key, options.params, job.ranges,
                    batch_size=options.batch_size, on_frames=advance, crop=crop)
                report.frames += frames
                if frames:
                    wrote.add(vid)
            except Exception as exc:  # noqa: BLE001 - one bad video must not stop the batch
                errors[vid] = _reason(exc)
            finally:
                bar.close()
    finally:
        overall.close()
