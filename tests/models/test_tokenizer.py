"""SentencePiece tokenizer wrapper and the official text canonicalisation."""

from __future__ import annotations

import pytest
import sentencepiece as spm
import torch

from prism_science.errors import WeightsError
from prism_science.models import Tokenizer, build_model, canonicalize_text, load_model, save_model

WORDS = [
    "mouse", "grooming", "rearing", "walking", "fly", "wing", "extension", "courtship",
    "chasing", "resting", "the", "a", "on", "in", "left", "right", "cage", "arena", "animal",
    "two", "three",
]


@pytest.fixture(scope="module")
def spm_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("spm")
    corpus = folder / "corpus.txt"
    lines = [" ".join(WORDS[(i * 7 + j) % len(WORDS)] for j in range(6)) + "." for i in range(300)]
    corpus.write_text("\n".join(lines))
    spm.SentencePieceTrainer.train(
        input=str(corpus), model_prefix=str(folder / "tiny"), vocab_size=32, hard_vocab_limit=False,
        pad_id=0, unk_id=1, bos_id=-1, eos_id=2, model_type="unigram",
        minloglevel=2,
    )
    return folder / "tiny.model"


def test_canonicalize_text():
    assert canonicalize_text("Hello, World!") == "hello world."
    assert canonicalize_text("Hello,World..") == "hello world."
    assert canonicalize_text("  A Mouse   GROOMING") == "a mouse grooming."


def test_ids_paddings_and_max_length(spm_model):
    tok = Tokenizer(spm_model, max_length=8)
    assert 4 < tok.vocab_size <= 32
    ids, paddings = tok(["A mouse, grooming!", "fly " * 20])
    assert ids.shape == paddings.shape == (2, 8) and ids.dtype == torch.int64
    n = len(tok.encode("A mouse, grooming!"))
    assert tok.encode("A mouse, grooming!") == tok.encode("a mouse grooming.", canonicalize=False)
    assert paddings[0, :n].sum() == 0 and paddings[0, n:].eq(1).all()
    assert ids[0, n:].eq(0).all()
    assert paddings[1].sum() == 0  # cut to max_length


def test_bad_tokenizer_file(tmp_path):
    bad = tmp_path / "bad.model"
    bad.write_bytes(b"not a sentencepiece model")
    with pytest.raises(WeightsError, match="bad.model"):
        Tokenizer(bad)


def test_tokenizer_travels_with_the_weights_folder(tmp_path, spm_model):
    model = build_model("prism-lvt-test-p8-f4-r32")
    model.tokenizer = Tokenizer(spm_model)
    folder = save_model(model, tmp_path / "lvt")
    assert (folder / "tokenizer.model").is_file()
    loaded = load_model(folder)
    assert loaded.tokenizer is not None and loaded.tokenizer.max_length == 64
    with torch.no_grad():
        emb = loaded.encode_texts(["a fly chasing", "mouse rearing in the cage"])
        ids, paddings = loaded.tokenizer(["a fly chasing", "mouse rearing in the cage"])
        ref = model.encode_text(ids, paddings)
    assert emb.shape == (2, 32)
    torch.testing.assert_close(emb, ref)
