"""The capture folder on its own: size and hourly rotation, gzip once closed, retention by total
size (oldest first, never the open file), leftovers of a dead gateway, and failures as False."""

from __future__ import annotations

import gzip
import os
import time
from pathlib import Path

from gateway.capture import files
from gateway.capture.files import CaptureFolder

LINE = b'{"kind":"infer"}' + b" " * 983 + b"\n"  # 1,000 bytes


def written(folder: Path) -> list[bytes]:
    lines: list[bytes] = []
    for path in sorted(folder.iterdir()):
        data = path.read_bytes()
        lines += (gzip.decompress(data) if path.name.endswith(".gz") else data).splitlines()
    return lines


def test_files_rotate_past_their_size_and_are_gzipped(tmp_path: Path) -> None:
    folder = CaptureFolder(tmp_path, max_file_bytes=3_000, max_total_bytes=10**9)
    folder.start()
    for i in range(10):
        assert folder.write("m", [LINE, LINE], 1796310000.0 + i)
    folder.stop()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert len(names) == 5 and all(n.endswith(".jsonl.gz") for n in names)  # 4,000 B each
    assert len(written(tmp_path)) == 20


def test_a_file_open_for_an_hour_is_closed_even_when_idle(tmp_path: Path) -> None:
    folder = CaptureFolder(tmp_path, max_file_bytes=10**9, max_total_bytes=10**9)
    folder.start()
    folder.write("m", [LINE], time.time())
    folder.tick()
    assert [p.suffix for p in tmp_path.iterdir()] == [".jsonl"]
    folder._open["m"].opened_s -= files.MAX_OPEN_S
    folder.tick()
    folder.write("m", [LINE], time.time() + 1)
    folder.stop()
    assert len(list(tmp_path.glob("*.gz"))) == 2


def test_the_oldest_closed_files_go_past_the_total_never_the_open_one(tmp_path: Path) -> None:
    folder = CaptureFolder(tmp_path, max_file_bytes=1_000, max_total_bytes=2_500)
    folder.start()
    for i in range(6):  # gzip cannot shrink random text: every closed file stays ~1,000 B
        folder.write("m", [b'"' + os.urandom(500).hex().encode() + b'"\n'], 1796310000.0 + i)
        time.sleep(0.05)  # compressed and counted one by one
    folder.write("m", [b"{}\n"], 1796310010.0)  # one more, small: left open
    deadline = time.monotonic() + 10

    def settled() -> bool:  # the last closed file gzipped, then the oldest deleted
        files = list(tmp_path.iterdir())
        try:
            return (len([p for p in files if p.name.endswith(".jsonl")]) == 1
                    and sum(p.stat().st_size for p in files) <= 2_500)
        except FileNotFoundError:  # deleted while listed: look again
            return False
    while not settled() and time.monotonic() < deadline:
        time.sleep(0.02)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert sum(p.stat().st_size for p in tmp_path.iterdir()) <= 2_500
    assert names[-1].endswith("150010.000000Z.jsonl")  # the open one stays
    assert not any("150000" in n for n in names)  # the oldest went
    folder.stop()


def test_leftovers_of_a_dead_gateway_are_gzipped_when_surely_closed(tmp_path: Path) -> None:
    old = tmp_path / "capture-m-20261201T000000.000000Z.jsonl"
    recent = tmp_path / "capture-m-20261203T000000.000000Z.jsonl"
    for path in (old, recent):
        path.write_bytes(LINE)
    stale = time.time() - files.MAX_OPEN_S - 120
    os.utime(old, (stale, stale))
    folder = CaptureFolder(tmp_path, max_file_bytes=10**9, max_total_bytes=10**9)
    folder.start()
    folder.stop()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        old.name + ".gz", recent.name]  # another gateway may still be writing the recent one


def test_a_failed_write_is_false_and_the_next_one_tries_again(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    folder = CaptureFolder(blocker / "capture", max_file_bytes=10**9, max_total_bytes=10**9)
    folder.start()
    assert not folder.write("m", [LINE], time.time())
    blocker.unlink()
    assert folder.write("m", [LINE], time.time())
    folder.stop()
    assert written(blocker / "capture") == [LINE.rstrip(b"\n")]
