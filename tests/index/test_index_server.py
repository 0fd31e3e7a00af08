"""The HttpClient path against a real `chroma run` server on a free 127.0.0.1 port (stopped at teardown)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from medscribe.errors import RuntimeFailure, UsageError
from medscribe.index import Retriever, build_index

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def chroma_server(tmp_path_factory):
    chroma = shutil.which("chroma", path=str(Path(sys.executable).parent)) or shutil.which("chroma")
    if chroma is None:
        pytest.fail("the `chroma` CLI (shipped with chromadb) is not installed")
    port = _free_port()
    data = tmp_path_factory.mktemp("chroma-server")
    log = open(data / "server.log", "wb")
    env = {**os.environ, "ANONYMIZED_TELEMETRY": "False"}
    proc = subprocess.Popen(
        [chroma, "run", "--path", str(data / "db"), "--host", "127.0.0.1", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"{url}/api/v2/heartbeat", timeout=1):
                break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"chroma server did not start: {(data / 'server.log').read_text()[-500:]}")
            time.sleep(0.2)
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


def test_build_and_query_through_http_client(make_settings, corpus, chroma_server):
    settings = make_settings(server_url=chroma_server, collection="server-test")
    report = build_index(settings, show_progress=False)
    assert (report.added, report.entries) == (7, 7)
    assert report.manifest["location"] == chroma_server
    assert build_index(settings, show_progress=False).unchanged == 7  # incremental over HTTP too
    r = Retriever.open(settings)
    hits = r.search("What causes asthma attacks?", k=2, exclude_ids={"q-anemia"})
    assert hits[0].id == "q-asthma" and hits[0].score == pytest.approx(1.0, abs=1e-3)
    hybrid = Retriever.open(make_settings(server_url=chroma_server, collection="server-test", hybrid=True))
    assert hybrid.search("образования в печени", k=1)[0].id == "r-liver"
    other = make_settings(server_url=chroma_server, collection="server-test", embedding_model="/m/e5-small")
    with pytest.raises(UsageError, match="built with"):
        Retriever.open(other)


def test_unreachable_server_is_a_runtime_failure(make_settings):
    settings = make_settings(server_url=f"http://user:secret@127.0.0.1:{_free_port()}")
    with pytest.raises(RuntimeFailure, match="cannot reach the Chroma server") as err:
        Retriever.open(settings)
    assert "secret" not in str(err.value)
