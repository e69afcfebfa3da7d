"""The embedded PostgreSQL + PostGIS cluster.

When no ``CIU_DATABASE_URL`` is given, CIU Twin keeps a private cluster in a
data directory and talks to it over a unix socket only (no TCP port is opened).
``initdb`` and ``pg_ctl`` refuse to run as root, so as root they run as the
``postgres`` system user.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import time
from pathlib import Path
from urllib.parse import quote

from ciu.errors import DatabaseUnavailable
from ciu.settings import DatabaseSettings

#: Server settings for the embedded cluster: sized for bulk loads on a small machine.
SERVER_OPTIONS: dict[str, str] = {
    "listen_addresses": "''",
    "shared_buffers": "256MB",
    "max_wal_size": "4GB",
    "maintenance_work_mem": "512MB",
    "work_mem": "64MB",
    "synchronous_commit": "off",
    "jit": "off",
}
#: Extra settings for throw-away clusters (tests): durability is not needed there.
EPHEMERAL_OPTIONS: dict[str, str] = {"fsync": "off", "full_page_writes": "off"}


def find_bindir(explicit: Path | None = None) -> Path:
    """The directory holding ``initdb`` and ``pg_ctl`` (newest PostgreSQL first)."""
    if explicit is not None:
        candidates = [explicit]
    else:
        candidates = [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)]
        on_path = shutil.which("pg_ctl")
        if on_path:
            candidates.append(Path(on_path).resolve().parent)
    for bindir in candidates:
        if (bindir / "initdb").exists() and (bindir / "pg_ctl").exists():
            return bindir
    raise DatabaseUnavailable(
        "PostgreSQL server binaries (initdb, pg_ctl) not found; install postgresql-15 "
        "or set CIU_PG_BINDIR"
    )


def _is_root() -> bool:
    return os.geteuid() == 0


def _postgres_can_reach(directory: Path) -> bool:
    """Whether the postgres user can create the data directory in ``directory`` (made if missing)."""
    directory.mkdir(parents=True, exist_ok=True)
    probe = subprocess.run(["runuser", "-u", "postgres", "--", "test", "-x", str(directory)], capture_output=True)
    return probe.returncode == 0


class Cluster:
    """A private PostgreSQL cluster in ``pgdata`` listening on a unix socket.

    Parameters
    ----------
    pgdata
        The data directory (created by :meth:`init`).
    socket_dir
        Directory of the unix socket; keep it short.
    port
        Port number; with no TCP listener it only names the socket file.
    bindir
        Directory of the server binaries; found automatically when ``None``.
    ephemeral
        Turn off durability (fsync) for throw-away clusters such as tests.
    """

    def __init__(
        self,
        pgdata: Path,
        socket_dir: Path,
        *,
        port: int = 5432,
        bindir: Path | None = None,
        ephemeral: bool = False,
    ) -> None:
        self.pgdata = Path(pgdata)
        self.socket_dir = Path(socket_dir)
        self.port = port
        self._bindir = bindir
        self.ephemeral = ephemeral

    @classmethod
    def from_settings(cls, settings: DatabaseSettings) -> Cluster:
        """The embedded cluster of these settings.

        As root, the server runs as the ``postgres`` user, which must reach the
        data directory; when it cannot (a checkout inside a private home
        directory, say), the cluster lives in ``/var/lib/ciu-twin/<hash>``.
        """
        pgdata = settings.pgdata
        if _is_root() and not (pgdata / "PG_VERSION").exists() and not _postgres_can_reach(pgdata.parent):
            pgdata = Path("/var/lib/ciu-twin") / settings.socket_dir.name / "pgdata"
        return cls(pgdata, settings.socket_dir, port=settings.db_port, bindir=settings.pg_bindir)

    @property
    def bindir(self) -> Path:
        if self._bindir is None:
            self._bindir = find_bindir()
        return self._bindir

    @property
    def logfile(self) -> Path:
        return self.pgdata.parent / "postgres.log"

    # -- running the server binaries -------------------------------------
    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = list(args)
        if _is_root():
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd="/")
        if check and proc.returncode != 0:
            raise DatabaseUnavailable(
                f"{Path(args[0]).name} failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}"
            )
        return proc

    def _own(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        if _is_root():
            shutil.chown(path, "postgres", "postgres")

    def _check_reachable(self) -> None:
        """As root, the postgres user must be able to reach the data directory."""
        if not _is_root():
            return
        probe = subprocess.run(
            ["runuser", "-u", "postgres", "--", "test", "-w", str(self.pgdata.parent)],
            capture_output=True,
        )
        if probe.returncode != 0:
            raise DatabaseUnavailable(
                f"the postgres system user cannot write {self.pgdata.parent}; "
                "set CIU_HOME to a directory it can reach (e.g. /var/lib/ciu-twin)"
            )

    # -- lifecycle ---------------------------------------------------------
    @property
    def initialized(self) -> bool:
        return (self.pgdata / "PG_VERSION").exists()

    def init(self) -> None:
        """Create the data directory (no-op when it exists)."""
        if self.initialized:
            return
        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        self._own(self.pgdata.parent)
        self._check_reachable()
        self._own(self.pgdata)
        self._run(
            str(self.bindir / "initdb"),
            "-D", str(self.pgdata),
            "-U", "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C.UTF-8",
            "--no-instructions",
        )

    def running(self) -> bool:
        if not self.initialized:
            return False
        return self._run(str(self.bindir / "pg_ctl"), "-D", str(self.pgdata), "status", check=False).returncode == 0

    def start(self) -> None:
        """Start the server (initialising it first); no-op when it runs."""
        self.init()
        if self.running():
            return
        self._own(self.socket_dir)
        options = dict(SERVER_OPTIONS)
        if self.ephemeral:
            options.update(EPHEMERAL_OPTIONS)
        options["unix_socket_directories"] = f"'{self.socket_dir}'"
        options["port"] = str(self.port)
        opt = " ".join(f"-c {k}={v}" for k, v in options.items())
        if _is_root() and not self.logfile.exists():
            self.logfile.touch()
            shutil.chown(self.logfile, "postgres", "postgres")
        self._run(
            str(self.bindir / "pg_ctl"),
            "-D", str(self.pgdata),
            "-l", str(self.logfile),
            "-o", opt,
            "-w", "-t", "60",
            "start",
        )

    def stop(self) -> None:
        """Stop the server; no-op when it is not running."""
        if self.running():
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.pgdata), "-m", "fast", "-w", "stop")

    def destroy(self) -> None:
        """Stop the server and delete its data directory."""
        self.stop()
        shutil.rmtree(self.pgdata, ignore_errors=True)
        shutil.rmtree(self.socket_dir, ignore_errors=True)

    def url(self, dbname: str = "ciu") -> str:
        """libpq URL of a database in this cluster (over the unix socket)."""
        return f"postgresql://postgres@/{dbname}?host={quote(str(self.socket_dir), safe='/')}&port={self.port}"

    def ensure_database(self, dbname: str) -> None:
        """Create ``dbname`` when it does not exist."""
        import psycopg
        from psycopg import sql

        deadline = time.monotonic() + 30
        while True:
            try:
                with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
                    exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone()
                    if not exists:
                        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
                return
            except psycopg.OperationalError as exc:
                if time.monotonic() > deadline:
                    raise DatabaseUnavailable(f"cannot connect to the embedded cluster: {exc}") from exc
                time.sleep(0.2)
