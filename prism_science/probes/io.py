"""Saving and loading probes: ``probe.safetensors`` (torch weights) + ``probe.json`` (the rest).

Nothing is pickled. ``probe.json`` holds the probe kind and hyper-parameters, ``classes_``,
thresholds, skipped behaviors, the features' provenance (model name, weights sha256, token mode,
window parameters, feature key), bout post-processing settings, and the sha256 of the weights
file, which :func:`load_probe` verifies.

Saving is atomic: both files are written into a temporary folder beside the target, flushed to
disk, and the folder is then swapped with the target (one atomic exchange on Linux; elsewhere two
renames, and :func:`load_probe` puts the old folder back if a kill fell between them). A kill
at any moment leaves the previous probe or the new one, never a mix or nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.torch import load_file, save_file
from sklearn.utils.validation import check_is_fitted

from prism_science.errors import ProbeError
from prism_science.probes.attention import AttentionProbe
from prism_science.probes.base import BaseProbe
from prism_science.probes.linear import LinearProbe
from prism_science.probes.map import MAPProbe
from prism_science.probes.mlp import MLPProbe
from prism_science.probes.prompt import PromptProbe
from prism_science.probes.temporal import TemporalProbe

logger = logging.getLogger(__name__)

FORMAT_NAME = "prism-science-probe"
FORMAT_VERSION = 1
WEIGHTS_FILE = "probe.safetensors"
META_FILE = "probe.json"

PROBE_KINDS: dict[str, type[BaseProbe]] = {
    "linear": LinearProbe,
    "mlp": MLPProbe,
    "attention": AttentionProbe,
    "temporal": TemporalProbe,
    "prompt": PromptProbe,
    "map": MAPProbe,
}


def make_probe(kind: str, **params: Any) -> BaseProbe:
    """A new, unfitted probe of ``kind`` (``linear``, ``mlp``, ``attention``, ``temporal``)."""
    if kind not in PROBE_KINDS:
        raise ProbeError(f"unknown probe kind {kind!r}; expected one of {sorted(PROBE_KINDS)}.")
    return PROBE_KINDS[kind](**params)


def _kind_of(probe: BaseProbe) -> str:
    for kind, cls in PROBE_KINDS.items():
        if type(probe) is cls:
            return kind
    raise ProbeError(
        f"cannot save a {type(probe).__name__}: expected a probe of kind {sorted(PROBE_KINDS)}."
    )


def _json_params(probe: BaseProbe) -> dict[str, Any]:
    params = {}
    for name, value in probe.get_params(deep=False).items():
        if isinstance(value, np.random.RandomState):
            value = None
        elif isinstance(value, tuple):
            value = list(value)
        elif isinstance(value, dict):  # class_weight: keys may be ints
            value = {"__pairs__": [[_plain(k), float(v)] for k, v in value.items()]}
        elif isinstance(value, np.generic):
            value = value.item()
        params[name] = value
    return params


def _restore_params(kind: str, params: dict[str, Any]) -> dict[str, Any]:
    restored = {}
    for name, value in params.items():
        if isinstance(value, dict) and "__pairs__" in value:
            value = dict(value["__pairs__"])
        elif isinstance(value, list) and name == "hidden_sizes":
            value = tuple(value)
        restored[name] = value
    return restored


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_probe(
    probe: BaseProbe, directory: str | Path, postprocess: dict[str, int] | None = None
) -> Path:
    """Write a fitted probe to ``directory`` (created if needed), atomically.

    The files are written into a temporary folder beside ``directory`` and swapped into place
    once complete; other files of an existing ``directory`` (``validation.json``...) are carried
    over. A kill at any moment leaves the old probe or the new one loadable.

    Parameters
    ----------
    probe : BaseProbe
        A fitted probe.
    directory : str or Path
        Output folder; receives ``probe.safetensors`` and ``probe.json``.
    postprocess : dict, optional
        Bout post-processing settings to apply at prediction (``{"min_bout": int,
        "max_gap": int}``); defaults to the probe's ``postprocess_`` attribute if set.

    Returns
    -------
    Path
        The folder.

    Raises
    ------
    ProbeError
        ``directory`` is a file, or the probe is not of a known kind.
    """
    check_is_fitted(probe, "module_")
    kind = _kind_of(probe)
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise ProbeError(f"{directory} is a file; a probe is saved as a folder: give a folder "
                         "path")
    try:
        directory.parent.mkdir(parents=True, exist_ok=True)
        _recover(directory)
        for stale in directory.parent.glob(f".{directory.name}.saving-*"):
            shutil.rmtree(stale, ignore_errors=True)  # left by a killed save: never complete
        tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.saving-", dir=directory.parent))
    except OSError as exc:
        raise ProbeError(f"{directory}: cannot save the probe there ({exc.strerror or exc}); "
                         "choose a folder on a writable disk with free space") from exc
    try:
        state = {k: v.detach().contiguous().clone() for k, v in probe.module_.state_dict().items()}
        weights_path = tmp / WEIGHTS_FILE
        save_file(state, str(weights_path), metadata={"format": FORMAT_NAME})
        _fsync(weights_path)
        meta = _meta(probe, kind, postprocess, _sha256(weights_path))
        _write_file(tmp / META_FILE, json.dumps(meta, indent=2, default=_plain).encode())
        if directory.is_dir():
            _carry_over(directory, tmp)
        _fsync(tmp)
        _swap_into_place(tmp, directory)
    except OSError as exc:
        raise ProbeError(f"{directory}: saving the probe failed ({exc.strerror or exc}); the "
                         "probe that was there (if any) is unchanged: free space or choose "
                         "another folder") from exc
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    logger.info("saved %s probe to %s", kind, directory)
    return directory


def _meta(probe: BaseProbe, kind: str, postprocess: dict[str, int] | None,
          weights_sha256: str) -> dict[str, Any]:
    classes = probe.classes_
    return {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "class": type(probe).__name__,
        "params": _json_params(probe),
        "classes": [_plain(c) for c in classes.tolist()],
        "classes_dtype": classes.dtype.str,
        "multilabel": bool(probe.multilabel_),
        "behavior_names": [str(c) for c in classes.tolist()],
        "n_features_in": int(probe.n_features_in_),
        "thresholds": None if probe.thresholds_ is None else [float(t) for t in probe.thresholds_],
        "skipped_classes": [_plain(c) for c in probe.skipped_classes_],
        "feature_provenance": getattr(probe, "feature_provenance_", None),
        "postprocess": postprocess if postprocess is not None else getattr(
            probe, "postprocess_", {"min_bout": 1, "max_gap": 0}
        ),
        "training": {"n_epochs": int(probe.n_epochs_), "best_loss": float(probe.best_loss_)},
        "weights_file": WEIGHTS_FILE,
        "weights_sha256": weights_sha256,
    }


# --------------------------------------------------------------------------- atomic folder swap
# Every change to the file system goes through these few functions (tests kill the process
# before each one to check that a probe is always loadable).
def _write_file(path: Path, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _fsync(path: Path) -> None:
    """Flush a file, or a folder's entries, to disk (folders: POSIX only)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # Windows cannot open a folder
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _carry_over(old: Path, new: Path) -> None:
    """Copy the files of the old probe folder that the new probe does not replace."""
    for item in old.iterdir():
        if item.name in (WEIGHTS_FILE, META_FILE) or (new / item.name).exists():
            continue
        if item.is_dir():
            shutil.copytree(item, new / item.name, symlinks=True)
        else:
            shutil.copy2(item, new / item.name, follow_symlinks=False)


