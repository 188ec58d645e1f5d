"""Slurm as labs run it: the job script dask-jobqueue writes for each option (no Slurm needed),
sbatch refusals, a GPU per worker from CUDA_VISIBLE_DEVICES, and a whole run through a stand-in
``sbatch`` that runs the job script on this machine."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from prism_science.cli.main import main
from prism_science.errors import ClusterError
from prism_science.extraction import ExtractOptions, run_extraction
from prism_science.extraction.cluster import _GPU_SLOT, claim_gpu
from prism_science.extraction.slurm import (
    default_lifetime,
    parse_memory,
    parse_walltime,
    slurm_cluster_kwargs,
    start_slurm_cluster,
)
from prism_science.extraction.windows import WindowParams
from prism_science.store import open_store
from tests.store.conftest import TEST_MODEL

dask = pytest.importorskip("dask")
pytest.importorskip("dask_jobqueue")
pytest.importorskip("distributed")

KEY = f"{TEST_MODEL}/mean"
OPTIONS = ExtractOptions(model=TEST_MODEL, params=WindowParams(hop=2), device="cpu",
                         batch_size=4, chunk_frames=8, progress=False)


def _script(options: dict, workers_per_gpu: int = 1, **config) -> str:
    """The job script SLURMCluster writes for these options under this Dask config."""
    with dask.config.set({f"jobqueue.slurm.{k.replace('_', '-')}": v
                          for k, v in config.items()}):
        kwargs, _ = slurm_cluster_kwargs(options, environ={}, workers_per_gpu=workers_per_gpu)
        cluster = start_slurm_cluster({**kwargs, "scheduler_options":
                                        {"dashboard_address": None}})
        try:
            return cluster.job_script()
        finally:
            cluster.close()


def _sbatch_lines(script: str) -> list[str]:
    return [line[len("#SBATCH "):] for line in script.splitlines()
            if line.startswith("#SBATCH ")]


def test_lab_config_is_respected_and_flags_override_only_their_setting():
    lab = {"cores": 8, "memory": "64GB", "walltime": "12:00:00", "queue": "lab",
           "account": "neuro", "job_extra_directives": ["--qos=lab"]}
    script = _sbatch_lines(_script({}, **lab))
    assert {"--cpus-per-task=8", "--mem=60G", "-t 12:00:00", "-p lab", "-A neuro",
            "--qos=lab"} <= set(script), script
    script = _sbatch_lines(_script({"memory": "32GB", "queue": "short"}, **lab))
    assert {"--cpus-per-task=8", "--mem=30G", "-t 12:00:00", "-p short", "-A neuro",
            "--qos=lab"} <= set(script), script
    assert "--mem=60G" not in script and "-p lab" not in script
    # Without a lab config: one core per worker process (never pending on small nodes).
    kwargs, jobs = slurm_cluster_kwargs({}, environ={})
    assert kwargs["cores"] == 1 and kwargs["memory"] == "16GB" and jobs == (1, 1)


def test_environment_variables_stand_in_for_flags():
    kwargs, jobs = slurm_cluster_kwargs({"jobs": None, "cores": "4"},
                                        environ={"PRISM_SLURM_JOBS": "6",
                                                 "PRISM_SLURM_MIN_JOBS": "2",
                                                 "PRISM_SLURM_CORES": "32"})
    assert jobs == (2, 6) and kwargs["cores"] == 4


@pytest.mark.parametrize(("memory", "match"), [
    ("32000", "32000 what\\? say 32GB"), ("16", "16 what\\? say 16GB"),
    ("32KB", "too little"), ("lots", "expected an amount with a unit"),
])
def test_memory_without_unit_is_refused_with_a_hint(memory, match):
    with pytest.raises(ClusterError, match=match):
        slurm_cluster_kwargs({"memory": memory}, environ={})
    assert parse_memory("32GB") == 32 * 10**9 and parse_memory("31 GiB") == 31 * 2**30


def test_walltime_formats_and_refusals():
    assert parse_walltime("30") == 1800
    assert parse_walltime("90:30") == 5430
    assert parse_walltime("04:00:00") == 4 * 3600
    assert parse_walltime("1-12") == 36 * 3600
    assert parse_walltime("2-00:30:00") == 2 * 86400 + 1800
    for bad in ("4h", "04:00:00:00", "", "0", "1-"):
        with pytest.raises(ClusterError, match="Slurm time|more than zero"):
            parse_walltime(bad)
    with dask.config.set({"jobqueue.slurm.walltime": "forever"}), \
            pytest.raises(ClusterError, match="jobqueue.slurm.walltime"):
        slurm_cluster_kwargs({}, environ={})


def test_cli_refuses_bad_memory_and_time_before_anything_is_submitted(tmp_path, capsys,
                                                                      video_folder):
    out = tmp_path / "f.zarr"
    common = ["extract", str(video_folder), "--recursive", "--out", str(out), "--model",
              TEST_MODEL, "--cluster", "slurm", "--no-progress"]
    assert main([*common, "--slurm-memory", "32000"]) == 2
    assert "32000 what? say 32GB" in capsys.readouterr().err
    assert main([*common, "--slurm-time", "4h"]) == 2
    assert "not a Slurm time" in capsys.readouterr().err
    assert not out.exists(), "the store was touched before the options were checked"


def test_worker_lifetime_ends_before_the_walltime():
    assert default_lifetime(4 * 3600) == (4 * 3600 - 1440, 300)
    assert default_lifetime(1800) == (1500, 90)
    script = _script({"walltime": "04:00:00"})
    assert "--lifetime 12960s --lifetime-stagger 300s" in script
    script = _script({"walltime": "01:00:00", "lifetime": "50m", "lifetime_stagger": "4m"})
    assert "--lifetime 3000s --lifetime-stagger 240s" in script
    assert "--lifetime" not in _script({"lifetime": "0"})
    with pytest.raises(ClusterError, match="does not end before the walltime"):
        slurm_cluster_kwargs({"walltime": "01:00:00", "lifetime": "58m",
                              "lifetime_stagger": "5m"}, environ={})
    # A lifetime in the lab's worker-extra-args is the lab's choice.
    script = _script({}, worker_extra_args=["--lifetime", "1h"])
    assert script.count("--lifetime") == 1 and "--lifetime 1h" in script


def test_extra_directives_pass_through_and_gpus_do_not_replace_them():
    script = _sbatch_lines(_script(
        {"gpus": 2, "directives": ["--qos=high", "constraint=a100", "#SBATCH --exclusive"]},
        workers_per_gpu=2, job_extra_directives=["--mail-type=FAIL"]))
    assert {"--mail-type=FAIL", "--qos=high", "--constraint=a100", "--exclusive",
            "--gres=gpu:2"} <= set(script), script
    full = _script({"gpus": 2}, workers_per_gpu=2)
    assert "--nworkers 4" in full and "--resources GPU=1" in full
    # A typed GPU request is the user's: no second --gres.
    script = _sbatch_lines(_script({"gpus": 2, "directives": ["--gres=gpu:a100:2"]}))
    assert [line for line in script if "gpu" in line] == ["--gres=gpu:a100:2"]
    with pytest.raises(ClusterError, match="sbatch option"):
        slurm_cluster_kwargs({"directives": ["qos high"]}, environ={})


def test_log_directory_for_slurm_output(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    script = _sbatch_lines(_script({"log_dir": "logs/slurm"}))
    folder = tmp_path / "logs" / "slurm"
    assert folder.is_dir()
    assert f"-o {folder}/prism-extract-%J.out" in script
    assert f"-e {folder}/prism-extract-%J.err" in script


def test_one_gpu_per_worker_from_cuda_visible_devices(tmp_path):
    """8 worker processes on CUDA_VISIBLE_DEVICES=4,5,6,7 with 2 per GPU: each GPU twice,
    whatever the workers are called; a slot of a dead process is taken over."""
    visible = ["4", "5", "6", "7"]
    taken = []
    try:
        for _ in range(8):  # each claim stands for a worker process holding its slot
            taken.append(claim_gpu(visible, 2, "node1-123-4,5,6,7", lock_dir=tmp_path))
            _GPU_SLOT.clear()
        assert sorted(taken) == [0, 0, 1, 1, 2, 2, 3, 3]
        assert taken[:4] == [0, 1, 2, 3], "the first workers must take different GPUs"
        # Another job on the same node has its own slots.
        assert claim_gpu(visible, 2, "node1-999-4,5,6,7", lock_dir=tmp_path) == 0
        _GPU_SLOT.clear()
        dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True).stdout.strip()
        slots = sorted((tmp_path / f"prism-gpu-slots-{os.getuid()}").glob("node1-123-*"))
        slots[5].write_text(dead)  # slot 5 (GPU index 1) held by a process that died
        assert claim_gpu(visible, 2, "node1-123-4,5,6,7", lock_dir=tmp_path) == 1
    finally:
        _GPU_SLOT.clear()


def _fake_slurm(bin_dir: Path, sbatch_body: str) -> None:
    """``sbatch`` and ``scancel`` stand-ins on PATH."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    for name, body in (("sbatch", sbatch_body),
                       ("scancel", 'kill -TERM -- "-$1" 2>/dev/null; exit 0\n')):
        path = bin_dir / name
        path.write_text("#!/usr/bin/env bash\n" + body)
        path.chmod(path.stat().st_mode | stat.S_IEXEC)


