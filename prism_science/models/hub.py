"""The official VideoPrism weights, one call away: download from the Hugging Face Hub, check,
convert once into the cache, load from the cache afterwards.

``fetch_official("videoprism-v1-base")`` downloads ``flax_base_f16r288_repeated.npz`` from
``google/videoprism-base-f16r288`` (the repository and file the official
``load_pretrained_weights`` uses) at the pinned revision with ``huggingface_hub``, checks its
sha256, converts it (:func:`prism_science.models.convert.convert_checkpoint`) into
``user_weights_dir()/<registered name>/`` and deletes the download. The LvT variants also fetch
the official SentencePiece model (``c4_en``) into the folder. :func:`load_model` calls it for an
official name whose weights are not cached yet.

sha256: a pinned value in :data:`~prism_science.models.registry.OFFICIAL_WEIGHTS` is checked;
where none is pinned, the first download's sha256 is recorded in
``cache_dir()/known_sha256.json`` and every later download is checked against it. A mismatch
deletes the file and refuses it.

Network: ``HF_ENDPOINT`` (read at each call) selects the Hub; ``HF_HUB_OFFLINE=1`` or
``PRISM_SCIENCE_OFFLINE=1`` forbid downloads. A failed or forbidden download raises
:class:`~prism_science.errors.WeightsError` naming the repository, file and revision to fetch by
hand and the ``prism-science convert-weights`` command that installs it.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from prism_science.errors import WeightsError
from prism_science.models.convert import convert_checkpoint
from prism_science.models.folder import (
    CONFIG_FILE,
    TOKENIZER_FILE,
    cache_dir,
    sha256_file,
    user_weights_dir,
)
from prism_science.models.registry import (
    OFFICIAL_WEIGHTS,
    HubFile,
    OfficialWeights,
    UrlFile,
    resolve_name,
)

logger = logging.getLogger(__name__)

KNOWN_HASHES_FILE = "known_sha256.json"
DEFAULT_ENDPOINT = "https://huggingface.co"
_TRUE = ("1", "true", "yes", "on")


class _DownloadFailed(Exception):
    """Internal: a download did not complete (turned into a WeightsError with instructions)."""


def is_official(name: str) -> bool:
    """Whether ``name`` (or the variant it is an alias of) has official weights on the Hub."""
    return resolve_name(name) in OFFICIAL_WEIGHTS


def official_weights(name: str) -> OfficialWeights:
    """The Hub source of an official variant (aliases accepted)."""
    try:
        return OFFICIAL_WEIGHTS[resolve_name(name)]
    except KeyError:
        aliases = ", ".join(w.alias for w in OFFICIAL_WEIGHTS.values())
        raise WeightsError(
            f"{name!r} has no official weights to download; official variants: "
            f"{', '.join(OFFICIAL_WEIGHTS)} (aliases {aliases})"
        ) from None


def cached_folder(name: str) -> Path:
    """Where the converted weights of an official variant are (or will be) cached."""
    return user_weights_dir() / resolve_name(name)


def is_cached(name: str) -> bool:
    """Whether the converted weights of an official variant are in the cache."""
    return (cached_folder(name) / CONFIG_FILE).is_file()


def endpoint() -> str:
    """The Hub address: ``$HF_ENDPOINT`` or https://huggingface.co."""
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` or ``PRISM_SCIENCE_OFFLINE`` forbid downloads."""
    return any(os.environ.get(var, "").strip().lower() in _TRUE
               for var in ("HF_HUB_OFFLINE", "PRISM_SCIENCE_OFFLINE"))


def hub_url(file: HubFile) -> str:
    """The download address of a Hub file at its revision."""
    return f"{endpoint()}/{file.repo_id}/resolve/{file.revision}/{file.filename}"


def fetch_instructions(name: str) -> str:
    """What to download by hand and the command that installs it, for an official variant."""
    name = resolve_name(name)
    spec = official_weights(name)
    ckpt = spec.checkpoint
    text = (
        f"download {ckpt.filename} from the Hugging Face Hub repository {ckpt.repo_id} at "
        f"revision {ckpt.revision} ({hub_url(ckpt)}, or `hf download {ckpt.repo_id} "
        f"{ckpt.filename} --revision {ckpt.revision}`)"
    )
    command = (f"prism-science convert-weights {ckpt.filename} --variant {name} "
               f"--out {cached_folder(name)}")
    if spec.tokenizer is not None:
        text += f" and the tokenizer {spec.tokenizer.url}"
        command += f" --tokenizer {spec.tokenizer.filename}"
    return f"{text}, then run: {command}"


# -- sha256 ------------------------------------------------------------------------------------
def _hash_key(file: HubFile | UrlFile) -> str:
    if isinstance(file, HubFile):
        return f"hf://{file.repo_id}@{file.revision}/{file.filename}"
    return file.url


def known_hashes() -> dict[str, str]:
    """sha256 recorded at first downloads: ``cache_dir()/known_sha256.json`` (source -> hex)."""
    path = cache_dir() / KNOWN_HASHES_FILE
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WeightsError(
            f"{path} is not valid JSON ({exc}); it records the sha256 of first downloads: "
            "repair it or delete it (the next download is then recorded anew)"
        ) from exc
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def _record_hash(key: str, digest: str) -> None:
    path = cache_dir() / KNOWN_HASHES_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    data = known_hashes()
    data[key] = digest
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)


