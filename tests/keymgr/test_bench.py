"""The key manager's benchmark (``python -m ipchan.sw.keymgr.bench`` for 10^3, 10^5 and 10^6 live
latches). Here at 10^3 and 10^5, behind the ``bench`` marker; it prints, it asserts no timings."""

import pytest

from ipchan.sw.keymgr import bench


@pytest.mark.bench
def test_keymgr_bench(capsys):
    rows = bench.main(["--sizes", "1000", "100000", "--count", "1000"])
    assert [r["latches"] for r in rows] == [1000, 100000]
    with capsys.disabled():
        print()
        print(capsys.readouterr().out)
