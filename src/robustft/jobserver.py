"""A fork server for local runs: jobs start from a process that has already imported torch and open_clip.

Every training or evaluation job is its own Python process (one result per target, rerun alone),
and each one used to pay ~8 s here to import torch, torchvision (which imports torch._dynamo) and
open_clip before doing 5-30 s of work. For a local run, the Snakefile's `onstart` starts this server
once; it imports those modules, binds a Unix socket, and forks one child per job request. The
child starts from the warm, single-threaded parent (no torch thread pool, no CUDA context exists
there yet, so fork is safe), takes the job's working directory and environment, writes the job's
log exactly as an in-process job would (`logged`), and reports success or the error line back.

The job script stays a Snakemake job: it blocks until the child ends, so Snakemake's scheduling,
threads, benchmarks (wall time) and failure handling are unchanged. If the script is killed, its
socket closes and the server kills the child. Without a server (cluster jobs, tests calling the
script alone, `ROBUSTFT_JOBSERVER=off`), `run_job` runs the function in-process, as before.

A server that cannot take the job never hangs it: the child's first message says it started, and
a client that gets none within `ROBUSTFT_JOBSERVER_TIMEOUT` seconds (default 120: the server's
preload under load), or sees the server stopped (SIGSTOP, state T in /proc) or gone, runs the job
in-process and says why in the job's log. A socket file whose server is gone is removed.

    python -m robustft.jobserver --socket PATH [--parent PID]   # started by the Snakefile
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pickle
import select
import selectors
import signal
import socket
import struct
import sys
import threading
import time
import traceback
from pathlib import Path

from .errors import error_summary

SOCKET_ENV = "ROBUSTFT_JOBSERVER"
TIMEOUT_ENV = "ROBUSTFT_JOBSERVER_TIMEOUT"  # seconds a job waits for the server to start it
DEFAULT_TIMEOUT = 120.0
SOCKET_PREFIX = "robustft-jobs-"  # <tmp>/robustft-jobs-<snakemake pid>.sock (the Snakefile)
# Imported once by the server; children inherit them. Cheap to list, expensive to import.
PRELOAD = (
    "torch",
    "open_clip",
    "robustft.models",
    "robustft.jobs",
    "robustft.evaluate",
    "robustft.training",
    "robustft.pretrain",
    "robustft.methods",
    "robustft.data",
)
# Imported once the first jobs are running (the server is idle for the first time), so that they
# do not wait for them: the linear probe's solver and the tables' and figures' libraries (~3 s of
# a figure job otherwise, most of its time); matplotlib with the Agg backend the figures use.
LATE_PRELOAD = (
    "sklearn.linear_model",
    "matplotlib.pyplot",
    "seaborn",
    "robustft.plots",
    "robustft.paper_tables",
)
_HEADER = struct.Struct("!Q")


class JobFailed(RuntimeError):
    """The forked job raised; its log holds the traceback."""


@contextlib.contextmanager
def logged(log_path: str | Path | None):
    """Redirect this process's stdout and stderr (file descriptors too) into `log_path`.

    An exception that stops the job is written to the log before the streams are restored: the
    log ends with the traceback, then one line `job failed: <type>: <message>`. The exception
    still propagates, so Snakemake reports the job as failed (and prints it too).
    """
    if not log_path:
        yield
        return
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a", buffering=1) as log:
        saved = os.dup(1), os.dup(2)
        sys.stdout.flush(), sys.stderr.flush()
        os.dup2(log.fileno(), 1), os.dup2(log.fileno(), 2)
        old_streams = sys.stdout, sys.stderr
        sys.stdout = sys.stderr = log
        try:
            yield
        except BaseException as err:
            if not (isinstance(err, SystemExit) and err.code in (0, None)):
                log.write("\n" + traceback.format_exc())
                log.write(f"job failed: {error_summary(err)}\n")
                log.flush()
            raise
        finally:
            sys.stdout, sys.stderr = old_streams
            os.dup2(saved[0], 1), os.dup2(saved[1], 2)
            os.close(saved[0]), os.close(saved[1])


def _send(sock: socket.socket, obj) -> None:
    data = pickle.dumps(obj)
    sock.sendall(_HEADER.pack(len(data)) + data)


def _recv(sock: socket.socket):
    def exactly(n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("connection closed")
            buf += chunk
        return buf

    (size,) = _HEADER.unpack(exactly(_HEADER.size))
    return pickle.loads(exactly(size))


# ---- client: what a workflow script calls ----------------------------------------------------------


def run_job(func, log: str | None, *args, **kwargs):
    """Run `func(*args, **kwargs)` with its output in `log`: in a child of the job server when one
    serves this run (see module doc), else in this process. Raises if the job failed."""
    path = os.environ.get(SOCKET_ENV, "")
    # A function the server cannot import (one defined in the script itself) runs here.
    importable = getattr(func, "__module__", "__main__") != "__main__"
    sock, why = _connect(path) if importable and path not in ("", "off") else (None, None)
    if sock is not None:
        request = dict(
            func=func, args=_plain(args), kwargs=_plain(kwargs),
            log=None if log is None else str(log), cwd=os.getcwd(), env=dict(os.environ),
            started=_process_start(),
        )  # fmt: skip
        with sock:
            _send(sock, request)
            why = _wait_started(sock, path)
            if why is None:  # a child of the server runs the job: wait for it, however long
                try:
                    reply = _recv(sock)
                except ConnectionError:
                    reply = {"ok": False, "error": "the job server's child died without a reply"}
    if sock is None or why is not None:
        if why:
            print(f"{why}: running the job in-process", file=sys.stderr, flush=True)
        with logged(log):
            if why:
                print(f"{why}: running the job in-process", flush=True)
            return _timed(func, args, kwargs, _process_start(), "in-process")
    if not reply["ok"]:
        print(f"job failed: {reply['error']} (log: {log})", file=sys.stderr)
        raise JobFailed(reply["error"])
    return reply.get("result")


def _timed(func, args, kwargs, started: float | None, how: str):
    """Run the job function; its log records the start-up paid before it and its own time
    (`bench/suite.py` sums them into the job-overhead row)."""
    t0 = time.time()
    if started is not None:
        print(
            f"job start-up: {t0 - started:.2f}s ({how}: process start to job function)", flush=True
        )
    result = func(*args, **kwargs)
    print(f"job function: {time.time() - t0:.2f}s", flush=True)
    if peak := peak_memory_mb():
        print(f"job peak memory: {peak:.0f} MB", flush=True)
    return result


def peak_memory_mb() -> float | None:
    """This process's peak resident memory, or its largest finished child's (a DDP job's
    workers), in MB; None where /proc is missing. A job forked from the server counts the
    server's pages it shares, as a job that imported torch itself would hold them."""
    import resource

    try:
        with open("/proc/self/status") as status:
            own = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        return None
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # kB on Linux
    return max(own, children) / 1024


