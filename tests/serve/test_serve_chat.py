"""medscribe chat: through piped stdin (a subprocess, the real CLI), and against medscribe serve."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def write_config(path: Path, flags: dict) -> Path:
    lines = []
    for section, values in flags.items():
        if section == "serve":
            continue
        lines.append(f"[{section}]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in values.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_chat_through_piped_stdin(serve_root, tmp_path):
    cfg = write_config(tmp_path / "chat.toml", serve_root["flags"])
    saved = tmp_path / "out" / "chat.json"
    script = "\n".join([
        "What are the symptoms of anemia?", "/history", "/k 0", "Как предотвратить мигрень?", f"/save {saved}",
        "/reset", "/history", "/bogus", "/quit", "never asked",
    ]) + "\n"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "COLUMNS": "200"}
    out = subprocess.run([sys.executable, "-c", "from medscribe.cli import app; app(prog_name='medscribe')",
                          "-c", str(cfg), "chat", "--max-new-tokens", "8"],
                         input=script, capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    text = out.stdout
    assert "similar cases: q-anemia" in text and "similar cases: none" in text  # /k 0 switched retrieval off
    assert "1. you: What are the symptoms of anemia?" in text
    assert "k = 0" in text and "saved 2 turn(s)" in text and "conversation cleared" in text
    assert "(no turns yet)" in text and "commands: /reset" in text
    assert "never asked" not in text
    turns = json.loads(saved.read_text(encoding="utf-8"))["turns"]
    assert [t["input"] for t in turns] == ["What are the symptoms of anemia?", "Как предотвратить мигрень?"]
    first, second = turns
    assert [h["id"] for h in first["retrieved"]] == ["q-anemia"] and second["retrieved"] == []
    # The second prompt carries the first turn, through the shared builder.
    from medscribe.prompts import build_chat_messages
    from medscribe.settings import load_settings

    settings = load_settings(cfg)
    history = [{"role": "user", "content": first["user"]}, {"role": "assistant", "content": first["raw"]}]
    record = {"id": None, "input": "Как предотвратить мигрень?", "task": "qa"}
    assert second["messages"] == build_chat_messages(record, "qa", settings.prompt, [], history)
    assert second["turns_in_prompt"] == 1


def test_chat_against_medscribe_serve_keeps_turns_within_the_budget(server, serve_root):
    from medscribe.serve.chat import ChatSession
    from medscribe.settings import load_settings

    flags = {**serve_root["flags"], "ask": {"backend": "openai", "base_url": server.url + "/v1",
                                            "model": "medscribe-tuned", "max_new_tokens": 6, "max_retries": 0}}
    session = ChatSession(load_settings(None, flags))
    one = session.ask("What are the symptoms of anemia?")
    two = session.ask("And how is it treated?")
    assert one["turns_in_prompt"] == 0 and two["turns_in_prompt"] == 1
    assert two["messages"][-3:-1] == [{"role": "user", "content": one["user"]},
                                      {"role": "assistant", "content": one["raw"]}]
    session.budget = len(two["user"]) + len(two["raw"])  # room for the newest turn only
    three = session.ask("Anything else?")
    assert three["turns_in_prompt"] == 1 and three["messages"][-3]["content"] == two["user"]
    session.budget = 0
    assert session.ask("Last one")["turns_in_prompt"] == 0


def test_build_chat_messages_without_history_is_the_single_turn_prompt():
    from medscribe.prompts import build_chat_messages, build_messages
    from medscribe.schemas import Hit
    from medscribe.settings import PromptSection

    hits = [Hit(id="c1", text="Киста 12 мм", answer="Киста печени.", score=0.9, metadata={"organ": "печень"})]
    record = {"input": "Очаг 5 мм", "organ": "печень"}
    prompt = PromptSection()
    assert build_chat_messages(record, "report", prompt, hits) == build_messages(record, "report", prompt, hits)
    history = [{"role": "user", "content": "u1"}, {"role": "assistant", "content": "a1"}]
    multi = build_chat_messages(record, "report", prompt, hits, history)
    single = build_messages(record, "report", prompt, hits)
    assert multi[:-1] == single[:-1] + history and multi[-1] == single[-1]