def test_sbatch_refusal_ends_the_run_with_its_message(video_folder, tmp_path, monkeypatch,
                                                      capsys):
    _fake_slurm(tmp_path / "bin", 'echo "sbatch: error: Batch job submission failed: Invalid '
                'qos specification" >&2\nexit 1\n')
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    t0 = time.monotonic()
    code = main(["extract", str(video_folder), "--recursive", "--out", str(tmp_path / "f.zarr"),
                 "--model", TEST_MODEL, "--hop", "2", "--cluster", "slurm", "--no-progress",
                 "--slurm-directive=--qos=nonexistent", "--slurm-memory", "2GB"])
    out = capsys.readouterr().out
    assert code == 1 and time.monotonic() - t0 < 120
    assert "STOPPED: sbatch refused the worker job: sbatch: error: Batch job submission " \
           "failed: Invalid qos specification" in out, out
    assert "0 extracted" in out and "2 incomplete" in out


@pytest.mark.slow
def test_run_through_a_stand_in_sbatch_equals_one_process(video_folder, tmp_path, monkeypatch):
    """The job script dask-jobqueue writes, run by a stand-in sbatch on this machine (output
    where #SBATCH -o says): workers join, the store equals a single-process run."""
    _fake_slurm(tmp_path / "bin", textwrap.dedent("""\
        out=$(sed -n 's/^#SBATCH -o //p' "$1"); script=$(mktemp); cp "$1" "$script"
        setsid bash -c 'exec bash "$0" > "${1//%J/$$}" 2>&1 < /dev/null' "$script" \\
            "${out:-/dev/null}" > /dev/null 2>&1 < /dev/null &
        echo "Submitted batch job $!"
        """))
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    single = run_extraction([video_folder], tmp_path / "single.zarr", OPTIONS, recursive=True)
    assert single.ok
    logs = tmp_path / "logs"
    report = run_extraction(
        [video_folder], tmp_path / "slurm.zarr", OPTIONS, recursive=True, cluster="slurm",
        cluster_options={"task_frames": 16, "worker_timeout": 120, "slurm": {
            "jobs": 2, "memory": "2GB", "walltime": "00:20:00", "log_dir": str(logs),
            "directives": ["--qos=high"]}})
    assert report.ok, report.summary()
    assert sorted(report.extracted) == ["a.mp4", "sub__b.mp4"]
    with open_store(tmp_path / "single.zarr", "r") as a, \
            open_store(tmp_path / "slurm.zarr", "r") as b:
        for vid in a.video_ids():
            np.testing.assert_allclose(a.read_features(vid, KEY).values,
                                       b.read_features(vid, KEY).values, atol=1e-6, rtol=0)
    outputs = list(logs.glob("prism-extract-*.out"))
    assert outputs and any("Start worker at" in p.read_text() for p in outputs), outputs