def _process_start() -> float | None:
    """This process's start (epoch seconds), from /proc; None where there is no /proc."""
    try:
        with open("/proc/self/stat") as stat:
            ticks = int(stat.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as uptime:  # 10 ms resolution (/proc/stat's btime: 1 s)
            up = float(uptime.read().split()[0])
        return time.time() - (up - ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return None


def _plain(obj):
    """Snakemake's path and list types as built-ins, so the server unpickles them without them."""
    if isinstance(obj, str):
        return str(obj)
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return (
            type(obj)(_plain(v) for v in obj)
            if type(obj) in (list, tuple)
            else [_plain(v) for v in obj]
        )
    return obj


def _connect(path: str) -> tuple[socket.socket | None, str | None]:
    """A connection to the server, or (None, why not). A socket file nobody listens on (the
    server was killed) is removed, so later jobs do not try it."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
        return sock, None
    except FileNotFoundError:  # not started yet, or stopped and cleaned up
        sock.close()
        return None, None
    except ConnectionRefusedError:
        sock.close()
        with contextlib.suppress(OSError):
            os.unlink(path)
        return None, f"job server socket {path} is stale (no server listens; removed)"
    except OSError as err:
        sock.close()
        return None, f"cannot reach the job server at {path} ({err})"


def _server_pid(sock: socket.socket) -> int | None:
    """The pid of the process that listens on the socket (Linux's SO_PEERCRED), else None."""
    try:
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        return struct.unpack("3i", creds)[0] or None
    except (AttributeError, OSError):
        return None


def _state(pid: int) -> str | None:
    """A process's state letter (R, S, D, T: stopped, Z: zombie), None if gone or unknown."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def _wait_started(sock: socket.socket, path: str) -> str | None:
    """Wait for the child's "started" message; None once it came, else why the job cannot be
    left to the server: the server is stopped (SIGSTOP) or gone, or said nothing in time."""
    timeout = float(os.environ.get(TIMEOUT_ENV) or DEFAULT_TIMEOUT)
    pid, deadline = _server_pid(sock), time.monotonic() + timeout
    while True:
        ready, _, _ = select.select([sock], [], [], 0.25)
        if ready:
            try:
                message = _recv(sock)
            except (ConnectionError, OSError, EOFError, pickle.UnpicklingError):
                return f"the job server at {path} closed the connection before starting the job"
            if "started" in message:
                return None
            return f"the job server at {path} answered {message!r} instead of starting the job"
        state = _state(pid) if pid and os.path.isdir("/proc/self") else "?"
        if state in ("T", "t"):
            return f"the job server (pid {pid}, {path}) is stopped (SIGSTOP or a debugger)"
        if state in (None, "Z", "X"):
            return f"the job server (pid {pid}, {path}) is gone"
        if time.monotonic() > deadline:
            return (f"the job server (pid {pid}, {path}) did not start the job within "
                    f"{timeout:g} s ({TIMEOUT_ENV})")  # fmt: skip


# ---- server ---------------------------------------------------------------------------------------


def _run_child(request: dict, conn: socket.socket, others: list[socket.socket]) -> None:
    """In the forked child: become the job, send the outcome, exit without running atexit hooks."""
    code = 0
    try:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        for other in others:  # other jobs' connections: their clients must see only their child
            other.close()
        os.setpgid(0, 0)  # its own process group: the server can kill the job and its workers
        finished = _die_with_client(conn)
        _send(conn, {"started": os.getpid()})  # the client stops waiting for the server
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        try:
            with logged(request["log"]):
                result = _timed(request["func"], request["args"], request["kwargs"],
                                request.get("started"), "job server")  # fmt: skip
            reply = {"ok": True, "result": result if _picklable(result) else None}
        except BaseException as err:  # noqa: BLE001 - reported to the client, already logged
            reply = {"ok": False, "error": error_summary(err)}
            code = 1
        finished.set()
        _send(conn, reply)
    except BaseException:  # noqa: BLE001 - never return into the server's loop
        code = 2
    finally:
        os._exit(code)


def _die_with_client(conn: socket.socket) -> threading.Event:
    """Kill this job's process group the moment its client goes away (Snakemake killed, the job
    cancelled), without waiting for the server to notice: the server may be busy importing its
    late modules, and a training job left running would write checkpoints its rerun must not
    find. The client sends nothing after its request, so a read returns only when it is gone.
    Returns the event to set once the job's outcome is about to be sent."""
    finished = threading.Event()
    conn.settimeout(None)

    def watch() -> None:
        try:
            gone = conn.recv(1) == b""
        except OSError:
            gone = True
        if gone and not finished.is_set():
            os.killpg(0, signal.SIGKILL)

    threading.Thread(target=watch, name="client-watch", daemon=True).start()
    return finished


def _client_gone(conn: socket.socket) -> bool:
    """The client closed its end (it sends nothing after its request: readable means EOF)."""
    try:
        if not select.select([conn], [], [], 0)[0]:
            return False
        return conn.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


def _picklable(obj) -> bool:
    try:
        pickle.dumps(obj)
        return True
    except Exception:  # noqa: BLE001
        return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def serve(path: str | Path, parent: int | None = None, idle_timeout: float = 3600.0) -> None:
    """Bind `path`, preload, then fork a child per request until `parent` exits (or SIGTERM)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))  # bound before the slow imports: early clients wait in the backlog
    listener.listen(128)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))

    t0 = time.perf_counter()
    import importlib

    for name in PRELOAD:
        importlib.import_module(name)
    print(
        f"job server: preloaded {', '.join(PRELOAD)} in {time.perf_counter() - t0:.1f}s", flush=True
    )

    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ)
    children: dict[int, socket.socket] = {}  # pid -> the client connection it answers
    last_activity = time.monotonic()
    late = list(LATE_PRELOAD)
    try:
        while not stop:
            events = selector.select(timeout=0.5)
            if not events and late:
                t0 = time.perf_counter()
                os.environ.setdefault("MPLBACKEND", "Agg")  # before pyplot: no display here
                for name in late:
                    importlib.import_module(name)
                print(f"job server: then {', '.join(late)} in {time.perf_counter() - t0:.1f}s",
                      flush=True)  # fmt: skip
                late = []
            for key, _ in events:
                if key.fileobj is listener:
                    conn, _ = listener.accept()
                    conn.settimeout(30)
                    try:
                        request = _recv(conn)
                    except (ConnectionError, OSError, pickle.UnpicklingError, EOFError) as err:
                        print(f"job server: bad request ({err})", flush=True)
                        conn.close()
                        continue
                    if _client_gone(conn):  # it gave up waiting (this server was stopped)
                        print(f"job server: client gone before {request.get('log')} started",
                              flush=True)  # fmt: skip
                        conn.close()
                        continue
                    pid = os.fork()
                    if pid == 0:
                        listener.close()
                        _run_child(request, conn, list(children.values()))
                    conn.settimeout(None)
                    children[pid] = conn
                    selector.register(conn, selectors.EVENT_READ, pid)
                    print(f"job server: pid {pid} <- {request.get('log')}", flush=True)
                else:  # the client went away: the job's result has been sent, or it was killed
                    pid, conn = key.data, key.fileobj
                    selector.unregister(conn)
                    conn.close()
                    if children.pop(pid, None) is not None and _alive(pid):
                        _kill_group(pid)
            for pid in _reap():
                conn = children.pop(pid, None)
                if conn is not None:
                    selector.unregister(conn)
                    conn.close()
            if children:
                last_activity = time.monotonic()
            if parent and not _alive(parent):
                print(f"job server: parent {parent} is gone, stopping", flush=True)
                break
            if time.monotonic() - last_activity > idle_timeout:
                break
    finally:
        for pid in list(children):
            _kill_group(pid)
        listener.close()
        path.unlink(missing_ok=True)


def _kill_group(pid: int) -> None:
    for target in (lambda sig: os.killpg(pid, sig), lambda sig: os.kill(pid, sig)):
        try:
            target(signal.SIGTERM)
            return
        except (ProcessLookupError, PermissionError):
            continue


def _reap() -> list[int]:
    done = []
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return done
        if pid == 0:
            return done
        done.append(pid)


def start(path: str | Path, log: str | Path) -> int:
    """Start a server for this process's run (the Snakefile's onstart); returns its pid."""
    import subprocess

    Path(log).parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "robustft.jobserver", "--socket", str(path),
             "--parent", str(os.getpid())],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C on snakemake reaches jobs through their sockets
        )  # fmt: skip
    return proc.pid


def stop(pid: int) -> None:
    """Stop the server started by `start` (onsuccess / onerror); a stopped (SIGSTOP) server is
    continued so that it can."""
    for sig in (signal.SIGTERM, signal.SIGCONT):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return


def remove_stale_sockets(directory: str | Path) -> list[Path]:
    """Remove `robustft-jobs-<pid>.sock` files in `directory` whose Snakemake process is gone and
    on which nobody listens (left by a killed run); return them."""
    removed = []
    for path in Path(directory).glob(f"{SOCKET_PREFIX}*.sock"):
        pid = path.stem.removeprefix(SOCKET_PREFIX)
        if not pid.isdigit() or _alive(int(pid)):
            continue
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(path))
        except ConnectionRefusedError:
            with contextlib.suppress(OSError):
                path.unlink()
                removed.append(path)
        except OSError:
            pass
        finally:
            probe.close()
    return removed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--socket", required=True)
    parser.add_argument("--parent", type=int, default=None)
    parser.add_argument("--idle-timeout", type=float, default=3600.0)
    args = parser.parse_args(argv)
    serve(args.socket, args.parent, args.idle_timeout)


if __name__ == "__main__":
    main()