def _rename(source: Path, target: Path) -> None:
    os.rename(source, target)


def _exchange_linux(a: Path, b: Path) -> bool:
    """Swap two folders in one atomic step (Linux renameat2 RENAME_EXCHANGE); False when the
    system or file system cannot."""
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return False
    libc = ctypes.CDLL(libc_name, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        return False
    at_fdcwd, rename_exchange = -100, 2
    result = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange)
    if result == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(b))


_exchange = _exchange_linux if sys.platform.startswith("linux") else None
"""Atomic swap of two folders, or None where the system has none (two renames then)."""


def _old_name(directory: Path) -> Path:
    return directory.with_name(f".{directory.name}.old-{os.getpid()}")


def _swap_into_place(tmp: Path, directory: Path) -> None:
    """Put the complete folder ``tmp`` at ``directory``; the old folder is removed after."""
    if not directory.exists():
        _rename(tmp, directory)
    elif _exchange is not None and _exchange(tmp, directory):
        shutil.rmtree(tmp, ignore_errors=True)  # tmp now holds the old probe
    else:
        old = _old_name(directory)
        _rename(directory, old)
        _rename(tmp, directory)  # a kill before this: load_probe / save_probe restore `old`
        shutil.rmtree(old, ignore_errors=True)
    _fsync(directory.parent)