# ---------------------------------------------------------------------------- a real Slurm
def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    """A single-node Slurm (Debian's slurmctld, slurmd, munged) of its own: private munge key
    and socket, free ports, state in a temporary folder; daemons run in the foreground and are
    stopped afterwards. The recipe of docs/extraction.md ("A single-node Slurm")."""
    import shutil
    import socket

    needed = ("sbatch", "sinfo", "scancel", "slurmctld", "slurmd", "munged")
    missing = [name for name in needed if shutil.which(name) is None]
    if missing:
        pytest.skip(f"no Slurm here ({', '.join(missing)} missing): apt-get install slurm-wlm "
                    "munge")
    if os.geteuid() != 0:
        pytest.skip("the single-node Slurm of this test runs its daemons as root")
    folder = tmp_path_factory.mktemp("slurm")
    folder.chmod(0o755)
    for sub in ("state", "spool"):
        (folder / sub).mkdir()
    key = folder / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o600)
    host = socket.gethostname().split(".")[0]
    memory_mb = int(next(line.split()[1] for line in Path("/proc/meminfo").read_text()
                         .splitlines() if line.startswith("MemTotal"))) // 1024 // 2
    conf = folder / "slurm.conf"
    conf.write_text(textwrap.dedent(f"""\
        ClusterName=prismtest
        SlurmctldHost={host}
        SlurmUser=root
        SlurmdUser=root
        SlurmctldPort={_free_port()}
        SlurmdPort={_free_port()}
        AuthType=auth/munge
        CredType=cred/munge
        AuthInfo=socket={folder}/munge.sock
        StateSaveLocation={folder}/state
        SlurmdSpoolDir={folder}/spool
        SlurmctldPidFile={folder}/slurmctld.pid
        SlurmdPidFile={folder}/slurmd.pid
        SlurmctldLogFile={folder}/slurmctld.log
        SlurmdLogFile={folder}/slurmd.log
        ProctrackType=proctrack/linuxproc
        TaskPlugin=task/none
        JobAcctGatherType=jobacct_gather/none
        AccountingStorageType=accounting_storage/none
        SelectType=select/cons_tres
        SelectTypeParameters=CR_Core_Memory
        MpiDefault=none
        ReturnToService=2
        NodeName={host} CPUs={os.cpu_count() or 1} RealMemory={memory_mb} State=UNKNOWN
        PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
        """))
    env = {**os.environ, "SLURM_CONF": str(conf)}
    log = (folder / "daemons.log").open("w")
    procs = [subprocess.Popen(
        ["munged", "--foreground", "--force", f"--socket={folder}/munge.sock",
         f"--key-file={key}", f"--pid-file={folder}/munged.pid",
         f"--log-file={folder}/munged.log", f"--seed-file={folder}/munged.seed"],
        stdout=log, stderr=log, env=env)]
    deadline = time.monotonic() + 30
    while not (folder / "munge.sock").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    procs += [subprocess.Popen([daemon, "-D", "-f", str(conf)], stdout=log, stderr=log,
                               env=env) for daemon in ("slurmctld", "slurmd")]
    try:
        deadline = time.monotonic() + 60
        state = ""
        while time.monotonic() < deadline:
            state = subprocess.run(["sinfo", "-h", "-o", "%T"], env=env, capture_output=True,
                                   text=True).stdout.strip()
            if state == "idle":
                break
            time.sleep(0.5)
        else:
            logs = "".join(p.read_text(errors="replace")[-2000:] for p in
                           sorted(folder.glob("*.log")))
            pytest.fail(f"single-node Slurm did not come up (node state {state!r}):\n{logs}")
        yield env
    finally:
        subprocess.run(["scancel", "--user", "root"], env=env, capture_output=True)
        for proc in reversed(procs):
            proc.terminate()
        for proc in reversed(procs):
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()


