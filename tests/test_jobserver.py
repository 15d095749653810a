"""The fork server local runs start jobs from: a job runs in a child of the warm server, in the
client's directory and environment, logs as an in-process job does, reports failure to its client,
and dies with its client; without a server the job runs in-process, and so it does when the server
is stopped (a real SIGSTOP), never answers, or left a stale socket file (removed)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable


# ---- job functions the server runs (imported there by reference) ----------------------------------
def report(out: str) -> None:
    print("hello from the job", flush=True)
    Path(out).write_text(f"{os.getpid()} {os.getcwd()} {os.environ.get('ROBUSTFT_TEST_VAR')}")


def fail() -> None:
    raise ValueError("boom: the job's own error")


def sleep_forever(out: str) -> None:
    Path(out).write_text(str(os.getpid()))
    time.sleep(120)


# -------------------------------------------------------------------------------------------------
def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie has finished
        return stat.read().split(") ")[1][0] != "Z"


def _wait(condition, timeout: float = 30.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.1)
    return False


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("jobserver")
    sock = tmp / "s.sock"
    proc = subprocess.Popen(
        [PYTHON, "-m", "robustft.jobserver", "--socket", str(sock), "--parent", str(os.getpid())],
        cwd=ROOT, stdout=open(tmp / "server.log", "w"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    assert _wait(sock.exists), "the server did not bind its socket"
    yield sock, proc, tmp
    proc.terminate()
    proc.wait(timeout=30)
    assert not sock.exists(), "the server leaves no socket file behind"


def _client(call: str, sock, cwd: Path, extra_env=None, **popen) -> subprocess.Popen:
    env = {**os.environ, "ROBUSTFT_JOBSERVER": str(sock), "ROBUSTFT_TEST_VAR": "from-client",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           **(extra_env or {})}  # fmt: skip
    code = f"from robustft.jobserver import run_job\nimport tests.test_jobserver as t\n{call}"
    return subprocess.Popen([PYTHON, "-c", code], cwd=cwd, env=env, text=True, **popen)


def test_job_runs_in_a_server_child_with_the_clients_cwd_env_and_log(server, tmp_path):
    sock, proc, _ = server
    out, log = tmp_path / "out.txt", tmp_path / "job.log"
    client = _client(f"run_job(t.report, {str(log)!r}, {str(out)!r})", sock, tmp_path)
    assert client.wait(timeout=120) == 0
    pid, cwd, var = out.read_text().split()
    assert int(pid) not in (client.pid, proc.pid), "the job ran in a forked child"
    assert Path(cwd) == tmp_path and var == "from-client"
    assert "hello from the job" in log.read_text()


def test_failed_job_ends_its_log_with_the_error_and_fails_the_client(server, tmp_path):
    sock, _, _ = server
    log = tmp_path / "job.log"
    client = _client(f"run_job(t.fail, {str(log)!r})", sock, tmp_path, stderr=subprocess.PIPE)
    _, stderr = client.communicate(timeout=120)
    assert client.returncode != 0
    assert "ValueError: boom" in stderr
    lines = log.read_text().strip().splitlines()
    assert lines[-1] == "job failed: ValueError: boom: the job's own error"
    assert any("Traceback" in line for line in lines)


def test_killing_the_client_kills_the_job(server, tmp_path):
    sock, _, _ = server
    out = tmp_path / "pid.txt"
    client = _client(f"run_job(t.sleep_forever, None, {str(out)!r})", sock, tmp_path)
    assert _wait(lambda: out.exists() and out.read_text() != "", 120)
    job = int(out.read_text())
    assert _alive(job)
    client.send_signal(signal.SIGTERM)
    client.wait(timeout=30)
    assert _wait(lambda: not _alive(job), 30), "the orphaned job is still running"


def test_without_a_server_the_job_runs_in_process(tmp_path):
    out, log = tmp_path / "out.txt", tmp_path / "job.log"
    client = _client(f"run_job(t.report, {str(log)!r}, {str(out)!r})", tmp_path / "none.sock",
                     tmp_path)  # fmt: skip
    assert client.wait(timeout=120) == 0
    assert int(out.read_text().split()[0]) == client.pid
    assert "hello from the job" in log.read_text()


def test_server_stops_when_its_parent_is_gone(tmp_path):
    parent = subprocess.Popen([PYTHON, "-c", "import time; time.sleep(600)"])
    sock = tmp_path / "s.sock"
    proc = subprocess.Popen(
        [PYTHON, "-m", "robustft.jobserver", "--socket", str(sock), "--parent", str(parent.pid)],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    assert _wait(sock.exists)
    parent.kill()
    parent.wait()
    assert proc.wait(timeout=120) == 0
    assert not sock.exists()


# ---- a server that cannot take the job never hangs it ---------------------------------------------
def _start_server(sock: Path, log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [PYTHON, "-m", "robustft.jobserver", "--socket", str(sock), "--parent", str(os.getpid())],
        cwd=ROOT, stdout=open(log, "w"), stderr=subprocess.STDOUT,
    )  # fmt: skip


def test_a_stopped_server_does_not_hang_the_job_and_never_runs_it_later(tmp_path):
    """SIGSTOP the server: the job sees it stopped (state T) and runs in-process at once; once
    continued, the server finds the client gone and does not run the job a second time."""
    sock, server_log = tmp_path / "s.sock", tmp_path / "server.log"
    proc = _start_server(sock, server_log)
    try:
        assert _wait(sock.exists), "the server did not bind its socket"
        os.kill(proc.pid, signal.SIGSTOP)
        out, log = tmp_path / "out.txt", tmp_path / "job.log"
        t0 = time.monotonic()
        client = _client(f"run_job(t.report, {str(log)!r}, {str(out)!r})", sock, tmp_path,
                         stderr=subprocess.PIPE)  # fmt: skip
        _, stderr = client.communicate(timeout=120)
        assert client.returncode == 0
        assert time.monotonic() - t0 < 60  # the 120 s timeout was not waited for
        assert int(out.read_text().split()[0]) == client.pid  # in-process
        why = f"the job server (pid {proc.pid}, {sock}) is stopped (SIGSTOP or a debugger)"
        assert f"{why}: running the job in-process" in log.read_text()
        assert why in stderr
        written = out.read_text()
        os.kill(proc.pid, signal.SIGCONT)
        assert _wait(lambda: "client gone before" in server_log.read_text(), 120)
        assert out.read_text() == written, "the server ran the job again"
    finally:
        os.kill(proc.pid, signal.SIGCONT)
        proc.terminate()
        proc.wait(timeout=60)
    assert not sock.exists()


def test_a_server_that_never_answers_times_out_into_an_in_process_job(tmp_path):
    """A socket that accepts connections (the kernel's backlog) but never starts the job."""
    import socket

    sock = tmp_path / "mute.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(sock))
    listener.listen(8)
    try:
        out, log = tmp_path / "out.txt", tmp_path / "job.log"
        env = {"ROBUSTFT_JOBSERVER_TIMEOUT": "2"}
        t0 = time.monotonic()
        client = _client(f"run_job(t.report, {str(log)!r}, {str(out)!r})", sock, tmp_path,
                         extra_env=env)  # fmt: skip
        assert client.wait(timeout=120) == 0
        assert 2 <= time.monotonic() - t0 < 60
        assert int(out.read_text().split()[0]) == client.pid
        assert "did not start the job within 2 s (ROBUSTFT_JOBSERVER_TIMEOUT)" in log.read_text()
    finally:
        listener.close()


def test_a_stale_socket_file_is_removed(tmp_path):
    import socket

    from robustft.jobserver import remove_stale_sockets

    def stale(path: Path) -> Path:  # a socket file whose server died without removing it
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(path))
        listener.close()
        return path

    # The job that finds one runs in-process, and removes it for the jobs after it.
    sock, out, log = stale(tmp_path / "s.sock"), tmp_path / "out.txt", tmp_path / "job.log"
    client = _client(f"run_job(t.report, {str(log)!r}, {str(out)!r})", sock, tmp_path)
    assert client.wait(timeout=120) == 0
    assert f"job server socket {sock} is stale (no server listens; removed)" in log.read_text()
    assert not sock.exists()
    # The Snakefile's onstart: a killed run's socket goes; a live run's stays.
    dead = subprocess.Popen([PYTHON, "-c", "pass"])
    dead.wait()
    gone = stale(tmp_path / f"robustft-jobs-{dead.pid}.sock")
    live = stale(tmp_path / f"robustft-jobs-{os.getpid()}.sock")
    assert remove_stale_sockets(tmp_path) == [gone]
    assert not gone.exists() and live.exists()


def test_stopping_a_stopped_server_ends_it(tmp_path):
    from robustft.jobserver import stop

    sock = tmp_path / "s.sock"
    proc = _start_server(sock, tmp_path / "server.log")
    assert _wait(sock.exists)
    os.kill(proc.pid, signal.SIGSTOP)
    stop(proc.pid)  # what onsuccess/onerror call
    assert proc.wait(timeout=120) == 0
    assert not sock.exists()