def _recover(directory: Path) -> None:
    """Finish a swap that a kill interrupted: when ``directory`` has no probe but a complete
    old copy of it lies beside it, put that copy back; drop old copies otherwise."""
    olds = sorted(directory.parent.glob(f".{directory.name}.old-*"),
                  key=lambda p: p.stat().st_mtime, reverse=True)
    if not olds:
        return
    if not (directory / META_FILE).is_file():
        good = next((o for o in olds if (o / META_FILE).is_file()), None)
        if good is not None:
            if directory.exists():
                shutil.rmtree(directory)
            _rename(good, directory)
            logger.warning("%s: a save was interrupted; restored the previous probe", directory)
    for old in directory.parent.glob(f".{directory.name}.old-*"):
        shutil.rmtree(old, ignore_errors=True)


def load_probe(directory: str | Path) -> BaseProbe:
    """Read a probe written by :func:`save_probe`.

    Parameters
    ----------
    directory : str or Path
        Folder with ``probe.json`` and ``probe.safetensors``.

    Returns
    -------
    BaseProbe
        The fitted probe (``feature_provenance_`` and ``postprocess_`` restored).

    Raises
    ------
    ProbeError
        When a file is missing, from another format, or the weights do not match their sha256.
    """
    directory = Path(directory)
    meta_path = directory / META_FILE
    if not meta_path.is_file() and directory.parent.is_dir():
        try:
            _recover(directory)
        except OSError as exc:  # a read-only folder: load what can be loaded
            logger.debug("%s: cannot finish an interrupted save: %s", directory, exc)
    if not meta_path.is_file():
        raise ProbeError(
            f"{meta_path} not found: {directory} is not a probe folder; train one with "
            "`prism-science probe train ... --out DIR`."
        )
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ProbeError(f"{meta_path} is not valid JSON ({exc}); re-save the probe.") from exc
    if not isinstance(meta, dict):
        raise ProbeError(f"{meta_path}: expected a JSON object, found {type(meta).__name__}; "
                         "re-save the probe.")
    version = meta.get("format_version", 0)
    if meta.get("format") != FORMAT_NAME or not isinstance(version, int) \
            or version > FORMAT_VERSION:
        raise ProbeError(
            f"{meta_path}: field 'format' is {meta.get('format')!r} version "
            f"{meta.get('format_version')!r}, expected {FORMAT_NAME!r} <= {FORMAT_VERSION}; "
            "upgrade prism-science or retrain the probe."
        )
    weights_file = meta.get("weights_file", WEIGHTS_FILE)
    if not isinstance(weights_file, str) or Path(weights_file).name != weights_file \
            or weights_file in ("", ".", ".."):
        raise ProbeError(f"{meta_path}: field 'weights_file' is {weights_file!r}, expected a file "
                         f"name in the probe folder ({WEIGHTS_FILE}); re-save the probe.")
    weights_path = directory / weights_file
    if not weights_path.is_file():
        raise ProbeError(f"{weights_path} not found: the probe folder is incomplete; re-save it.")
    found_sha = _sha256(weights_path)
    if found_sha != meta.get("weights_sha256"):
        raise ProbeError(
            f"{weights_path}: sha256 {found_sha[:12]} differs from {meta_path} "
            f"({str(meta.get('weights_sha256'))[:12]}): the weights are corrupt or from another "
            "probe; re-save the probe."
        )
    probe = _probe_from_meta(meta, meta_path)
    try:
        module = probe._build_module(probe.n_features_in_, len(probe.classes_))
        module.load_state_dict(load_file(str(weights_path)), strict=True)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise ProbeError(
            f"{weights_path} does not fit a {meta['kind']} probe with the parameters in "
            f"{meta_path}: "
            f"{exc}. Re-save the probe."
        ) from exc
    module.eval()
    probe.module_ = module
    return probe


