"""medscribe.fingerprint: the shared hashes a rerun compares."""

from __future__ import annotations

import os

from medscribe import fingerprint as fp


def test_public_url_drops_credentials_query_and_fragment():
    assert fp.public_url("https://bob:pw@host.example:8443/v1?key=sk-1#x") == "https://host.example:8443/v1"
    assert fp.public_url("http://127.0.0.1:8000/v1") == "http://127.0.0.1:8000/v1"
    assert fp.public_url(None) is None


def test_adapter_hash_follows_content_not_size_or_mtime(tmp_path):
    (tmp_path / "adapter_config.json").write_text('{"r": 4}', encoding="utf-8")
    weights = tmp_path / "adapter_model.safetensors"
    weights.write_bytes(b"A" * 16)
    first = fp.adapter_hash(tmp_path)
    os.utime(weights, ns=(1, 1))
    assert fp.adapter_hash(tmp_path) == first  # touching is not retraining
    weights.write_bytes(b"B" * 16)
    assert fp.adapter_hash(tmp_path) != first
    assert fp.adapter_hash(None) is None
    assert fp.adapter_hash(tmp_path / "missing") == fp.short_hash(f"missing:{tmp_path / 'missing'}")


def test_model_files_hash_sees_weights_and_tokenizer_not_readme(tmp_path):
    (tmp_path / "config.json").write_text("{}", encoding="utf-8")
    (tmp_path / "model.safetensors").write_bytes(b"\0" * 8)
    first = fp.model_files_hash(str(tmp_path))
    (tmp_path / "README.md").write_text("notes", encoding="utf-8")
    assert fp.model_files_hash(str(tmp_path)) == first
    (tmp_path / "tokenizer.json").write_text("{}", encoding="utf-8")
    second = fp.model_files_hash(str(tmp_path))
    assert second != first
    os.utime(tmp_path / "model.safetensors", ns=(5, 5))  # a replaced weight file has another mtime
    assert fp.model_files_hash(str(tmp_path)) != second
    assert fp.model_files_hash("no/such-model") == fp.short_hash("missing:no/such-model")


def test_changes_and_their_description():
    old = fp.make({"adapter": "3fa2c1d0aaaaaaaa", "k": 3, "gone": 1})
    new = fp.make({"adapter": "91bc77e2bbbbbbbb", "k": 3, "added": True})
    assert old["digest"] != new["digest"] and len(old["digest"]) == 16
    diff = fp.changes(old, new)
    assert diff == [("adapter", "3fa2c1d0aaaaaaaa", "91bc77e2bbbbbbbb"), ("added", None, True), ("gone", 1, None)]
    text = fp.describe_changes(diff[:1], {"adapter": "another adapter"})
    assert text == "another adapter (adapter: 3fa2c1d0... -> 91bc77e2...)"
    assert fp.changes(old, fp.make(dict(old["parts"]))) == []
