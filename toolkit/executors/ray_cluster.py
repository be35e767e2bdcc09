"""A throwaway single-node Ray cluster on 127.0.0.1, for tests, benchmarks and trying ``--executor ray``.

``LocalRayCluster`` runs ``ray start --head --block`` (argument list, no shell) with a private temporary
directory and free ports, waits until the head reports that it started, and hands out its address
``127.0.0.1:PORT``. :meth:`stop` ends exactly the processes it started, by process id (the blocking
``ray start`` and its descendants), never by name: ``ray stop`` would kill every Ray process of the
machine, including clusters that belong to someone else.

Ray's servers listen on every interface, so the cluster uses token authentication with a private random
token (``RAY_AUTH_MODE=token``, ``RAY_AUTH_TOKEN``), never a token file of the user's. While the cluster runs,
this process (the driver) holds the same token in its environment; :meth:`stop` restores the environment.

    with LocalRayCluster(num_cpus=2) as address:
        get_executor("ray", address=address).map(jobs)
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from toolkit.errors import MissingDependencyError
from toolkit.executors.base import ExecutorError


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ray_command() -> str:
    """The ``ray`` CLI of this Python environment."""
    candidate = Path(sys.executable).parent / "ray"
    if candidate.is_file():
        return str(candidate)
    found = shutil.which("ray")
    if not found:
        raise MissingDependencyError("the `ray` command is not installed in this environment (pip install 'ray[default]')")
    return found


class LocalRayCluster:
    def __init__(self, num_cpus: int = 2, object_store_bytes: int = 300 * 1024**2, start_timeout: float = 90.0):
        self.num_cpus = int(num_cpus)
        self.object_store_bytes = int(object_store_bytes)
        self.start_timeout = float(start_timeout)
        self.port: int | None = None
        self.proc: subprocess.Popen | None = None
        self.temp_dir: Path | None = None
        self.token = secrets.token_hex(32)
        self._saved_env: dict[str, str | None] | None = None

    @property
    def address(self) -> str:
        if self.port is None:
            raise ExecutorError("the local Ray cluster is not started")
        return f"127.0.0.1:{self.port}"

    def start(self) -> str:
        # Short path under /tmp: Ray's unix sockets live under its temp dir and socket paths are limited
        # to 107 bytes, which a pytest tmp_path can exceed.
        self.temp_dir = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp" if os.path.isdir("/tmp") else None))
        self.port = free_port()
        log = self.temp_dir / "ray-start.log"
        argv = [ray_command(), "start", "--head", f"--port={self.port}", "--node-ip-address=127.0.0.1",
                f"--num-cpus={self.num_cpus}", f"--temp-dir={self.temp_dir}", "--include-dashboard=false",
                "--disable-usage-stats", f"--object-store-memory={self.object_store_bytes}",
                # Ports that otherwise default to fixed numbers: two clusters on one machine must not clash.
                f"--ray-client-server-port={free_port()}", f"--dashboard-agent-listen-port={free_port()}",
                f"--metrics-export-port={free_port()}", "--block"]
        env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", **self._auth_env())
        env.pop("RAY_AUTH_TOKEN_PATH", None)
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         env=env, start_new_session=True)
        deadline = time.monotonic() + self.start_timeout
        while True:
            text = log.read_text(errors="replace") if log.exists() else ""
            if "Ray runtime started" in text:
                self._use_auth(self._auth_env())
                return self.address
            if self.proc.poll() is not None or time.monotonic() > deadline:
                tail = " | ".join(line.strip() for line in text.strip().splitlines()[-3:])
                self.stop()
                raise ExecutorError(f"`ray start --head` did not start within {self.start_timeout:.0f} s: {tail}")
            time.sleep(0.2)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the processes this cluster started (by pid), then remove its temporary directory."""
        if self.proc is not None:
            import psutil  # a dependency of ray

            try:
                started = psutil.Process(self.proc.pid).children(recursive=True)
            except psutil.Error:
                started = []
            if self.proc.poll() is None:
                # `ray start --block` stops the cluster it started when it receives SIGTERM.
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(timeout=10)
            _, alive = psutil.wait_procs(started, timeout=10)
            for p in alive:
                try:
                    p.terminate()
                except psutil.Error:
                    pass
            _, alive = psutil.wait_procs(alive, timeout=5)
            for p in alive:
                try:
                    p.kill()
                except psutil.Error:
                    pass
            self.proc = None
        if self._saved_env is not None:
            self._use_auth(self._saved_env)
            self._saved_env = None
        if self.temp_dir is not None:
            shutil.rmtree(self.temp_dir, ignore_errors=True)
            self.temp_dir = None
        self.port = None

    def _auth_env(self) -> dict[str, str]:
        return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": self.token}

    def _use_auth(self, values: dict[str, str | None]) -> None:
        """Give this process (the driver) the auth settings ``values`` (None = unset), remembering the old ones.

        Ray reads ``RAY_AUTH_MODE`` into its config when it is imported and caches the token, so both are
        refreshed, as Ray itself does when ``ray.init()`` turns token auth on (Ray versions without token
        auth have nothing to refresh).
        """
        if self._saved_env is None:
            self._saved_env = {k: os.environ.get(k) for k in (*self._auth_env(), "RAY_AUTH_TOKEN_PATH")}
        for k in self._saved_env:
            v = values.get(k)
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        if "ray" in sys.modules:
            try:
                from ray._raylet import AuthenticationTokenLoader, Config
            except ImportError:
                return
            Config.initialize("")
            AuthenticationTokenLoader.instance().reset_cache()

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
