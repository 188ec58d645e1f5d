"""Official weights from the Hugging Face Hub: download, sha256 check, convert once, cache.

A local HTTP server on 127.0.0.1 plays the Hub (reached through ``HF_ENDPOINT``) and serves tiny
checkpoints in the official layout; the real Hub is never contacted.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import threading

import numpy as np
import pytest
import torch

from prism_science.cli.main import main
from prism_science.errors import WeightsError
from prism_science.models import build_model, hub, load_model, registry
from prism_science.models.convert import to_official
from prism_science.models.folder import BUNDLED_DIR
from prism_science.models.registry import HubFile, OfficialWeights, UrlFile

torch.set_num_threads(2)
TEST = "prism-test-p8-f4-r32"
LVT_TEST = "prism-lvt-test-p8-f4-r32"
REPO = "google/prism-test-f4r32"
LVT_REPO = "google/prism-lvt-test-f4r32"
CKPT = "flax_test_f4r32_repeated.npz"
LVT_CKPT = "flax_lvt_test_f4r32_repeated.npz"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _official_npz(model_name: str, seed: int) -> tuple[bytes, torch.nn.Module]:
    """A tiny checkpoint in the official layout (stacked layers, Flax names)."""
    torch.manual_seed(seed)
    model = build_model(model_name)
    buffer = io.BytesIO()
    np.savez(buffer, **{k: v.numpy() for k, v in to_official(model).items()})
    return buffer.getvalue(), model


class FakeHub:
    """Serves ``/<repo>/resolve/<revision>/<file>`` like the Hub (HEAD + GET), and plain files."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.requests: list[str] = []
        hub_self = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _reply(self, body: bool) -> None:
                hub_self.requests.append(f"{self.command} {self.path}")
                data = hub_self.files.get(self.path.split("?")[0])
                if data is None:
                    self.send_response(404)
                    self.send_header("X-Error-Code", "EntryNotFound")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
                self.send_header("X-Repo-Commit", COMMIT)
                self.end_headers()
                if body:
                    self.wfile.write(data)

            def do_HEAD(self) -> None:  # noqa: N802 - http.server's naming
                self._reply(body=False)

            def do_GET(self) -> None:  # noqa: N802
                self._reply(body=True)

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,),
                                       daemon=True)
        self.thread.start()

    def put(self, repo: str, filename: str, data: bytes, revision: str = "main") -> None:
        self.files[f"/{repo}/resolve/{revision}/{filename}"] = data

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_hub(tmp_path, monkeypatch):
    """A local Hub, an empty cache, and two tiny official-layout variants registered on it."""
    server = FakeHub()
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.setenv("PRISM_SCIENCE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    for var in ("PRISM_SCIENCE_WEIGHTS", "HF_HUB_OFFLINE", "PRISM_SCIENCE_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setitem(registry.OFFICIAL_WEIGHTS, TEST, OfficialWeights(
        HubFile(REPO, CKPT, "main"), official_name="prism_test", alias="prism-test"))
    tokenizer = UrlFile(f"{server.url}/t5-data/vocabs/cc_en.32000/sentencepiece.model")
    monkeypatch.setitem(registry.OFFICIAL_WEIGHTS, LVT_TEST, OfficialWeights(
        HubFile(LVT_REPO, LVT_CKPT, "main"), tokenizer=tokenizer))
    monkeypatch.setitem(registry.ALIASES, "prism-test", TEST)
    monkeypatch.setitem(registry.ALIASES, REPO, TEST)
    yield server
    server.close()


def test_official_variants_name_the_official_repositories_and_files():
    expected = {
        "videoprism-v1-base": ("google/videoprism-base-f16r288", "flax_base_f16r288_repeated.npz"),
        "videoprism-v1-large": ("google/videoprism-large-f8r288",
                                "flax_large_f8r288_repeated.npz"),
        "videoprism-lvt-v1-base": ("google/videoprism-lvt-base-f16r288",
                                   "flax_lvt_base_f16r288_repeated.npz"),
        "videoprism-lvt-v1-large": ("google/videoprism-lvt-large-f8r288",
                                    "flax_lvt_large_f8r288_repeated.npz"),
    }
    for alias, (repo, filename) in expected.items():
        name = registry.resolve_name(alias)
        assert name in registry.REGISTRY and name.startswith(alias)
        spec = registry.OFFICIAL_WEIGHTS[name]
        assert (spec.checkpoint.repo_id, spec.checkpoint.filename) == (repo, filename)
        assert registry.resolve_name(repo) == name
        assert (spec.tokenizer is not None) == ("lvt" in alias)
    assert registry.resolve_name("videoprism_public_v1_base") == "videoprism-v1-base-p18-f16-r288"
    with torch.device("meta"):  # no memory, no init
        assert build_model("videoprism-v1-base").name == "videoprism-v1-base-p18-f16-r288"


def test_download_convert_once_then_load_from_cache_without_network(fake_hub, tmp_path):
    data, reference = _official_npz(TEST, seed=3)
    fake_hub.put(REPO, CKPT, data)
    model = load_model("prism-test")  # the alias of the registered name
    folder = tmp_path / "cache" / "weights" / TEST
    meta = json.loads((folder / "config.json").read_text())
    assert meta["source"] == {"repo_id": REPO, "filename": CKPT, "revision": "main",
                              "sha256": hashlib.sha256(data).hexdigest()}
    assert model.name == TEST and model.weights_sha256 and model.tensors_sha256 == meta["sha256"]
    video = torch.rand(1, 4, 32, 32, 3, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(model(video), reference(video), atol=1e-6, rtol=0)
    # The download is deleted after conversion; its sha256 is recorded for later downloads.
    assert not (tmp_path / "cache" / "downloads" / TEST).exists()
    known = json.loads((tmp_path / "cache" / hub.KNOWN_HASHES_FILE).read_text())
    assert known[f"hf://{REPO}@main/{CKPT}"] == hashlib.sha256(data).hexdigest()
    served = len(fake_hub.requests)
    assert served >= 1
    fake_hub.close()  # no network from here on
    again = load_model(TEST)
    assert len(fake_hub.requests) == served
    assert again.weights_sha256 == model.weights_sha256
    with torch.no_grad():
        torch.testing.assert_close(again(video), model(video), atol=0, rtol=0)


def test_lvt_fetches_the_tokenizer_too(fake_hub, tmp_path):
    data, _ = _official_npz(LVT_TEST, seed=4)
    fake_hub.put(LVT_REPO, LVT_CKPT, data)
    spm = (BUNDLED_DIR / "default" / "tokenizer.model").read_bytes()
    fake_hub.files["/t5-data/vocabs/cc_en.32000/sentencepiece.model"] = spm
    model = load_model(LVT_TEST)
    assert model.tokenizer is not None
    folder = tmp_path / "cache" / "weights" / LVT_TEST
    assert (folder / "tokenizer.model").read_bytes() == spm
    meta = json.loads((folder / "config.json").read_text())
    assert meta["source"]["tokenizer"]["sha256"] == hashlib.sha256(spm).hexdigest()


def test_offline_says_which_file_to_fetch_and_the_command(fake_hub, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsError) as info:
        load_model("videoprism-lvt-v1-base")
    message = str(info.value)
    for part in ("google/videoprism-lvt-base-f16r288", "flax_lvt_base_f16r288_repeated.npz",
                 "revision main", "prism-science convert-weights",
                 "--variant videoprism-lvt-v1-base-p18-f16-r288", "--tokenizer",
                 "cc_en.32000/sentencepiece.model"):
        assert part in message, (part, message)
    assert fake_hub.requests == []


def test_failed_download_says_which_file_to_fetch(fake_hub, tmp_path):
    with pytest.raises(WeightsError) as info:
        load_model(TEST)  # the server has no such file: 404
    message = str(info.value)
    assert "could not download" in message and REPO in message and CKPT in message
    assert f"prism-science convert-weights {CKPT} --variant {TEST}" in message
    assert not (tmp_path / "cache" / "weights" / TEST).exists()


def test_sha256_mismatch_is_refused(fake_hub, tmp_path, monkeypatch):
    data, _ = _official_npz(TEST, seed=5)
    fake_hub.put(REPO, CKPT, data)
    monkeypatch.setitem(registry.OFFICIAL_WEIGHTS, TEST, OfficialWeights(
        HubFile(REPO, CKPT, "main", sha256="0" * 64)))
    with pytest.raises(WeightsError, match="sha256.*expected.*pinned"):
        load_model(TEST)
    assert not (tmp_path / "cache" / "weights" / TEST).exists()
    assert not list((tmp_path / "cache" / "downloads").rglob(CKPT))
    # Pinned right, it installs.
    monkeypatch.setitem(registry.OFFICIAL_WEIGHTS, TEST, OfficialWeights(
        HubFile(REPO, CKPT, "main", sha256=hashlib.sha256(data).hexdigest())))
    assert load_model(TEST).weights_sha256


def test_recorded_sha256_refuses_a_changed_file(fake_hub, tmp_path):
    first, _ = _official_npz(TEST, seed=6)
    fake_hub.put(REPO, CKPT, first)
    hub.fetch_official(TEST)
    second, _ = _official_npz(TEST, seed=7)
    fake_hub.put(REPO, CKPT, second)
    with pytest.raises(WeightsError, match="recorded at its first download"):
        hub.fetch_official(TEST, force=True)
    # The cached weights of the first download are still there and load.
    meta = json.loads((tmp_path / "cache" / "weights" / TEST / "config.json").read_text())
    assert meta["source"]["sha256"] == hashlib.sha256(first).hexdigest()


def test_models_command_fetches_and_shows_cached(fake_hub, capsys):
    data, _ = _official_npz(TEST, seed=8)
    fake_hub.put(REPO, CKPT, data)
    rows = _models_rows(capsys)
    assert rows[TEST] == "download" and rows["videoprism-v1-base-p18-f16-r288"] == "download"
    assert rows["prism-tiny-p16-f16-r128"] == "random"
    assert main(["models", "--fetch", "prism-test"]) == 0
    rows = _models_rows(capsys)
    assert rows[TEST] == "cached"
    assert main(["models", "--fetch", LVT_TEST]) == 1  # nothing served: an error, exit 1
    assert "could not download" in capsys.readouterr().err


def _models_rows(capsys) -> dict[str, str]:
    assert main(["models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    return {line.split()[0]: line.split()[-1] for line in lines[1:] if "cache:" not in line}


def test_extract_by_alias_downloads_once_and_records_the_identity(fake_hub, tmp_path):
    from prism_science.store import open_store
    from tests.store.conftest import write_video

    data, _ = _official_npz(TEST, seed=9)
    fake_hub.put(REPO, CKPT, data)
    video = write_video(tmp_path / "v.mp4", 12)
    out = tmp_path / "f.zarr"
    args = ["--model", "prism-test", "--hop", "4", "--no-progress"]
    assert main(["extract", str(video), "--out", str(out), *args]) == 0
    fake_hub.close()
    identity = load_model(TEST).weights_sha256
    with open_store(out, "r") as store:
        provenance = store.read_features("v.mp4", f"{TEST}/mean").provenance
    assert provenance["model_name"] == TEST and provenance["weights_sha256"] == identity
