"""Downloads against a real HTTP server on 127.0.0.1: good file, cut transfer resumed with Range,
short file and wrong checksum (nothing at the final path), server down, offline."""

from __future__ import annotations

import hashlib
import os
import socket
import time

import pytest

from robustft.sources.fetch import ChecksumError, FetchError, fetch

from .loopback import serve

PAYLOAD = os.urandom(3 * (1 << 20) + 123)  # several read chunks
SHA = hashlib.sha256(PAYLOAD).hexdigest()


@pytest.fixture
def server(tmp_path, monkeypatch):
    for name in ("HF_HUB_OFFLINE", "ROBUSTFT_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    root = tmp_path / "www"
    root.mkdir()
    (root / "data.bin").write_bytes(PAYLOAD)
    (root / "short.bin").write_bytes(PAYLOAD[:1000])
    with serve(root) as (url, handler):
        yield url, handler


def test_good_file_lands_verified(server, tmp_path):
    url, _ = server
    dest = fetch(f"{url}/data.bin", tmp_path / "out" / "data.bin", sha256=SHA, log=lambda m: None)
    assert dest.read_bytes() == PAYLOAD
    assert not (tmp_path / "out" / "data.bin.part").exists()


def test_cut_transfer_resumes_with_a_range_request(server, tmp_path):
    url, handler = server
    handler.cut_after["/data.bin"] = 1_500_000
    dest = fetch(
        f"{url}/data.bin", tmp_path / "data.bin", sha256=SHA, backoff=0, log=lambda m: None
    )
    assert dest.read_bytes() == PAYLOAD
    assert handler.requests == [("/data.bin", None), ("/data.bin", "bytes=1500000-")]


def test_interrupted_run_leaves_a_part_file_that_a_rerun_resumes(server, tmp_path):
    url, handler = server
    dest = tmp_path / "data.bin"
    handler.cut_after["/data.bin"] = 1_000_000
    with pytest.raises(FetchError, match="1000000 bytes kept"):
        fetch(f"{url}/data.bin", dest, sha256=SHA, attempts=1, log=lambda m: None)
    assert not dest.exists() and (tmp_path / "data.bin.part").stat().st_size == 1_000_000
    fetch(f"{url}/data.bin", dest, sha256=SHA, log=lambda m: None)
    assert dest.read_bytes() == PAYLOAD
    assert handler.requests[-1] == ("/data.bin", "bytes=1000000-")


@pytest.mark.parametrize(
    "check, message",
    [
        ({"sha256": SHA}, f"sha256 mismatch: expected {SHA}, got "),
        ({"size": len(PAYLOAD)}, f"size mismatch: expected {len(PAYLOAD)} bytes, got 1000"),
    ],
)
def test_short_file_stops_with_expected_and_actual_and_leaves_nothing(
    server, tmp_path, check, message
):
    url, _ = server
    dest = tmp_path / "data.bin"
    with pytest.raises(ChecksumError) as err:
        fetch(f"{url}/short.bin", dest, log=lambda m: None, **check)
    assert message in str(err.value) and f"{url}/short.bin" in str(err.value)
    assert list(tmp_path.iterdir()) == [tmp_path / "www"]  # no dest, no .part


def test_wrong_checksum_names_expected_actual_and_url(server, tmp_path):
    url, _ = server
    wrong = "0" * 64
    with pytest.raises(ChecksumError, match=f"expected {wrong}, got {SHA}") as err:
        fetch(f"{url}/data.bin", tmp_path / "data.bin", sha256=wrong, log=lambda m: None)
    assert f"{url}/data.bin" in str(err.value)
    assert not (tmp_path / "data.bin").exists() and not (tmp_path / "data.bin.part").exists()


def test_missing_file_is_not_retried(server, tmp_path):
    url, handler = server
    with pytest.raises(FetchError, match="HTTP 404"):
        fetch(f"{url}/nope.bin", tmp_path / "nope.bin", log=lambda m: None)
    assert len(handler.requests) == 1


def test_server_down_fails_in_seconds_naming_what_to_fetch(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.time()
    with pytest.raises(FetchError, match="after 3 attempts") as err:
        fetch(f"http://127.0.0.1:{port}/x.tar", tmp_path / "x.tar", backoff=0.1, log=print)
    assert time.time() - t0 < 5
    assert f"download http://127.0.0.1:{port}/x.tar to {tmp_path / 'x.tar'}" in str(err.value)


def test_offline_fails_at_once_without_touching_the_network(server, tmp_path, monkeypatch):
    """Offline, a remote host is never asked (not even its name resolved); this machine's own
    server (a loopback address: the rehearsal's) is no network and still serves."""
    url, handler = server
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    t0 = time.time()
    with pytest.raises(FetchError, match=r"offline \(HF_HUB_OFFLINE/ROBUSTFT_OFFLINE is set\)"):
        fetch("https://data.example.org/data.bin", tmp_path / "data.bin", log=lambda m: None)
    assert time.time() - t0 < 1 and not (tmp_path / "data.bin.part").exists()
    for host in ("127.0.0.1", "localhost"):
        dest = fetch(url.replace("127.0.0.1", host) + "/data.bin", tmp_path / f"{host}.bin",
                     sha256=hashlib.sha256(PAYLOAD).hexdigest(), log=lambda m: None)  # fmt: skip
        assert dest.read_bytes() == PAYLOAD
    assert len(handler.requests) == 2


def test_md5_where_the_host_publishes_only_that(server, tmp_path):
    url, _ = server
    md5 = hashlib.md5(PAYLOAD).hexdigest()
    dest = fetch(f"{url}/data.bin", tmp_path / "a.bin", md5=md5, log=lambda m: None)
    assert dest.read_bytes() == PAYLOAD
    with pytest.raises(ChecksumError, match=f"md5 mismatch: expected {'f' * 32}, got {md5}"):
        fetch(f"{url}/data.bin", tmp_path / "b.bin", md5="f" * 32, log=lambda m: None)
    assert not (tmp_path / "b.bin").exists()


def test_package_and_file_urls_are_copied_offline_and_verified(tmp_path, monkeypatch):
    """The published stand-ins' `package://` URLs (and `file://`) need no network: offline they
    are copied, checksummed like a download, and a wrong checksum leaves nothing."""
    from robustft.sources.fetch import local_source

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    url = "package://robustft/data_files/standins/mini-sup.pt"
    source = local_source(url)
    assert source.is_file() and source.parent.name == "standins"
    sha = hashlib.sha256(source.read_bytes()).hexdigest()
    dest = fetch(url, tmp_path / "a" / "mini-sup.pt", sha256=sha, log=lambda m: None)
    assert dest.read_bytes() == source.read_bytes()
    with pytest.raises(ChecksumError, match=f"expected {'0' * 64}, got {sha}"):
        fetch(url, tmp_path / "b.pt", sha256="0" * 64, log=lambda m: None)
    assert not (tmp_path / "b.pt").exists() and not (tmp_path / "b.pt.part").exists()
    copied = fetch(source.as_uri(), tmp_path / "c.pt", sha256=sha, log=lambda m: None)
    assert copied.read_bytes() == source.read_bytes()
    with pytest.raises(FetchError, match="no such file"):
        fetch("package://robustft/data_files/standins/nope.pt", tmp_path / "d.pt", size=1)
