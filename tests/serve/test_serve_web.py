"""The web page at /: offline (no external resource), the comparison of a real eval folder, and both views in
headless Chromium (Debian's `chromium`; skipped when it is not installed)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import httpx
import pytest
from conftest import start_server

ROWS = [
    ("r1", "Киста 12 мм в S7", "Киста печени.", "печень", "Киста печени.", "Образование печени."),
    ("r2", "Очаг 5 мм в лобной доле", "Очаговые изменения.", "головной мозг", "Норма.", "Очаговые изменения."),
    ("r3", "Консолидация в нижней доле", "Пневмония.", "лёгкие", "Пневмония справа.", "Пневмония."),
]


@pytest.fixture(scope="module")
def eval_dir(tmp_path_factory):
    """Two ask-like runs scored by the real `medscribe eval` (fast metrics only)."""
    from medscribe.evaluate import run_eval
    from medscribe.settings import load_settings

    root = tmp_path_factory.mktemp("eval")
    runs = []
    for name, column in (("base-rag", 4), ("tuned-rag", 5)):
        folder = root / "ask" / name
        folder.mkdir(parents=True)
        rows = [{"id": r[0], "task": "report", "input": r[1], "reference": r[2], "organ": r[3],
                 "prediction": r[column], "parse_ok": True} for r in ROWS]
        (folder / "results.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                                              encoding="utf-8")
        runs.append(folder)
    settings = load_settings(None, {"paths": {"eval": str(root / "eval")},
                                    "eval": {"metrics": ["exact_match", "token_f1"], "primary_metric": "token_f1",
                                             "group_by": ["organ"], "bootstrap_samples": 10,
                                             "report_formats": ["md"]}})
    run_eval(settings, runs, name="cmp")
    return root / "eval" / "cmp"


@pytest.fixture(scope="module")
def web_server(serve_root, eval_dir):
    with start_server(serve_root["flags"], eval_dir=str(eval_dir)) as srv:
        yield srv


def test_page_is_self_contained(web_server):
    html = httpx.get(web_server.url + "/").text
    assert "<title>medscribe</title>" in html
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)  # no CDN, no web font
    assert "@import" not in html and "url(" not in html


def test_comparison_endpoint(web_server):
    data = httpx.get(web_server.url + "/ui/comparison").json()
    assert data["runs"] == ["base-rag", "tuned-rag"] and data["primary_metric"] == "token_f1"
    assert data["groups"] == ["organ"]
    by_id = {row["id"]: row for row in data["rows"]}
    assert by_id["r2"]["input"] == "Очаг 5 мм в лобной доле" and by_id["r2"]["groups"] == {"organ": "головной мозг"}
    assert by_id["r2"]["answers"]["tuned-rag"] == {"prediction": "Очаговые изменения.", "score": 1.0}
    assert by_id["r2"]["answers"]["base-rag"]["score"] == 0.0


def test_comparison_needs_an_eval_dir(server):
    response = httpx.get(server.url + "/ui/comparison")
    assert response.status_code == 404 and "--eval" in response.json()["error"]["message"]


def chromium(*args: str) -> str:
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    out = subprocess.run([binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                          "--virtual-time-budget=15000", *args], capture_output=True, text=True, timeout=120)
    return out.stdout


def test_browser_renders_the_comparison(web_server):
    dom = chromium("--dump-dom", web_server.url + "/#compare")
    assert "3 of 3 rows" in dom
    assert "Очаг 5 мм в лобной доле" in dom and "Образование печени." in dom  # finding + each run's answer
    assert "cmp · token_f1: base-rag" in dom


def test_browser_chat_shows_the_retrieved_cases(web_server):
    dom = chromium("--dump-dom", web_server.url + "/?q=What%20are%20the%20symptoms%20of%20anemia%3F")
    assert "similar cases" in dom and "q-anemia" in dom  # medscribe-rag answered, with its retrieved case
    assert "What are the symptoms of anemia?" in dom
