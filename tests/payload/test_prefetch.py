"""The image's read of its model files beside the start (serve.prefetch): what a cold page cache holds after
it, which files it leaves to the loader, and the one line it says when there is nothing to read."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

import payload_env  # noqa: F401  (puts the payload on sys.path)
from serve import prefetch

MB = 1 << 20
MODELS = [{"folder": "diffusion_models", "file": "big.safetensors"}, {"folder": "vae", "file": "ae.safetensors"}]


def write(root, folder, name, size):
    path = root / folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        f.write(os.urandom(size))
    return path


def dropped(path):
    """The file written back and out of the page cache, as on a node that restarted."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    return path


def resident(path):
    out = subprocess.run(["fincore", "--bytes", "--noheadings", "--output", "RES", str(path)],
                         capture_output=True, text=True, check=True)
    return int(out.stdout.split()[0])


@pytest.fixture
def facts(tmp_path):
    path = tmp_path / "kiln.json"
    path.write_text(json.dumps({"cache_mount": str(tmp_path / "cache"), "warmup": {"models": MODELS}}))
    return path


def test_a_cold_model_file_is_in_the_page_cache_after_the_prefetch(tmp_path, facts, capsys):
    models = tmp_path / "models"
    big = dropped(write(models, "diffusion_models", "big.safetensors", 40 * MB + 123))
    vae = dropped(write(models, "vae", "ae.safetensors", 3 * MB))
    assert resident(big) < 4 * MB   # the drop took: the check below can tell a read from none

    assert prefetch.main(["--facts", str(facts), "--models", str(models), "--streams", "3"]) == 0

    assert resident(big) >= big.stat().st_size and resident(vae) >= vae.stat().st_size   # whole pages
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == ("kiln: phase prefetch: reading 2 model file(s), 0.05 GB, into the page cache beside the "
                        "start (3 streams)")
    assert lines[1].startswith("kiln: phase prefetch: 0.05 GB read in "), lines


def test_every_byte_is_read_once_whatever_the_chunk(tmp_path):
    files = [dropped(write(tmp_path, "a", "one", 5 * MB + 7)), dropped(write(tmp_path, "b", "two", 1))]
    assert resident(files[0]) < MB   # the drop took
    assert prefetch.read_ahead(files, 4, chunk=MB) == (5 * MB + 8, [])


def test_only_the_chunks_the_page_cache_lacks_are_read(tmp_path):
    path = dropped(write(tmp_path, "a", "half", 4 * MB))
    fd = os.open(path, os.O_RDONLY)
    try:   # the first two chunks back in the page cache, and nothing read ahead of them
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
        os.pread(fd, 2 * MB, 0)
    finally:
        os.close(fd)
    assert 2 * MB <= resident(path) < 3 * MB
    assert prefetch.read_ahead([path], 2, chunk=MB) == (2 * MB, [])


def test_a_file_another_user_owns_is_read_whole(tmp_path, monkeypatch):
    """Linux tells only the file's owner which pages it caches; to anyone else it says all of them (the image's
    user reading root's baked models), so those files are read whole."""
    path = write(tmp_path, "a", "baked", 2 * MB)   # in the page cache: just written
    monkeypatch.setattr(prefetch.os, "geteuid", lambda: os.stat(path).st_uid + 1)
    assert prefetch.read_ahead([path], 2, chunk=MB) == (2 * MB, [])


def test_a_file_the_page_cache_holds_is_not_copied_again(tmp_path, facts, capsys):
    models = tmp_path / "models"
    write(models, "vae", "ae.safetensors", 8 * MB)   # just written: in the page cache
    cold = dropped(write(models, "diffusion_models", "big.safetensors", 3 * MB))
    assert prefetch.main(["--facts", str(facts), "--models", str(models)]) == 0
    second = capsys.readouterr().out.splitlines()[1]
    assert second.startswith("kiln: phase prefetch: 0.00 GB read in "), second   # 3 MB, the cold file's
    assert second.endswith(", 0.01 GB already in the page cache"), second
    assert resident(cold) >= cold.stat().st_size
    assert prefetch.read_ahead([cold], 2) == (0, [])


def test_a_file_gone_before_its_read_is_named_and_the_rest_read(tmp_path):
    there = dropped(write(tmp_path, "a", "there", MB))
    assert prefetch.read_ahead([tmp_path / "gone", there], 2) == (MB, [f"{tmp_path.name}/gone (No such file or directory)"])