def check_download(path: Path, file: HubFile | UrlFile, name: str) -> str:
    """Check a downloaded file's sha256 against the pinned or the recorded value.

    With neither, the sha256 is recorded (and checked on later downloads). A mismatch deletes
    the file and raises :class:`WeightsError`.

    Returns
    -------
    str
        The file's sha256.
    """
    digest = sha256_file(path)
    key = _hash_key(file)
    recorded = known_hashes().get(key)
    expected, where = ((file.sha256, "pinned in prism_science.models.registry") if file.sha256
                       else (recorded, f"recorded at its first download in "
                                       f"{cache_dir() / KNOWN_HASHES_FILE}"))
    if expected and digest != expected:
        path.unlink(missing_ok=True)
        raise WeightsError(
            f"downloaded {path.name} for {name} ({key}) has sha256 {digest} but {expected} is "
            f"expected ({where}); the file was deleted. The download is corrupt or the "
            "repository changed at that revision: try again, and if it persists report it "
            "(delete the recorded value only if you trust the new file)"
        )
    if not expected:
        _record_hash(key, digest)
        logger.warning("%s: no sha256 pinned for %s; recorded %s, later downloads are checked "
                       "against it", name, key, digest)
    return digest


# -- downloads ---------------------------------------------------------------------------------
def _download_hub(file: HubFile, folder: Path) -> Path:
    from huggingface_hub import hf_hub_download

    try:
        path = hf_hub_download(repo_id=file.repo_id, filename=file.filename,
                               revision=file.revision, local_dir=folder, endpoint=endpoint())
    except Exception as exc:  # noqa: BLE001 - any failure: the user gets instructions
        raise _DownloadFailed(f"{hub_url(file)}: {type(exc).__name__}: {exc}") from exc
    return Path(path)


def _download_url(file: UrlFile, folder: Path, timeout: float = 60.0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / file.filename
    part = path.with_name(path.name + ".part")
    try:
        with urllib.request.urlopen(file.url, timeout=timeout) as response, \
                open(part, "wb") as out:
            shutil.copyfileobj(response, out, 1 << 20)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        part.unlink(missing_ok=True)
        raise _DownloadFailed(f"{file.url}: {exc}") from exc
    os.replace(part, path)
    return path


def fetch_official(name: str, force: bool = False) -> Path:
    """Download, check and convert an official variant's weights into the cache, once.

    Parameters
    ----------
    name : str
        An official registered name or alias (``"videoprism-v1-base"``,
        ``"videoprism_public_v1_base"``, ``"google/videoprism-base-f16r288"``).
    force : bool
        Download and convert again even when the cache holds the weights.

    Returns
    -------
    Path
        The cached weights folder (``user_weights_dir()/<registered name>``).

    Raises
    ------
    WeightsError
        Offline, a failed download (naming repository, file, revision and the
        ``convert-weights`` command to run), a sha256 mismatch, or a checkpoint that does not
        match the variant.
    """
    name = resolve_name(name)
    spec = official_weights(name)
    final = cached_folder(name)
    if (final / CONFIG_FILE).is_file() and not force:
        return final
    if offline():
        raise WeightsError(
            f"the weights of {name} are not in the cache ({final}) and downloads are off "
            f"(HF_HUB_OFFLINE / PRISM_SCIENCE_OFFLINE): {fetch_instructions(name)}"
        )
    downloads = cache_dir() / "downloads" / name
    logger.info("downloading %s for %s from %s", spec.checkpoint.filename, name, endpoint())
    try:
        checkpoint = _download_hub(spec.checkpoint, downloads)
        tokenizer = (_download_url(spec.tokenizer, downloads)
                     if spec.tokenizer is not None else None)
    except _DownloadFailed as exc:
        raise WeightsError(
            f"could not download the weights of {name} ({exc}). To install them by hand, "
            f"{fetch_instructions(name)}"
        ) from exc
    source: dict[str, Any] = {
        "repo_id": spec.checkpoint.repo_id,
        "filename": spec.checkpoint.filename,
        "revision": spec.checkpoint.revision,
        "sha256": check_download(checkpoint, spec.checkpoint, name),
    }
    if tokenizer is not None and spec.tokenizer is not None:
        source["tokenizer"] = {"url": spec.tokenizer.url,
                               "sha256": check_download(tokenizer, spec.tokenizer, name)}
    # Convert beside the final folder, then move it in place: a crash or a concurrent fetch
    # never leaves a half-written folder under the final name.
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        convert_checkpoint(checkpoint, tmp, variant=name, name=name, source=source)
        if tokenizer is not None:
            shutil.copyfile(tokenizer, tmp / TOKENIZER_FILE)
        if final.exists():
            shutil.rmtree(final)
        os.rename(tmp, final)
    except OSError as exc:
        if not (final / CONFIG_FILE).is_file():
            raise WeightsError(f"could not write the converted weights to {final} ({exc}); "
                               "check that the cache folder is writable (PRISM_SCIENCE_CACHE)"
                               ) from exc
        logger.info("%s was cached by another process meanwhile", name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(downloads, ignore_errors=True)
    logger.info("converted %s into %s", name, final)
    return final
