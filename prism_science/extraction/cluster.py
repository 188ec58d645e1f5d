"""Distributed extraction on Dask: a LocalCluster, an existing scheduler, or SLURM.

The coordinator (the process running ``prism-science extract --cluster ...``) records every
video and creates its feature arrays first; then each task -- one video, or for a long video a
frame range made of whole shard files -- runs on a worker that writes only its own shards and
their done markers. Two tasks never share a shard, and the markers of each shard are a file of
their own, so workers never write the same file. Paths are resolved before they are sent: the
store and the videos must be on a filesystem every worker sees at the same path (a worker that
cannot see them says so). Completion is not decided here: the coordinator reads the markers
afterwards (:func:`prism_science.extraction.jobs.settle_videos`). A worker that dies is replaced
and its task rerun by Dask (the rerun rewrites the same chunks with the same values); results are
released as they arrive, so a finished task is never recomputed. Losing the scheduler, Ctrl-C,
or no worker for ``worker_timeout`` seconds end the run with a message in the report. HDF5
stores cannot be used: they take one writer at a time.

GPU workers declare the resource ``{"GPU": 1}`` and tasks ask for it, so one task runs per GPU
slot; ``--workers-per-gpu K`` starts K worker processes per GPU, and each worker process claims
one GPU of its own ``CUDA_VISIBLE_DEVICES`` (:func:`claim_gpu`).

Slurm (dask-jobqueue) keeps the lab's Dask/jobqueue configuration and lets flags override single
settings (:func:`slurm_cluster_kwargs`, which checks memory and time units before anything is
submitted); jobs scale adaptively between a minimum and a maximum, workers retire before the
walltime (``--lifetime``), and an ``sbatch`` refusal ends the run with sbatch's message. Needs
the ``[cluster]`` extra (``dask[distributed]``, ``dask-jobqueue`` for Slurm).
"""

from __future__ import annotations

import atexit
import concurrent.futures
import contextlib
import dataclasses
import logging
import os
import re
import socket
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prism_science.errors import ClusterError, PrismError, StoreError
from prism_science.extraction.slurm import (
    jobqueue_config,
    parse_memory,
    parse_walltime,
    slurm_cluster_kwargs,
    start_slurm_cluster,
)

if TYPE_CHECKING:
    from prism_science.extraction import ExtractOptions, ExtractReport, VideoJob
    from prism_science.store import FeatureStore

__all__ = [
    "ClusterError",
    "check_cluster_spec",
    "claim_gpu",
    "default_worker_timeout",
    "extract_task",
    "make_client",
    "parse_memory",
    "parse_walltime",
    "plan_tasks",
    "run_distributed",
    "slurm_cluster_kwargs",
]

logger = logging.getLogger(__name__)

# Per worker process: loaded models, keyed by (model, device).
_MODELS: dict[tuple[str, str], Any] = {}


def _import_distributed() -> Any:
    try:
        import distributed
    except ImportError as exc:  # pragma: no cover - the [cluster] extra is missing
        raise ClusterError(
            "--cluster needs Dask distributed: pip install 'prism-science[cluster]'"
        ) from exc
    return distributed


def check_cluster_spec(spec: str) -> str:
    """``spec`` when it is ``local:N`` (N >= 1), ``tcp://HOST:PORT`` or ``slurm``.

    Raises
    ------
    ClusterError
        Any other text (checked before the run prepares anything).
    """
    if spec.startswith("local:"):
        count = spec.split(":", 1)[1]
        if not count.isdigit() or int(count) < 1:
            raise ClusterError(f"--cluster {spec!r}: expected local:N with N >= 1 workers")
        return spec
    if spec.startswith("tcp://") or spec == "slurm":
        return spec
    raise ClusterError(f"--cluster {spec!r}: expected local:N, tcp://HOST:PORT or slurm")


def default_worker_timeout(spec: str) -> float:
    """Seconds to wait for a first worker: 60, or 3600 for ``slurm`` (jobs queue first)."""
    return 3600.0 if spec == "slurm" else 60.0