@pytest.mark.slow
def test_real_slurm_run_equals_one_process_and_refusals_are_reported(
        slurm, video_folder, tmp_path, monkeypatch):
    monkeypatch.setenv("SLURM_CONF", slurm["SLURM_CONF"])
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.chdir(tmp_path)
    # sbatch's own refusal (a partition that does not exist) ends the run with its message.
    report = run_extraction(
        [video_folder], tmp_path / "refused.zarr", OPTIONS, recursive=True, cluster="slurm",
        cluster_options={"worker_timeout": 60, "slurm": {"queue": "nope", "memory": "1GB"}})
    assert report.interrupted and "sbatch refused the worker job" in report.interrupted
    assert "invalid partition" in report.interrupted.lower(), report.interrupted
    single = run_extraction([video_folder], tmp_path / "single.zarr", OPTIONS, recursive=True)
    logs = tmp_path / "logs"
    report = run_extraction(
        [video_folder], tmp_path / "slurm.zarr", OPTIONS, recursive=True, cluster="slurm",
        cluster_options={"task_frames": 16, "worker_timeout": 180, "slurm": {
            "jobs": 1, "cores": 1, "memory": "1GB", "walltime": "00:10:00",
            "log_dir": str(logs)}})
    assert single.ok and report.ok, report.summary()
    with open_store(tmp_path / "single.zarr", "r") as a, \
            open_store(tmp_path / "slurm.zarr", "r") as b:
        for vid in a.video_ids():
            np.testing.assert_allclose(a.read_features(vid, KEY).values,
                                       b.read_features(vid, KEY).values, atol=1e-6, rtol=0)
    outputs = list(logs.glob("prism-extract-*.out"))
    assert outputs, "no slurm output in --slurm-log-dir"
