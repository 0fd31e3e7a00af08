"""A faster malloc for CPU training: `medscribe sft` / `medscribe pipeline` restart themselves under tcmalloc or
jemalloc when the run trains on a CPU and one is installed.

    from medscribe.sft.allocator import restart_with_fast_allocator, active_allocator
    restart_with_fast_allocator(settings)   # in the command, before training: returns, or replaces this process
    active_allocator()                      # "tcmalloc" | "jemalloc" | "system": training_config.json setup.allocator

Why: a CPU training step allocates and frees gigabytes of activations whose sizes change with every
padding-free batch, and glibc's malloc serves that worse. Measured on the CPU recipe's MedQuAD rows
(examples/cpu-qa.toml, 25 steps of the same rows each, idle 2-core box; docs/sft.md has every run): glibc
267 real tokens/s, jemalloc 304, tcmalloc 320, with a lower peak RSS under tcmalloc. An allocator has to be
in place before the process starts (LD_PRELOAD), so the command execs itself again, same arguments, with
LD_PRELOAD set (intel-extension-for-pytorch's launcher does the same).

`sft.cpu_allocator`: "auto" (the first of tcmalloc, jemalloc that is installed, when the run trains on a CPU
with the hf backend; without either a manifest note says what it would gain), "tcmalloc" / "jemalloc"
(required: an error when it cannot be loaded), "system" (never). Install: `apt-get install libtcmalloc-minimal4`
(or libjemalloc2); $MEDSCRIBE_MALLOC_LIBRARY names a library file directly. Only the `medscribe` command restarts
itself (a Python caller of run_sft keeps its process: preload a library yourself there), and only once.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from medscribe.errors import UsageError

LIBRARIES = {  # allocator -> file names, best first
    "tcmalloc": ("libtcmalloc_minimal.so.4", "libtcmalloc.so.4"),
    "jemalloc": ("libjemalloc.so.2",),
}
# jemalloc's settings from PyTorch's CPU performance guide: big allocations from their own extents, freed
# pages kept between steps, a background purging thread. tcmalloc runs with its defaults.
MALLOC_CONF = "oversize_threshold:1,background_thread:true,metadata_thp:auto,dirty_decay_ms:-1,muzzy_decay_ms:-1"
LIBRARY_DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib",
                "/usr/local/lib")
RESTARTED = "MEDSCRIBE_ALLOCATOR_RESTARTED"
INSTALL = "apt-get install libtcmalloc-minimal4"

# Set by the console entry point (medscribe.cli.run): only a real `medscribe` process may exec itself again.
standalone = False


def kind_of(path: str) -> str | None:
    name = Path(path).name
    return next((kind for kind in LIBRARIES if f"lib{kind}" in name), None)


def find_library(mode: str) -> str | None:
    """Path of the allocator library `mode` asks for ("auto": tcmalloc, else jemalloc); $MEDSCRIBE_MALLOC_LIBRARY
    wins when it names a file of the wanted kind."""
    wanted = list(LIBRARIES) if mode == "auto" else [mode]
    named = os.environ.get("MEDSCRIBE_MALLOC_LIBRARY")
    if named:
        return named if Path(named).is_file() and kind_of(named) in wanted else None
    for kind in wanted:
        for name in LIBRARIES[kind]:
            for folder in LIBRARY_DIRS:
                path = Path(folder) / name
                if path.is_file():
                    return str(path)
    return None


def active_allocator() -> str:
    """The allocator library mapped into this process ("tcmalloc", "jemalloc"), else "system"."""
    try:
        maps = Path("/proc/self/maps").read_text(errors="replace")
    except OSError:
        return "system"
    return next((kind for kind in LIBRARIES if f"lib{kind}" in maps), "system")


def trains_on_cpu(settings: Any) -> bool:
    """The run will train with the hf backend on a CPU (what the CPU fast path is for)."""
    if settings.sft.backend not in ("auto", "hf"):
        return False
    from medscribe.sft.backends import cuda_available

    return not cuda_available()


def allocator_plan(mode: str, active: str, library: str | None, cpu: bool, restarted: bool) -> str | None:
    """The library to preload before training (None: keep this process as it is). `mode` is
    sft.cpu_allocator; `cpu`: the run trains on a CPU with the hf backend; `restarted`: this process is the
    restarted one already. UsageError when a named allocator is required and cannot be had."""
    if mode == "system" or (mode == "auto" and not cpu) or active == mode or (mode == "auto" and active != "system"):
        return None
    if mode != "auto" and active != "system":
        raise UsageError(f"sft.cpu_allocator = '{mode}' but {active} is preloaded already (LD_PRELOAD)")
    if library is None:
        if mode != "auto":
            raise UsageError(f"sft.cpu_allocator = '{mode}' but its library ({', '.join(LIBRARIES[mode])}) is not "
                             "installed (apt-get install libtcmalloc-minimal4 / libjemalloc2, or set "
                             "MEDSCRIBE_MALLOC_LIBRARY to its path)")
        return None
    if restarted:  # preloaded and still not in use: do not loop
        if mode != "auto":
            raise UsageError(f"sft.cpu_allocator = '{mode}': {library} was preloaded but is not in use")
        return None
    return library


def allocator_note(active: str) -> str | None:
    """The manifest note of a CPU run that trains with glibc's malloc (None when it has a faster one)."""
    if active != "system":
        return None
    library = find_library("auto")
    if library is None:
        return f"allocator: glibc malloc; CPU training runs ~20 % faster under tcmalloc ({INSTALL})"
    return f"allocator: glibc malloc (sft.cpu_allocator, or {library} did not load); tcmalloc is ~20 % faster"


def restart_with_fast_allocator(settings: Any) -> None:
    """Exec this `medscribe` command again with the allocator preloaded when `allocator_plan` says so. Does
    nothing outside the console command (see `standalone`) or off Linux."""
    if not standalone or not sys.platform.startswith("linux"):
        return
    mode = settings.sft.cpu_allocator
    cpu = mode not in ("auto", "system") or trains_on_cpu(settings)
    library = allocator_plan(mode, active_allocator(), find_library(mode) if mode != "system" else None, cpu,
                             bool(os.environ.get(RESTARTED)))
    if library is None:
        return
    env = dict(os.environ)
    env["LD_PRELOAD"] = ":".join(p for p in (library, env.get("LD_PRELOAD", "")) if p)
    if kind_of(library) == "jemalloc":
        env.setdefault("MALLOC_CONF", MALLOC_CONF)
    env[RESTARTED] = "1"
    sys.stdout.flush()
    sys.stderr.flush()
    argv = list(getattr(sys, "orig_argv", [sys.executable, *sys.argv]))
    try:
        os.execve(sys.executable, [sys.executable, *argv[1:]], env)
    except OSError:  # cannot exec here: train in this process (the manifest note says glibc malloc)
        return