def _probe_from_meta(meta: dict[str, Any], meta_path: Path) -> BaseProbe:
    """The unfitted-module probe described by ``probe.json``; ProbeError naming the field that
    is missing or of the wrong type (a file edited by hand, or damaged)."""
    kind = meta.get("kind")
    if kind not in PROBE_KINDS:
        raise ProbeError(f"{meta_path}: field 'kind' is {kind!r}, expected one of "
                         f"{sorted(PROBE_KINDS)}; re-save the probe (or restore the file).")
    params = meta.get("params")
    if not isinstance(params, dict):
        raise ProbeError(f"{meta_path}: field 'params' is missing or not an object; re-save the "
                         "probe.")
    try:
        probe = make_probe(kind, **_restore_params(kind, params))
    except TypeError as exc:
        cls = PROBE_KINDS[kind]
        raise ProbeError(
            f"{meta_path}: field 'kind' is {kind!r} but field 'params' holds parameters that "
            f"{cls.__name__} does not take ({exc}); the file was edited or belongs to another "
            "probe kind: restore 'kind' (its 'class' field says "
            f"{meta.get('class')!r}) or retrain the probe.") from exc
    field = "classes"
    try:
        probe.classes_ = np.asarray(meta["classes"], dtype=np.dtype(meta["classes_dtype"]))
        field = "multilabel"
        probe.multilabel_ = bool(meta["multilabel"])
        field = "n_features_in"
        probe.n_features_in_ = int(meta["n_features_in"])
        field = "thresholds"
        probe.thresholds_ = None if meta["thresholds"] is None else \
            np.asarray(meta["thresholds"], dtype=np.float64)
        field = "skipped_classes"
        probe.skipped_classes_ = list(meta["skipped_classes"])
        field = "training"
        probe.n_epochs_ = probe.n_iter_ = int(meta["training"]["n_epochs"])
        probe.best_loss_ = float(meta["training"]["best_loss"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ProbeError(f"{meta_path}: field {field!r} is missing or of the wrong type "
                         f"({type(exc).__name__}: {exc}); re-save the probe.") from exc
    probe.feature_provenance_ = meta.get("feature_provenance")
    if not isinstance(probe.feature_provenance_, dict) or not probe.feature_provenance_:
        # Nothing can then tell another model's features from the ones it was trained on.
        logger.warning(
            "%s: field 'feature_provenance' is missing or empty, so nothing checks that the "
            "features this probe is applied to come from the model, weights and token mode it "
            "was trained on; predictions on another model's features are meaningless. Retrain "
            "the probe (`prism-science probe train`) to record them.", meta_path)
        probe.feature_provenance_ = None
    postprocess = meta.get("postprocess")
    probe.postprocess_ = postprocess if isinstance(postprocess, dict) else \
        {"min_bout": 1, "max_gap": 0}
    return probe
