"""Downloading one file: resumable, atomic, verified.

The bytes go to `<dest>.part`; an interrupted transfer resumes from there with an HTTP Range
request (a server that ignores Range sends the whole file, which restarts it). Only a file whose
checksum (or, where the host publishes none, size) matches is moved to `dest`, so a partial or
corrupt file never sits at the final path: a mismatch deletes the `.part` and names the expected
and actual values and the URL. Offline (`HF_HUB_OFFLINE=1`, `ROBUSTFT_OFFLINE=1`, or a host name
that does not resolve) stops at once with what to fetch, except from a loopback address (this
machine's own server: the rehearsal's); refused or dropped connections are
retried a few times, seconds apart, never for a minute.

A `file://` URL, or `package://<package>/<path>` (a file shipped inside an installed Python
package: the mini backbones' published weights), is copied instead, offline too, and verified the
same way.
"""

from __future__ import annotations

import hashlib
import http.client
import importlib.util
import os
import shutil
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

OFFLINE_ENV = ("HF_HUB_OFFLINE", "ROBUSTFT_OFFLINE")
CHUNK = 1 << 20


class FetchError(RuntimeError):
    """A file could not be fetched; the message names the URL and what to do."""


class ChecksumError(FetchError):
    """The fetched bytes are not the published file."""


def is_offline() -> bool:
    return any(os.environ.get(name, "") not in ("", "0") for name in OFFLINE_ENV)


def sha256_of(path: str | Path, algorithm: str = "sha256") -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def is_loopback(url: str) -> bool:
    """A URL served by this machine itself (127.0.0.1, localhost, ::1): reachable offline."""
    import ipaddress

    host = urlparse(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def local_source(url: str) -> Path | None:
    """The file a `file://` or `package://<package>/<path>` URL names; None for a remote URL.
    The package is found without importing it (no torch at parse time)."""
    parts = urlparse(url)
    if parts.scheme == "file":
        return Path(urllib.request.url2pathname(parts.path))
    if parts.scheme != "package":
        return None
    spec = importlib.util.find_spec(parts.netloc)
    if spec is None or not spec.submodule_search_locations:
        raise FetchError(f"{url}: no installed package {parts.netloc!r}")
    return Path(list(spec.submodule_search_locations)[0], *parts.path.strip("/").split("/"))


def _how_to_fetch(url: str, dest: Path) -> str:
    return (
        f"fetch it on a machine with internet (snakemake {dest}), or download {url} "
        f"to {dest} yourself"
    )


def _download_into(part: Path, url: str, timeout: float) -> None:
    """Append the rest of `url` to `part` (all of it if the server ignores Range)."""
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "robustft"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and have:  # nothing left to send: the .part is complete
            return
        raise
    with response:
        resumed = response.status == 206
        expected = int(response.headers.get("Content-Length") or -1)
        received = 0
        with open(part, "ab" if resumed else "wb") as out:
            while block := response.read(CHUNK):
                out.write(block)
                received += len(block)
        # urllib returns b"" when the connection drops early: compare with what was announced.
        if 0 <= received < expected:
            raise http.client.IncompleteRead(b"", expected - received)


def _verify(part: Path, url: str, sha256: str | None, size: int | None, md5: str | None) -> None:
    actual_size = part.stat().st_size
    if size is not None and actual_size != size:
        part.unlink()
        raise ChecksumError(
            f"{url}: size mismatch: expected {size} bytes, got {actual_size}; the partial file "
            "was deleted, rerun to fetch it again (or fix the size in config if the host changed)"
        )
    # md5 only where the host publishes nothing stronger (CIFAR's page)
    for algorithm, expected in (("sha256", sha256), ("md5", md5)):
        if not expected:
            continue
        actual = sha256_of(part, algorithm)
        if not actual.startswith(expected.lower()):  # a prefix is allowed (CLIP's URLs carry one)
            part.unlink()
            raise ChecksumError(
                f"{url}: {algorithm} mismatch: expected {expected}, got {actual}; the file was "
                "deleted, not kept at its final path; rerun to fetch it again"
            )


def fetch(
    url: str,
    dest: str | Path,
    *,
    sha256: str | None = None,
    size: int | None = None,
    md5: str | None = None,
    attempts: int = 3,
    timeout: float = 30.0,
    backoff: float = 1.0,
    log=print,
) -> Path:
    """Download `url` to `dest` (see the module docstring); returns `dest`."""
    dest = Path(dest)
    if dest.exists():
        return dest
    part = dest.with_name(dest.name + ".part")
    source = local_source(url)
    if source is not None:  # on this machine already: copied, then verified like a download
        if not source.is_file():
            raise FetchError(f"{url}: no such file {source}")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, part)
        _verify(part, url, sha256, size, md5)
        os.replace(part, dest)
        log(f"copied {url} -> {dest} ({dest.stat().st_size} bytes)")
        return dest
    if is_offline() and not is_loopback(url):  # this machine's own server is no network
        names = "/".join(OFFLINE_ENV)
        raise FetchError(f"offline ({names} is set): {dest} is missing; {_how_to_fetch(url, dest)}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(1, attempts + 1):
        try:
            _download_into(part, url, timeout)
            break
        except urllib.error.HTTPError as err:  # the server answered: retrying will not help
            raise FetchError(
                f"{url}: HTTP {err.code} {err.reason}; {_how_to_fetch(url, dest)}"
            ) from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as err:
            reason = getattr(err, "reason", err)
            if isinstance(reason, socket.gaierror):  # no DNS: offline, fail now
                raise FetchError(
                    f"{url}: host not found ({reason}); this machine looks offline; "
                    f"{_how_to_fetch(url, dest)}"
                ) from None
            have = part.stat().st_size if part.exists() else 0
            if attempt == attempts:
                raise FetchError(
                    f"{url}: {reason} after {attempts} attempts ({have} bytes kept in {part}, "
                    f"a rerun resumes from there); {_how_to_fetch(url, dest)}"
                ) from None
            log(f"{url}: {reason}; attempt {attempt + 1}/{attempts} resumes at {have} bytes")
            time.sleep(backoff * attempt)
    _verify(part, url, sha256, size, md5)
    os.replace(part, dest)  # atomic: `dest` appears only verified
    log(f"fetched {url} -> {dest} ({dest.stat().st_size} bytes)")
    return dest
