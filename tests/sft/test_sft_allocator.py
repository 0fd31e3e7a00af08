"""The faster malloc for CPU training (sft/allocator.py): when the `medscribe` command restarts itself under
tcmalloc/jemalloc, what it records, and that nothing else (CliRunner, CUDA, sft.cpu_allocator = "system") does."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sft_helpers import write_config, write_data

from medscribe.errors import UsageError
from medscribe.sft import allocator
from medscribe.sft.allocator import allocator_plan, find_library, kind_of

LIB = "/x/libtcmalloc_minimal.so.4"


def test_the_plan_restarts_only_cpu_runs_on_the_system_allocator():
    assert allocator_plan("auto", "system", LIB, cpu=True, restarted=False) == LIB
    assert allocator_plan("auto", "system", LIB, cpu=False, restarted=False) is None  # CUDA / unsloth: untouched
    assert allocator_plan("auto", "jemalloc", LIB, cpu=True, restarted=False) is None  # a fast one is loaded
    assert allocator_plan("system", "system", LIB, cpu=True, restarted=False) is None
    assert allocator_plan("auto", "system", None, cpu=True, restarted=False) is None  # nothing installed: a note
    assert allocator_plan("auto", "system", LIB, cpu=True, restarted=True) is None  # never a second restart
    assert allocator_plan("tcmalloc", "system", LIB, cpu=True, restarted=False) == LIB
    assert allocator_plan("tcmalloc", "tcmalloc", LIB, cpu=True, restarted=True) is None
    with pytest.raises(UsageError, match="not installed"):
        allocator_plan("jemalloc", "system", None, cpu=True, restarted=False)
    with pytest.raises(UsageError, match="preloaded but is not in use"):
        allocator_plan("tcmalloc", "system", LIB, cpu=True, restarted=True)
    with pytest.raises(UsageError, match="jemalloc is preloaded already"):
        allocator_plan("tcmalloc", "jemalloc", LIB, cpu=True, restarted=False)


def test_find_library_prefers_tcmalloc_and_honours_the_environment(tmp_path, monkeypatch):
    monkeypatch.setattr(allocator, "LIBRARY_DIRS", (str(tmp_path),))
    monkeypatch.delenv("MEDSCRIBE_MALLOC_LIBRARY", raising=False)
    assert find_library("auto") is None
    (tmp_path / "libjemalloc.so.2").write_bytes(b"")
    assert find_library("auto") == str(tmp_path / "libjemalloc.so.2")
    (tmp_path / "libtcmalloc_minimal.so.4").write_bytes(b"")
    assert find_library("auto") == str(tmp_path / "libtcmalloc_minimal.so.4")
    assert find_library("jemalloc") == str(tmp_path / "libjemalloc.so.2")
    monkeypatch.setenv("MEDSCRIBE_MALLOC_LIBRARY", str(tmp_path / "libjemalloc.so.2"))
    assert find_library("auto") == str(tmp_path / "libjemalloc.so.2") and find_library("tcmalloc") is None
    assert kind_of("/a/libtcmalloc.so.4") == "tcmalloc" and kind_of("/a/libc.so.6") is None


def test_in_process_callers_are_never_restarted(tiny_model_dir, tmp_path, monkeypatch):
    """CliRunner (and any Python caller) runs in this process: exec would replace the test runner."""
    from medscribe.settings import load_settings

    monkeypatch.setattr(allocator.os, "execve", lambda *a: pytest.fail("exec outside the console command"))
    monkeypatch.setattr(allocator, "standalone", False)
    allocator.restart_with_fast_allocator(load_settings(flags={"sft": {"cpu_allocator": "tcmalloc"}}))


def _run_cli(tmp_path: Path, config: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "medscribe", "--config", str(config), "sft"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="LD_PRELOAD restart is Linux-only")
def test_the_command_trains_under_the_fast_allocator_and_records_it(tiny_model_dir, tmp_path):
    library = find_library("auto")
    if library is None:
        if os.environ.get("CI"):
            pytest.fail("CI installs libtcmalloc-minimal4 (.ci/run): none found")
        pytest.skip("no tcmalloc/jemalloc installed (apt-get install libtcmalloc-minimal4)")
    write_data(tmp_path)
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", allocator.RESTARTED)}
    env["CUDA_VISIBLE_DEVICES"] = ""
    proc = _run_cli(tmp_path, write_config(tmp_path, tiny_model_dir, max_steps=1, run_name="fast"), env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    setup = json.loads((tmp_path / "sft" / "fast" / "training_config.json").read_text())["setup"]
    assert setup["allocator"] == kind_of(library)
    assert not any(n.startswith("allocator:") for n in setup["notes"])
    assert f", {kind_of(library)}" in setup["reason"]

    # "system": glibc, said in a note with what it would gain
    proc = _run_cli(tmp_path, write_config(tmp_path, tiny_model_dir, max_steps=1, run_name="glibc",
                                           cpu_allocator="system"), env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    setup = json.loads((tmp_path / "sft" / "glibc" / "training_config.json").read_text())["setup"]
    assert setup["allocator"] == "system" and "glibc malloc" in setup["reason"]
    assert any(n.startswith("allocator: glibc malloc") and "faster" in n for n in setup["notes"])
