"""The bundled default encoder: its model card names the files' checksums, and it loads."""

from __future__ import annotations

import hashlib
import json
import re

from tests.conftest import REPO_ROOT

DEFAULT = REPO_ROOT / "prism_science" / "weights" / "default"


def test_model_card_checksums_match_the_shipped_files():
    card = (DEFAULT / "MODEL_CARD.md").read_text()
    listed = dict(re.findall(r"\* `([\w.]+)` ([0-9a-f]{64})", card))
    assert set(listed) == {"model.safetensors", "tokenizer.model"}, listed
    for name, digest in listed.items():
        found = hashlib.sha256((DEFAULT / name).read_bytes()).hexdigest()
        assert found == digest, f"{name} changed: update MODEL_CARD.md ({found})"
    config = json.loads((DEFAULT / "config.json").read_text())
    assert config["sha256"] == listed["model.safetensors"]
    assert (DEFAULT / "model.safetensors").stat().st_size < 25 * 2**20


def test_default_model_loads_and_answers_text_queries():
    from prism_science.models import load_model

    model = load_model(DEFAULT)
    assert model.tokenizer is not None
    emb = model.encode_texts(["a small white mouse walks"])
    assert emb.shape == (1, model.model_dim)


def test_model_card_names_the_weights_identity():
    from prism_science.models import load_model

    card = (DEFAULT / "MODEL_CARD.md").read_text()
    identity = re.search(r"Weights identity.*?`([0-9a-f]{64})`", card, re.S).group(1)
    assert load_model(DEFAULT).weights_sha256 == identity, "update MODEL_CARD.md"
