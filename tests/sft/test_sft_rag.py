"""RAG-context training data with the REAL index stage (MiniLM + ChromaDB): no own-answer leakage."""

from __future__ import annotations

import json

from sft_helpers import report_rows, tiny_settings, write_data, write_jsonl


def test_rag_training_with_real_index_never_shows_own_answer(tiny_model_dir, minilm, tmp_path):
    from medscribe.index import build_index
    from medscribe.settings import load_settings
    from medscribe.sft import run_sft

    write_data(tmp_path, n_train=8, n_eval=2)
    train = report_rows(8)
    corpus = [{"id": r["id"], "text": r["input"], "answer": r["target"], "task": "report", "organ": r["organ"],
               "modality": r["modality"], "split": "train"} for r in train]
    # The same case under another id (a re-exported report): its answer must not reach r0's prompt either.
    corpus.append({**corpus[0], "id": "r0-copy"})
    write_jsonl(tmp_path / "data" / "corpus.jsonl", corpus)
    base = tiny_settings(tmp_path, tiny_model_dir, rag_context=True, rag_k=2, max_steps=1,
                        max_seq_length=1024, batch_size=1)
    flags = {"paths": {**base.paths.model_dump(mode="json"), "index": str(tmp_path / "index")},
             "index": {"embedding_model": minilm, "device": "cpu"},
             "sft": base.sft.model_dump(mode="json")}
    settings = load_settings(flags=flags)
    build_index(settings, show_progress=False)

    manifest = run_sft(settings)  # opens Retriever.open(settings) itself
    assert manifest["data"]["train"]["rag_k"] == 2
    examples = json.loads((tmp_path / "sft" / "t" / "examples.json").read_text(encoding="utf-8"))
    train_examples = examples["train"][0]
    assert len(train_examples) == 8
    for row, example in zip(train, train_examples, strict=True):
        assert example["id"] == row["id"]
        assert row["id"] not in example["context_ids"] and len(example["context_ids"]) == 2
        shots = [m["content"] for m in example["prompt"][1:-1] if m["role"] == "assistant"]
        assert len(shots) == 2 and all(row["target"] not in s for s in shots)
    assert "r0-copy" not in train_examples[0]["context_ids"]
    assert manifest["data"]["train"]["own_answer_hits_dropped"] >= 1
