"""Several processes: the hf backend under `torchrun --nproc_per_node 2` (DDP, gloo on CPU), real CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from sft_helpers import write_config, write_data


@pytest.mark.slow
def test_hf_backend_under_torchrun_two_processes(tiny_model_dir, tmp_path):
    write_data(tmp_path)  # 8 training rows
    config = write_config(tmp_path, tiny_model_dir, max_steps=2)
    bin_dir = Path(sys.executable).parent
    cmd = [str(bin_dir / "torchrun"), "--standalone", "--nproc_per_node", "2", "--no-python",
           str(bin_dir / "medscribe"), "--config", str(config), "sft"]
    # Own process group: on a timeout we kill torchrun AND its worker processes, leaving no orphans.
    popen = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
                             env={**os.environ, "OMP_NUM_THREADS": "1"}, start_new_session=True)
    try:
        stdout, stderr = popen.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        os.killpg(popen.pid, signal.SIGKILL)
        popen.communicate()
        pytest.fail("torchrun did not finish in 180 s")
    proc = subprocess.CompletedProcess(cmd, popen.returncode, stdout, stderr)
    assert proc.returncode == 0, proc.stderr[-3000:]
    m = json.loads((tmp_path / "sft" / "t" / "training_config.json").read_text())
    assert m["setup"]["world_size"] == 2 and m["result"]["global_step"] == 2
    history = json.loads((tmp_path / "sft" / "t" / "history.json").read_text())
    # 2 steps x batch 2 x 2 processes = the 8 rows once: each rank saw its own half of the data.
    assert history["train"][-1]["epoch"] == pytest.approx(1.0)
    assert proc.stdout.count("medscribe sft") == 1  # rank 0 alone prints the results table
    assert (tmp_path / "sft" / "t" / "adapter" / "adapter_model.safetensors").is_file()
