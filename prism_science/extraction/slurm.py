"""Slurm through dask-jobqueue, as labs configure it: the lab's Dask/jobqueue settings kept,
flags overriding single settings, memory and time units checked before anything is submitted,
and ``sbatch`` refusals recorded so the coordinator can stop with sbatch's own message. The
runner that uses it is :mod:`prism_science.extraction.cluster`.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from prism_science.errors import ClusterError

__all__ = [
    "SLURM_OPTIONS",
    "default_lifetime",
    "jobqueue_config",
    "parse_duration",
    "parse_memory",
    "parse_walltime",
    "slurm_cluster_kwargs",
    "start_slurm_cluster",
]

logger = logging.getLogger(__name__)

SLURM_OPTIONS = ("jobs", "min_jobs", "queue", "account", "walltime", "memory", "cores", "gpus",
                 "lifetime", "lifetime_stagger", "log_dir")
"""Single-valued Slurm options (flag ``--slurm-<name>``, variable ``PRISM_SLURM_<NAME>``);
``directives`` (a list of extra ``#SBATCH`` lines) comes on top."""

_GPU_DIRECTIVE = re.compile(r"^(--gres=(\S*,)?gpu|--gpus|--gpus-per-node|--gpus-per-task|-G)\b")


def parse_memory(text: str, what: str = "--slurm-memory") -> int:
    """Bytes of a memory amount with a unit (``32GB``, ``32G``, ``31GiB``, ``32000MB``).

    Raises
    ------
    ClusterError
        A number without a unit (Dask would read ``32000`` as 32000 bytes), text that is not an
        amount, or less than 512 MB (too little for a worker that loads a model).
    """
    text = str(text).strip()
    if re.fullmatch(r"\d+(\.\d*)?", text):
        number = float(text)
        guess = f"{number / 1000:g}GB" if number >= 1000 else f"{number:g}GB"
        raise ClusterError(f"{what} {text}: {text} what? say {guess} (or {number:g}MB); "
                           "a number without a unit would be bytes")
    from dask.utils import parse_bytes

    try:
        value = int(parse_bytes(text))
    except (ValueError, TypeError) as exc:
        raise ClusterError(f"{what} {text!r}: expected an amount with a unit, e.g. 32GB, 32G, "
                           "512MB") from exc
    if value < 512 * 10**6:
        raise ClusterError(f"{what} {text}: {value} bytes is too little for a worker that loads "
                           "a model; give at least 1GB, e.g. 16GB")
    return value


def parse_walltime(text: str, what: str = "--slurm-walltime") -> int:
    """Seconds of a Slurm time limit: ``MM``, ``MM:SS``, ``HH:MM:SS``, ``D-HH``, ``D-HH:MM`` or
    ``D-HH:MM:SS`` (as ``sbatch --time`` takes it).

    Raises
    ------
    ClusterError
        Any other text (``4h``, ``04:00``-with-letters, ...), or zero.
    """
    text = str(text).strip()
    match = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", text)
    if match is None:
        raise ClusterError(
            f"{what} {text!r}: not a Slurm time; use MM, HH:MM:SS or D-HH:MM:SS, e.g. 04:00:00 "
            "for four hours or 1-00:00:00 for a day")
    days, a, b, c = match.groups()
    parts = [int(x) for x in (a, b, c) if x is not None]
    if days is not None:  # D-HH, D-HH:MM, D-HH:MM:SS
        h, m, s = (parts + [0, 0])[:3]
        seconds = int(days) * 86400 + h * 3600 + m * 60 + s
    elif len(parts) == 1:  # minutes
        seconds = parts[0] * 60
    elif len(parts) == 2:  # minutes:seconds
        seconds = parts[0] * 60 + parts[1]
    else:
        seconds = parts[0] * 3600 + parts[1] * 60 + parts[2]
    if seconds <= 0:
        raise ClusterError(f"{what} {text!r}: the time limit must be more than zero, e.g. "
                           "04:00:00")
    return seconds


def parse_duration(text: str, what: str) -> int:
    """Seconds of ``90s``, ``55m``, ``2h`` or a Slurm time (see :func:`parse_walltime`); 0 for
    ``0``."""
    text = str(text).strip()
    if text == "0":
        return 0
    match = re.fullmatch(r"(\d+)\s*([smh])", text)
    if match:
        return int(match.group(1)) * {"s": 1, "m": 60, "h": 3600}[match.group(2)]
    try:
        return parse_walltime(text, what)
    except ClusterError:
        raise ClusterError(f"{what} {text!r}: expected a duration such as 55m, 90s, 2h or "
                           "HH:MM:SS (0: none)") from None


def default_lifetime(walltime: int) -> tuple[int, int]:
    """``(lifetime, stagger)`` seconds: workers retire before a job's walltime kills them.

    Lifetime is the walltime less a margin of a tenth (at least 5 minutes, at most half the
    walltime); stagger is a twentieth (at most 5 minutes), so no worker outlives its job.
    """
    margin = min(max(300, walltime // 10), walltime // 2)
    return walltime - margin, min(300, walltime // 20)


def jobqueue_config(name: str) -> Any:
    import dask

    return dask.config.get(f"jobqueue.slurm.{name}", default=None)


def slurm_cluster_kwargs(
    options: Mapping[str, Any], environ: Mapping[str, str] | None = None,
    workers_per_gpu: int = 1,
) -> tuple[dict[str, Any], tuple[int, int]]:
    """Arguments of ``dask_jobqueue.SLURMCluster``: the lab's Dask config, overridden by flags.

    The lab's ``jobqueue.yaml`` (or ``DASK_JOBQUEUE__SLURM__*`` variables, or ``dask.config``)
    stays in force for everything the user did not give; a flag (or ``PRISM_SLURM_<NAME>``)
    overrides its one setting. Extra ``#SBATCH`` directives and worker arguments add to the
    config's lists; ``gpus`` adds ``--gres=gpu:N`` unless a directive already asks for GPUs.
    Memory and time values are checked here, before anything is submitted.

    Parameters
    ----------
    options : mapping
        Any of :data:`SLURM_OPTIONS` (None: not given) and ``directives`` (list of str, e.g.
        ``["--qos=high", "--constraint=a100"]``).
    environ : mapping, optional
        Default ``os.environ``.
    workers_per_gpu : int
        Worker processes per GPU; each declares the resource ``GPU=1``.

    Returns
    -------
    (dict, (int, int))
        SLURMCluster keyword arguments, and the fewest and most jobs for adaptive scaling.

    Raises
    ------
    ClusterError
        A count that is not an integer, a memory without a unit, a time Slurm would refuse, a
        worker lifetime not ending before the walltime, or fewer maximum than minimum jobs.
    """
    try:
        import dask_jobqueue  # noqa: F401 - registers the jobqueue defaults in dask.config
    except ImportError as exc:  # pragma: no cover - the [cluster] extra is missing
        raise ClusterError("--cluster slurm needs dask-jobqueue: pip install "
                           "'prism-science[cluster]'") from exc
    environ = os.environ if environ is None else environ

    def get(name: str) -> Any:
        value = options.get(name)
        if value is None:
            value = environ.get(f"PRISM_SLURM_{name.upper()}")
        return None if value in (None, "") else value

    def integer(name: str, default: int) -> int:
        value = get(name)
        try:
            number = default if value is None else int(value)
        except ValueError as exc:
            raise ClusterError(f"--slurm-{name.replace('_', '-')} {value!r}: expected a whole "
                               "number") from exc
        if number < (0 if name in ("gpus", "min_jobs") else 1):
            raise ClusterError(f"--slurm-{name.replace('_', '-')} {value!r}: too small")
        return number

    max_jobs, min_jobs, gpus = integer("jobs", 1), integer("min_jobs", 1), integer("gpus", 0)
    if min_jobs > max_jobs:
        raise ClusterError(f"--slurm-min-jobs {min_jobs} is more than --slurm-jobs {max_jobs} "
                           "(the most jobs); raise --slurm-jobs or lower --slurm-min-jobs")
    kwargs: dict[str, Any] = {}
    if jobqueue_config("name") in (None, "dask-worker"):
        kwargs["job_name"] = "prism-extract"
    processes = jobqueue_config("processes")
    if gpus:
        processes = gpus * workers_per_gpu
        kwargs["processes"] = processes
    if get("cores") is not None:
        kwargs["cores"] = max(integer("cores", 1), processes or 1)
    elif jobqueue_config("cores") is None:
        # One core per worker process: a bigger default can leave jobs pending forever on
        # small nodes. CPU extraction wants more: --slurm-cores or the lab's jobqueue.yaml.
        kwargs["cores"] = processes or 1
    elif processes and int(jobqueue_config("cores")) < processes:
        kwargs["cores"] = processes
    if "processes" not in kwargs and (processes is None and "cores" in kwargs):
        kwargs["processes"] = 1
    if get("memory") is not None:
        parse_memory(get("memory"))
        kwargs["memory"] = str(get("memory")).replace(" ", "")
    elif jobqueue_config("memory") is None:
        kwargs["memory"] = "16GB"
    else:
        parse_memory(jobqueue_config("memory"), "jobqueue.slurm.memory (Dask config)")
    if get("walltime") is not None:
        walltime = parse_walltime(get("walltime"))
        kwargs["walltime"] = str(get("walltime")).strip()
    elif jobqueue_config("walltime") is not None:
        walltime = parse_walltime(jobqueue_config("walltime"),
                                  "jobqueue.slurm.walltime (Dask config)")
    else:
        walltime, kwargs["walltime"] = 4 * 3600, "04:00:00"
    for name in ("queue", "account"):
        if get(name) is not None:
            kwargs[name] = str(get(name))
    if get("log_dir") is not None:
        log_dir = Path(str(get("log_dir"))).expanduser().resolve()
        try:
            log_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ClusterError(f"--slurm-log-dir {log_dir}: cannot create it ({exc}); give a "
                               "writable folder on the shared filesystem") from exc
        kwargs["log_directory"] = str(log_dir)

    directives = [str(d) for d in (jobqueue_config("job-extra-directives") or [])]
    for line in options.get("directives") or []:
        line = re.sub(r"^#SBATCH\s+", "", str(line).strip())
        if not line:
            continue
        if not re.fullmatch(r"-{1,2}[A-Za-z].*", line):
            if not re.fullmatch(r"[A-Za-z][\w-]*(=.*)?", line):
                raise ClusterError(f"--slurm-directive {line!r}: give an sbatch option such as "
                                   "--qos=high or constraint=a100")
            line = f"--{line}"
        directives.append(line)
    if gpus and not any(_GPU_DIRECTIVE.match(d) for d in directives):
        directives.append(f"--gres=gpu:{gpus}")
    extra_args = [str(a) for a in (jobqueue_config("worker-extra-args") or [])]
    if gpus:
        extra_args += ["--resources", "GPU=1"]
    if "--lifetime" not in extra_args:
        if get("lifetime") is not None:
            lifetime = parse_duration(get("lifetime"), "--slurm-lifetime")
            stagger = parse_duration(get("lifetime_stagger") or "0",
                                     "--slurm-lifetime-stagger")
        else:
            lifetime, stagger = default_lifetime(walltime)
            if get("lifetime_stagger") is not None:
                stagger = parse_duration(get("lifetime_stagger"), "--slurm-lifetime-stagger")
        if lifetime and lifetime + stagger >= walltime:
            raise ClusterError(
                f"worker lifetime {lifetime} s + stagger {stagger} s does not end before the "
                f"walltime ({walltime} s): workers would be killed mid-task; give a shorter "
                "--slurm-lifetime (e.g. the walltime less 10 minutes)")
        if lifetime:
            extra_args += ["--lifetime", f"{lifetime}s", "--lifetime-stagger", f"{stagger}s"]
    if directives != list(jobqueue_config("job-extra-directives") or []):
        kwargs["job_extra_directives"] = directives
    if extra_args != list(jobqueue_config("worker-extra-args") or []):
        kwargs["worker_extra_args"] = extra_args
    return kwargs, (min_jobs, max_jobs)


def start_slurm_cluster(kwargs: Mapping[str, Any]) -> Any:
    """A SLURMCluster whose failed ``sbatch`` calls are kept in ``cluster.submit_errors``.

    dask-jobqueue submits jobs in the background and only logs a refused submission; the
    coordinator reads ``submit_errors`` to stop with sbatch's own message instead of waiting.
    """
    from dask_jobqueue import SLURMCluster
    from dask_jobqueue.slurm import SLURMJob

    errors: list[str] = []

    class RecordingJob(SLURMJob):
        async def start(self) -> None:
            try:
                await super().start()
            except Exception as exc:
                errors.append(_sbatch_message(exc))
                raise

    try:
        cluster = SLURMCluster(job_cls=RecordingJob, **kwargs)
    except (ValueError, TypeError) as exc:  # a setting of the lab's config dask-jobqueue refuses
        raise ClusterError(f"--cluster slurm: dask-jobqueue refused the settings ({exc}); check "
                           "the --slurm-* flags and your jobqueue.yaml") from exc
    cluster.submit_errors = errors
    return cluster


def _sbatch_message(exc: BaseException) -> str:
    """sbatch's stderr from dask-jobqueue's error, else the error itself, on one line."""
    text = str(exc)
    if "stderr:" in text:
        text = text.split("stderr:", 1)[1]
    text = " ".join(line.strip() for line in text.strip().splitlines() if line.strip())
    return text or type(exc).__name__