def test_files_memory_cannot_hold_are_left_to_the_loader(tmp_path, facts, capsys, monkeypatch):
    models = tmp_path / "models"
    write(models, "diffusion_models", "big.safetensors", 3 * MB)
    write(models, "vae", "ae.safetensors", MB)
    monkeypatch.setattr(prefetch, "room", lambda: 3 * MB + MB // 2)

    prefetch.main(["--facts", str(facts), "--models", str(models)])

    first, second = capsys.readouterr().out.splitlines()
    assert first == ("kiln: phase prefetch: reading 1 model file(s), 0.00 GB, into the page cache beside the start "
                     "(8 streams); left to the loader, memory would not hold them: ae.safetensors")
    assert second.startswith("kiln: phase prefetch: 0.00 GB read in "), second


def test_no_room_at_all_reads_nothing_and_says_why(tmp_path, facts, capsys, monkeypatch):
    write(tmp_path / "models", "vae", "ae.safetensors", MB)
    monkeypatch.setattr(prefetch, "room", lambda: MB - 1)
    prefetch.main(["--facts", str(facts), "--models", str(tmp_path / "models")])
    assert capsys.readouterr().out == ("kiln: phase prefetch: none: memory would not hold the model files "
                                       "(ae.safetensors)\n")


def test_the_room_is_the_smaller_of_free_memory_and_the_containers_limit(tmp_path):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal: 100 kB\nMemAvailable:    5000 kB\n")
    cgroup = tmp_path / "cgroup"
    cgroup.mkdir()
    assert prefetch.room(meminfo, cgroup) == 5000 * 1024        # no cgroup files: free memory alone
    (cgroup / "memory.max").write_text("max\n")
    (cgroup / "memory.current").write_text("1000\n")
    assert prefetch.room(meminfo, cgroup) == 5000 * 1024        # no limit
    (cgroup / "memory.max").write_text("3001000\n")
    assert prefetch.room(meminfo, cgroup) == 3000000            # the limit less what the container uses


def test_a_cgroup_v1_limit_bounds_the_room_too(tmp_path):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemAvailable:    5000 kB\n")
    v1 = tmp_path / "cgroup" / "memory"
    v1.mkdir(parents=True)
    (v1 / "memory.limit_in_bytes").write_text("9223372036854771712\n")   # v1's "no limit"
    (v1 / "memory.usage_in_bytes").write_text("1000\n")
    assert prefetch.room(meminfo, tmp_path / "cgroup") == 5000 * 1024
    (v1 / "memory.limit_in_bytes").write_text("2001000\n")
    assert prefetch.room(meminfo, tmp_path / "cgroup") == 2000000


def test_the_fit_keeps_the_images_order_and_passes_over_only_what_is_too_large(tmp_path):
    files = [write(tmp_path, "m", name, size) for name, size in (("a", 3), ("b", 5), ("c", 1))]
    assert prefetch.fitting(files, 9) == (files, [])
    assert prefetch.fitting(files, 8) == ([files[0], files[1]], [files[2]])
    assert prefetch.fitting(files, 7) == ([files[0], files[2]], [files[1]])


def test_a_baked_file_is_read_where_comfyui_reads_it(tmp_path, capsys):
    baked, cache = tmp_path / "baked", tmp_path / "cache"
    both = [write(root, "vae", "ae.safetensors", MB) for root in (baked, cache)]
    facts = {"warmup": {"models": MODELS, "baked_models": str(baked)}}
    assert prefetch.planned(facts, cache) == [both[0]]


def test_a_file_gone_after_the_plan_stops_the_prefetch_in_one_line(tmp_path, facts, capsys, monkeypatch):
    gone = tmp_path / "models" / "vae" / "ae.safetensors"
    monkeypatch.setattr(prefetch, "planned", lambda *_: [gone])
    assert prefetch.main(["--facts", str(facts), "--models", str(tmp_path / "models")]) == 0
    assert capsys.readouterr().out.startswith("kiln: phase prefetch: stopped: FileNotFoundError: ")


def test_nothing_there_yet_says_so(tmp_path, facts, capsys):
    assert prefetch.main(["--facts", str(facts), "--models", str(tmp_path / "empty")]) == 0
    assert capsys.readouterr().out == "kiln: phase prefetch: none: no model file of the warm-up is there yet\n"


def test_a_fetch_beside_the_server_is_left_to_write_the_files(tmp_path, facts, capsys):
    write(tmp_path / "models", "vae", "ae.safetensors", MB)
    marker = tmp_path / "arriving"
    marker.write_text(open("/proc/sys/kernel/random/boot_id").read())
    prefetch.main(["--facts", str(facts), "--models", str(tmp_path / "models"), "--arriving", str(marker)])
    assert capsys.readouterr().out == "kiln: phase prefetch: none: the deployment's fetch is writing the model files\n"