def make_client(
    spec: str, *, workers_per_gpu: int = 1, slurm: Mapping[str, Any] | None = None
) -> tuple[Any, Any, bool]:
    """Connect to (or start) a Dask cluster.

    Parameters
    ----------
    spec : str
        ``local:N`` (N worker processes, one thread each, on this machine), ``tcp://HOST:PORT``
        (a running scheduler) or ``slurm`` (dask-jobqueue, see :func:`slurm_cluster_kwargs`).
    workers_per_gpu : int
        Local/SLURM: worker processes per GPU.
    slurm : mapping, optional
        SLURM options (see :func:`slurm_cluster_kwargs`).

    Returns
    -------
    (Client, cluster or None, bool)
        The client, the cluster this call started (to close afterwards; None for tcp://), and
        whether the workers declare GPUs (tasks then ask for ``{"GPU": 1}``).
    """
    distributed = _import_distributed()
    if spec.startswith("local:"):
        try:
            n_workers = int(spec.split(":", 1)[1])
        except ValueError:
            n_workers = 0
        if n_workers < 1:
            raise ClusterError(f"--cluster {spec!r}: expected local:N with N >= 1 workers")
        import torch

        gpus = torch.cuda.device_count()
        if gpus and n_workers > gpus * workers_per_gpu:
            logger.warning("%d workers for %d GPU(s) x %d per GPU: some will wait", n_workers,
                           gpus, workers_per_gpu)
        threads = max(1, (os.cpu_count() or 1) // n_workers)
        cluster = distributed.LocalCluster(
            n_workers=n_workers, threads_per_worker=1, processes=True,
            resources={"GPU": 1} if gpus else None, dashboard_address=None,
            env={"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)},
        )
        return distributed.Client(cluster), cluster, bool(gpus)
    if spec.startswith("tcp://"):
        try:
            client = distributed.Client(spec, timeout=30)
        except OSError as exc:
            raise ClusterError(
                f"--cluster {spec}: cannot reach the Dask scheduler ({exc}); start one with "
                "`dask scheduler` and workers with `dask worker <address>`"
            ) from exc
        workers = client.scheduler_info().get("workers", {})
        gpu = any("GPU" in (w.get("resources") or {}) for w in workers.values())
        return client, None, gpu
    if spec == "slurm":
        kwargs, (min_jobs, max_jobs) = slurm_cluster_kwargs(slurm or {},
                                                            workers_per_gpu=workers_per_gpu)
        cluster = start_slurm_cluster(kwargs)
        logger.info("Slurm job script (%d to %d jobs, adaptive):\n%s", min_jobs, max_jobs,
                    cluster.job_script())
        cluster.adapt(minimum_jobs=min_jobs, maximum_jobs=max_jobs)
        worker_args = kwargs.get("worker_extra_args", jobqueue_config("worker-extra-args"))
        gpu = "GPU=" in " ".join(map(str, worker_args or []))
        return distributed.Client(cluster), cluster, gpu
    raise ClusterError(
        f"--cluster {spec!r}: expected local:N, tcp://HOST:PORT or slurm"
    )


def plan_tasks(job: VideoJob, task_frames: int) -> list[list[tuple[int, int]]]:
    """Split a video's missing frame ranges into tasks of whole shard files.

    Parameters
    ----------
    job : VideoJob
        The video, its unit ``chunk_frames`` (one shard file) and missing unit-aligned
        ``ranges``.
    task_frames : int
        Largest task (rounded down to whole shards, at least one shard).

    Returns
    -------
    list of list of (int, int)
        One list of ranges per task: a single task for a video needing at most
        ``task_frames`` frames, else one range per task.
    """
    if job.missing_frames <= task_frames:
        return [list(job.ranges)] if job.ranges else []
    step = max(1, task_frames // job.chunk_frames) * job.chunk_frames
    tasks = []
    for start, stop in job.ranges:
        tasks += [[(a, min(a + step, stop))] for a in range(start, stop, step)]
    return tasks


_GPU_SLOT: dict[str, Any] = {}
"""This worker process's GPU: {"index": int, "lock": Path} once claimed."""


def claim_gpu(visible: Sequence[str], workers_per_gpu: int, scope: str,
              lock_dir: str | os.PathLike[str] | None = None) -> int:
    """The index (into ``visible``) of the GPU this process takes, one GPU per worker slot.

    Worker processes of one job (or one machine) see the same ``CUDA_VISIBLE_DEVICES``; each
    claims a free slot with an exclusive lock file named after ``scope`` (held while the process
    lives; a slot of a process that died is taken over). Slot ``s`` is GPU ``s % len(visible)``,
    so the first ``len(visible)`` workers take different GPUs, then ``workers_per_gpu`` share
    each. The claim is kept for the life of the process.

    Parameters
    ----------
    visible : sequence of str
        The GPUs this process sees (``CUDA_VISIBLE_DEVICES`` split at commas, or ``0..n-1``).
    workers_per_gpu : int
        Worker processes sharing one GPU.
    scope : str
        Names the set of processes sharing these GPUs (host, Slurm job id, visible GPUs).
    lock_dir : path, optional
        Where the lock files live (default: the temporary folder).

    Returns
    -------
    int
        0 <= index < len(visible); when more workers than slots run, a GPU is shared (logged).
    """
    if "index" in _GPU_SLOT:
        return int(_GPU_SLOT["index"])
    count = max(1, len(visible))
    folder = Path(lock_dir or tempfile.gettempdir()) / f"prism-gpu-slots-{os.getuid()}"
    folder.mkdir(parents=True, exist_ok=True)
    tag = re.sub(r"[^A-Za-z0-9_.-]", "_", scope)[:120]
    for slot in range(count * max(1, workers_per_gpu)):
        lock = folder / f"{tag}-slot{slot}"
        for _ in range(2):
            try:
                fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                if _slot_holder_alive(lock):
                    break
                with contextlib.suppress(FileNotFoundError):
                    lock.unlink()
                continue
            with os.fdopen(fd, "w") as file:
                file.write(str(os.getpid()))
            _GPU_SLOT.update(index=slot % count, lock=lock)
            atexit.register(_release_gpu_slot)
            return slot % count
    index = os.getpid() % count
    logger.warning("more worker processes than %d GPU(s) x %d per GPU: sharing GPU %s",
                   count, workers_per_gpu, visible[index] if visible else index)
    _GPU_SLOT["index"] = index
    return index


def _slot_holder_alive(lock: Path) -> bool:
    try:
        pid = int(lock.read_text().strip() or "0")
    except (OSError, ValueError):
        return True  # being written: count it as taken
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return pid > 0


def _release_gpu_slot() -> None:
    lock = _GPU_SLOT.pop("lock", None)
    _GPU_SLOT.pop("index", None)
    if lock is not None:
        with contextlib.suppress(OSError):
            lock.unlink()


def _worker_device(requested: str, workers_per_gpu: int) -> str:
    import torch

    if requested not in ("auto", "cuda"):
        return requested
    if not torch.cuda.is_available():
        if requested == "cuda":
            raise ClusterError("--device cuda: this worker sees no CUDA device")
        return "cpu"
    count = torch.cuda.device_count()
    env = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    visible = [v.strip() for v in env.split(",") if v.strip()][:count] or \
        [str(i) for i in range(count)]
    scope = "-".join((socket.gethostname(), os.environ.get("SLURM_JOB_ID", "nojob"),
                      ",".join(visible)))
    index = claim_gpu(visible, workers_per_gpu, scope)
    logger.info("worker pid %d uses GPU %s of CUDA_VISIBLE_DEVICES=%s (cuda:%d)", os.getpid(),
                visible[index], env or "(all)", index)
    return f"cuda:{index}"


def _check_visible(path: str, what: str, probe: Path) -> None:
    if probe.exists():
        return
    try:
        from distributed import get_worker

        name = f"worker {get_worker().name} on {socket.gethostname()}"
    except (ImportError, ValueError):
        name = f"this process on {socket.gethostname()}"
    raise StoreError(
        f"{name} cannot see the {what} {path}: the store and the videos must be on a "
        "filesystem shared by all workers, at the same path on every machine (e.g. /shared/...,"
        " not a local disk); move them there, or start workers only where that path exists"
    )


def extract_task(
    store_path: str, video_id: str, source_path: str, key: str, model: str,
    params: dict[str, Any], ranges: list[tuple[int, int]], batch_size: int = 8,
    device: str = "auto", workers_per_gpu: int = 1, torch_threads: int | None = None,
    crop: dict[str, Any] | None = None, precision: str = "fp32", matmul: str = "default",
) -> int:
    """Worker side: compute and write the chunks of ``ranges`` of one video.

    ``crop`` (``tracks_path``, ``subject``, ``crop_size``, ``align_heading``) computes one
    subject's features; the worker reads the tracks file itself (shared filesystem).

    Writes only values and done markers of its own chunks (never group attributes).

    Returns
    -------
    int
        Frames written.
    """
    import torch

    from prism_science.extraction import extract_ranges
    from prism_science.extraction.features import feature_key, load_encoder
    from prism_science.extraction.windows import WindowParams
    from prism_science.store import open_store

    _check_visible(store_path, "store", Path(store_path) / "zarr.json")
    _check_visible(source_path, "video", Path(source_path))
    if torch_threads:
        torch.set_num_threads(torch_threads)
    window = WindowParams(**params)
    device = _worker_device(device, workers_per_gpu)
    cache_key = (model, device, precision, matmul)
    if cache_key not in _MODELS:
        _MODELS[cache_key] = load_encoder(model, device=device, precision=precision,
                                          matmul=matmul, batch_size=batch_size)
    encoder = _MODELS[cache_key]
    # A subject's key is the model's key + "@<subject>" (extraction.subjects.subject_key).
    if feature_key(encoder, window) != (key.partition("@")[0] if crop is not None else key):
        raise PrismError(f"worker loaded {model!r} with key {feature_key(encoder, window)!r}, "
                         f"the coordinator expects {key!r}; use the same model everywhere")
    subject_crop = None
    if crop is not None:
        from prism_science.extraction.subjects import subject_crops
        from prism_science.tracks import read_tracks
        from prism_science.video import open_video

        _check_visible(crop["tracks_path"], "tracks file", Path(crop["tracks_path"]))
        with open_video(source_path) as reader:
            info = reader.info
        (subject_crop,) = subject_crops(
            read_tracks(crop["tracks_path"], video=source_path), info.n_frames,
            (info.height, info.width), int(encoder.image_size), crop_size=crop["crop_size"],
            align_heading=crop["align_heading"], subjects=[crop["subject"]], video=source_path)
    store = open_store(store_path, "r+")
    try:
        return extract_ranges(encoder, store, video_id, source_path, key, window, ranges,
                              batch_size=batch_size, crop=subject_crop)
    finally:
        store.close()


def run_distributed(
    store: FeatureStore,
    jobs: list[VideoJob],
    key: str,
    options: ExtractOptions,
    report: ExtractReport,
    cluster: str,
    *,
    wrote: set[str] | None = None,
    errors: dict[str, str] | None = None,
    workers_per_gpu: int = 1,
    task_frames: int = 8192,
    slurm: Mapping[str, Any] | None = None,
    worker_timeout: float | None = None,
    task_function: Callable[..., int] | None = None,
    poll_seconds: float = 1.0,
    crop_spec: Mapping[str, Any] | None = None,
) -> None:
    """Run prepared jobs on a Dask cluster; completion is then read from the store.

    Parameters
    ----------
    store : FeatureStore
        The coordinator's open Zarr store (videos recorded, feature arrays created).
    jobs : list of VideoJob
        From :func:`prism_science.extraction.prepare_video`.
    key : str
        The feature set.
    options : ExtractOptions
        Model, window parameters, batch size, device.
    report : ExtractReport
        Updated in place: ``frames``, and ``interrupted`` (``user_interrupt`` for Ctrl-C) when
        the run stops early: scheduler lost, unreachable, or no worker for ``worker_timeout``.
    cluster : str
        See :func:`make_client`.
    wrote, errors : set and dict, optional
        Filled in place: ids a task wrote frames of, and ``video_id -> reason`` of failed tasks
        (for :func:`prism_science.extraction.jobs.settle_videos`).
    workers_per_gpu, task_frames, slurm
        See :func:`make_client` and :func:`plan_tasks`.
    worker_timeout : float, optional
        Seconds without any worker (at the start, or mid-run once all are gone) before the run
        stops; default :func:`default_worker_timeout`; 0 waits forever.
    task_function : callable, optional
        Replaces :func:`extract_task` (same signature), e.g. to instrument workers.
    poll_seconds : float
        How often the coordinator checks on the cluster while no task finishes.
    crop_spec : mapping, optional
        One subject's crop (see :func:`extract_task`'s ``crop``); None: whole frames.
    """
    wrote = set() if wrote is None else wrote
    errors = {} if errors is None else errors
    tasks = [(job, ranges) for job in jobs for ranges in plan_tasks(job, task_frames)]
    if not tasks:
        return
    from tqdm.auto import tqdm

    distributed = _import_distributed()
    task_function = task_function or extract_task
    timeout = default_worker_timeout(cluster) if worker_timeout is None else worker_timeout
    try:
        client, started, gpu = make_client(cluster, workers_per_gpu=workers_per_gpu,
                                           slurm=slurm)
    except ClusterError as exc:
        report.interrupted = str(exc)
        logger.error("%s", exc)
        return
    address = getattr(client.scheduler, "address", None) or cluster
    lost = False
    remaining: dict[Any, tuple[VideoJob, int]] = {}
    try:
        _wait_for_workers(client, address, timeout, started, poll_seconds)
        n_workers = len(client.scheduler_info().get("workers", {})) or 1
        threads = max(1, (os.cpu_count() or 1) // n_workers) if cluster.startswith("local:") \
            else None
        params = dataclasses.asdict(options.params)
        run_tag = uuid.uuid4().hex[:8]
        # Paths leave the coordinator absolute: workers may run in any directory.
        store_path = str(Path(store.path).resolve())
        for job, ranges in tasks:
            future = client.submit(
                task_function, store_path, job.source.video_id, str(job.source.path.resolve()),
                key, options.model, params, ranges, batch_size=options.batch_size,
                device=options.device, workers_per_gpu=workers_per_gpu,
                torch_threads=threads, precision=options.precision,
                matmul=options.matmul, pure=False,
                **({} if crop_spec is None else {"crop": dict(crop_spec)}),
                key=f"extract-{job.source.video_id}-{ranges[0][0]}-{run_tag}",
                resources={"GPU": 1} if gpu else None,
            )
            remaining[future] = (job, sum(b - a for a, b in ranges))
        bar = tqdm(total=sum(f for _, f in remaining.values()), desc=f"all videos ({cluster})",
                   unit="frame", disable=not options.progress)
        try:
            _collect(distributed, client, remaining, report, wrote, errors, bar, address,
                     timeout, poll_seconds, started)
        finally:
            bar.close()
    except KeyboardInterrupt:
        report.interrupted, report.user_interrupt = (
            "interrupted (Ctrl-C); the chunks written so far are kept", True)
        logger.warning("%s", report.interrupted)
        with contextlib.suppress(Exception):
            client.cancel(list(remaining), force=True)
    except _Stop as stop:
        report.interrupted, lost = str(stop), stop.lost
        logger.error("%s", stop)
    except _LOST as exc:  # while submitting: the scheduler went away
        report.interrupted, lost = str(_lost(address, exc)), True
        logger.error("%s", report.interrupted)
    finally:
        _close(client, started, quiet=lost)


class _Stop(Exception):  # noqa: N818 - internal signal, turned into report.interrupted
    def __init__(self, message: str, lost: bool = False) -> None:
        super().__init__(message)
        self.lost = lost


def _wait_for_workers(client: Any, address: str, timeout: float,
                      started: Any = None, poll_seconds: float = 1.0) -> None:
    """Return once a worker joined; _Stop after ``timeout`` s or when sbatch refused the jobs."""
    if client.scheduler_info().get("workers"):
        return
    logger.info("waiting for a Dask worker to join %s (up to %s)", address,
                f"{timeout:.0f} s" if timeout else "forever")
    deadline = time.monotonic() + timeout if timeout else None
    while True:
        _check_submitted(started, workers=0)
        try:
            client.wait_for_workers(1, timeout=poll_seconds)
            return
        except TimeoutError:
            pass
        if deadline is not None and time.monotonic() > deadline:
            raise _Stop(
                f"no Dask worker joined the scheduler {address} within {timeout:.0f} s; start "
                f"workers with `dask worker {address}` on machines that see the store at the "
                "same path (with Slurm: check the jobs with squeue and their slurm-*.out logs),"
                " or wait longer with --worker-timeout SECONDS; nothing was computed")


def _check_submitted(started: Any, workers: int) -> None:
    """_Stop when sbatch refused a job and no worker is left to do the work."""
    errors = getattr(started, "submit_errors", None)
    if not errors:
        return
    if workers:
        logger.warning("sbatch refused a worker job (%s); going on with %d worker(s)",
                       errors[-1], workers)
        errors.clear()
        return
    raise _Stop(
        f"sbatch refused the worker job: {errors[-1]}; fix the partition, account, time, "
        "memory or directives (--slurm-* flags, or your jobqueue.yaml; the job script is "
        "logged with --verbose) and rerun the same command")


_LOST = (OSError, concurrent.futures.CancelledError)
"""What the client raises once the scheduler is gone (CommClosedError is an OSError)."""


def _lost(address: str, exc: BaseException) -> _Stop:
    return _Stop(
        f"lost the Dask scheduler {address} ({type(exc).__name__}: {exc}); the chunks written "
        "so far are kept: start the scheduler and workers again and rerun the same command to "
        "finish", lost=True)


def _collect(distributed: Any, client: Any, remaining: dict[Any, tuple[VideoJob, int]],
             report: ExtractReport, wrote: set[str], errors: dict[str, str], bar: Any,
             address: str, timeout: float, poll_seconds: float, started: Any = None) -> None:
    """Take results as tasks finish, releasing each at once (never recomputed later)."""
    no_workers_since: float | None = None

    def lost(exc: BaseException) -> _Stop:
        return _lost(address, exc)

    while remaining:
        try:
            done, _ = distributed.wait(list(remaining), timeout=poll_seconds,
                                       return_when="FIRST_COMPLETED")
        except TimeoutError:
            done = set()
        except _LOST as exc:
            raise lost(exc) from exc
        if not done:
            try:
                workers = len(client.nthreads())
            except _LOST as exc:
                raise lost(exc) from exc
            _check_submitted(started, workers)
            if workers:
                no_workers_since = None
            elif no_workers_since is None:
                no_workers_since = time.monotonic()
            elif timeout and time.monotonic() - no_workers_since > timeout:
                raise _Stop(
                    f"no Dask worker connected to {address} for {timeout:.0f} s (all workers "
                    "gone: killed, or Slurm jobs that reached their walltime); the chunks "
                    "written so far are kept: start workers and rerun the same command, or "
                    "wait longer with --worker-timeout SECONDS")
            continue
        for future in done:
            job, frames = remaining.pop(future)
            vid = job.source.video_id
            try:
                if future.status == "cancelled":
                    raise concurrent.futures.CancelledError(f"task {future.key} cancelled")
                if future.status == "error":
                    exc = future.exception(timeout=60)
                    errors.setdefault(vid, f"{type(exc).__name__}: {exc}")
                    logger.error("%s: %s", job.source.path, errors[vid])
                else:
                    written = int(future.result(timeout=60))
                    report.frames += written
                    if written:
                        wrote.add(vid)
            except _LOST as exc:
                raise lost(exc) from exc
            finally:
                future.release()
            bar.update(frames)


def _close(client: Any, started: Any, quiet: bool) -> None:
    """Close the client (and the cluster this run started); after a lost scheduler, quietly."""
    loggers = [logging.getLogger(n) for n in ("distributed", "tornado", "asyncio")]
    levels = [lg.level for lg in loggers]
    if quiet:  # the client's reconnection attempts log tracebacks that say nothing more
        for lg in loggers:
            lg.setLevel(logging.CRITICAL)
    try:
        with contextlib.suppress(Exception):
            client.close(timeout=10)
        if started is not None:
            with contextlib.suppress(Exception):
                started.close()
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)
