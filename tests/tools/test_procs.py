"""stylebox/procs.py's `rss_kib`: the one reading of resident memory (soak, video-bench,
the tiling demo)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from stylebox.procs import rss_kib

linux = pytest.mark.skipif(not os.path.isfile("/proc/self/status"), reason="no /proc")


@linux
def test_rss_of_this_process_and_of_another():
    rss, peak = rss_kib()
    assert 0 < rss <= peak
    block = bytearray(64 * 1024 * 1024)  # touched: 64 MiB more resident
    assert rss_kib()[0] > rss + 60 * 1024 and rss_kib()[1] >= rss_kib()[0]
    del block
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        c_rss, c_peak = rss_kib(child.pid)
        assert 0 < c_rss <= c_peak < peak + 64 * 1024  # its own, not ours
    finally:
        child.kill()
        child.wait()
    with pytest.raises(OSError):
        rss_kib(child.pid)  # gone: another process's memory is never made up
