"""A throwaway Docker engine with locally built images, for the ``docker``-marked tests (issue 7).

No container registry is reachable from these machines, so the images the
containers environment uses by default are built here from Debian packages
(``debootstrap --variant=minbase --include=...`` into a folder, a small
entrypoint written into it, then ``docker import`` with the image's CMD, ENV
and EXPOSE) and tagged with the official names (FIELD-NOTES, "A real Docker
engine on these machines"). Each stand-in honours the part of the official
image's interface that drillbook relies on; see :data:`RECIPES`.

::

    python tests/support/docker_engine.py up STATE_DIR    # engine + images; prints DOCKER_HOST
    python tests/support/docker_engine.py down STATE_DIR  # stop it, remove everything under STATE_DIR
    python tests/support/docker_engine.py images          # only load/build the images into $DOCKER_HOST

``up`` needs root; it installs ``docker.io`` and ``debootstrap`` with apt-get
when they are missing, starts ``dockerd`` with its socket, data root and exec
root under STATE_DIR (overlay2, or vfs when overlay2 cannot start, said out
loud) and a bridge of its own (so two engines on one machine never share
addresses), without touching iptables or ip_forward (ports published on
127.0.0.1 reach containers through docker-proxy; containers get no route
out). On
success it writes ``STATE_DIR/docker_host`` and exits 0; when the machine does
not allow it, it writes the reason to ``STATE_DIR/unavailable``, leaves
nothing running and exits 3.

Built root filesystems are cached as tarballs under
``$DRILLBOOK_IMAGE_CACHE`` (default ``~/.cache/drillbook/docker-images``),
named by a hash of their recipe, so a later run only imports them (a few
seconds each). Standard library only: this runs before and outside pytest.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
UNAVAILABLE = 3
ENGINE_START_TIMEOUT_S = 60.0
ENGINE_STOP_TIMEOUT_S = 30.0
# Each engine gets a bridge of its own (not docker0), so two engines on one machine never share
# container addresses: named after the state dir, on a free 172.31.N.0/24.
_BRIDGE_PREFIX = "dbk"
_BRIDGE_NETS = tuple(f"172.31.{n}" for n in range(1, 255))
_RUN_DOCKER = Path("/run/docker")
_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

POSTGRES_ENTRYPOINT = r"""#!/bin/sh
# drillbook's stand-in for the entrypoint of the official postgres image: the parts of its
# interface drillbook relies on. POSTGRES_USER (default postgres), POSTGRES_PASSWORD (required,
# unless POSTGRES_HOST_AUTH_METHOD=trust), POSTGRES_DB (default: the user), POSTGRES_INITDB_ARGS,
# PGDATA; password auth from any host; port 5432; the server logs
# "database system is ready to accept connections" once during init and once when it serves.
set -eu
if [ "${1#-}" != "$1" ]; then set -- postgres "$@"; fi
if [ "$1" = postgres ] && [ "$(id -u)" = 0 ]; then
    mkdir -p "$PGDATA" /var/run/postgresql
    chown -R postgres:postgres "$PGDATA" /var/run/postgresql
    chmod 700 "$PGDATA"
    exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi
if [ "$1" = postgres ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
    : "${POSTGRES_USER:=postgres}"
    : "${POSTGRES_DB:=$POSTGRES_USER}"
    if [ -z "${POSTGRES_PASSWORD:-}" ] && [ "${POSTGRES_HOST_AUTH_METHOD:-}" != trust ]; then
        echo "Error: Database is uninitialized and superuser password is not specified." >&2
        echo "       You must specify POSTGRES_PASSWORD to a non-empty value for the superuser." >&2
        exit 1
    fi
    pwfile="$(mktemp)"
    printf '%s\n' "${POSTGRES_PASSWORD:-}" > "$pwfile"
    # shellcheck disable=SC2086  # POSTGRES_INITDB_ARGS is a list of words, as in the official image
    initdb --username="$POSTGRES_USER" --pwfile="$pwfile" ${POSTGRES_INITDB_ARGS:-} -D "$PGDATA"
    rm -f "$pwfile"
    printf "\nlisten_addresses = '*'\n" >> "$PGDATA/postgresql.conf"
    printf '\nhost all all all %s\n' "${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}" >> "$PGDATA/pg_hba.conf"
    pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start
    if [ "$POSTGRES_DB" != postgres ]; then
        echo 'CREATE DATABASE :"db";' | psql -v ON_ERROR_STOP=1 -v db="$POSTGRES_DB" \
            --username "$POSTGRES_USER" --no-password --dbname postgres
    fi
    pg_ctl -D "$PGDATA" -m fast -w stop
    echo
    echo 'PostgreSQL init process complete; ready for start up.'
    echo
fi
exec "$@"
"""

REDIS_ENTRYPOINT = r"""#!/bin/sh
# drillbook's stand-in for the entrypoint of the official redis image: a command starting with
# an option (or a .conf file) runs redis-server; the server runs as the redis user in /data;
# without a config file, protected mode is off (the official image builds it that way).
set -eu
if [ "${1#-}" != "$1" ] || [ "${1%.conf}" != "$1" ]; then set -- redis-server "$@"; fi
if [ "$1" = redis-server ] && [ "$(id -u)" = 0 ]; then
    chown -R redis:redis /data
    exec setpriv --reuid=redis --regid=redis --init-groups "$0" "$@"
fi
if [ "$1" = redis-server ] && { [ $# -lt 2 ] || [ "${2%.conf}" = "$2" ]; }; then
    shift
    set -- redis-server --protected-mode no "$@"
fi
exec "$@"
"""

MOTO_SERVER = r"""#!/bin/sh
# moto's server, as /usr/local/bin/moto_server in the official motoserver/moto image
# (which runs `moto_server -H 0.0.0.0`, port 5000 or $MOTO_PORT).
exec python3 -m moto.server "$@"
"""

# What a debootstrapped rootfs does not need inside an image.
_TRIM = ("usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/locale", "var/cache/apt",
         "var/lib/apt/lists", "var/log")


@dataclass(frozen=True)
class Recipe:
    """One image: Debian packages, files written into the rootfs, and the ``docker import`` changes."""

    image: str
    packages: tuple[str, ...]
    changes: tuple[str, ...]
    files: dict[str, tuple[str, int]] = field(default_factory=dict)  # path -> (text, mode)
    remove: tuple[str, ...] = ()
    mkdirs: tuple[str, ...] = ()
    pip: tuple[str, ...] = ()  # requirements installed into /opt/python (constraints.txt applies)

    def key(self, suite: str) -> str:
        """Hash of everything that shapes the image but the pinned Python versions (see :func:`_stale`)."""
        data = json.dumps({"suite": suite, **asdict(self)}, sort_keys=True)
        return hashlib.sha256(data.encode()).hexdigest()[:16]


RECIPES: tuple[Recipe, ...] = (
    Recipe(
        image="postgres:15",
        packages=("postgresql-15",),
        files={"usr/local/bin/docker-entrypoint.sh": (POSTGRES_ENTRYPOINT, 0o755)},
        # The cluster the Debian package creates: the image starts without one, as the official one.
        remove=("var/lib/postgresql/15", "etc/postgresql/15"),
        mkdirs=("var/lib/postgresql/data",),
        changes=(
            'ENTRYPOINT ["docker-entrypoint.sh"]', 'CMD ["postgres"]',
            f"ENV PATH={_PATH}:/usr/lib/postgresql/15/bin",
            "ENV PGDATA=/var/lib/postgresql/data", "ENV LANG=C.UTF-8",
            "EXPOSE 5432",
        ),
    ),
    Recipe(
        image="redis:7",
        packages=("redis-server",),
        files={"usr/local/bin/docker-entrypoint.sh": (REDIS_ENTRYPOINT, 0o755)},
        mkdirs=("data",),
        changes=('ENTRYPOINT ["docker-entrypoint.sh"]', 'CMD ["redis-server"]', "WORKDIR /data",
                 f"ENV PATH={_PATH}",
                 "EXPOSE 6379"),
    ),
    Recipe(
        image="motoserver/moto:latest",
        packages=("python3",),
        files={"usr/local/bin/moto_server": (MOTO_SERVER, 0o755)},
        pip=("moto[s3]", "flask", "flask-cors"),
        changes=('ENTRYPOINT ["/usr/local/bin/moto_server", "-H", "0.0.0.0"]',
                 f"ENV PATH={_PATH}",
                 "ENV PYTHONPATH=/opt/python", "ENV PYTHONUNBUFFERED=1", "EXPOSE 5000"),
    ),
)


class Unavailable(Exception):
    """This machine cannot provide an engine (or the images); the message says why."""


def say(message: str) -> None:
    print(f"docker-engine: {message}", file=sys.stderr, flush=True)


# -- the engine ----------------------------------------------------------------------------------


def engine_answers(sock: Path, timeout: float = 0.5) -> bool:
    """``GET /_ping`` answered ``OK`` on the unix socket ``sock``."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(timeout)
            conn.connect(str(sock))
            conn.sendall(b"GET /_ping HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := conn.recv(4096):
                data += chunk
    except OSError:
        return False
    return data.startswith(b"HTTP/1.1 200") and data.endswith(b"OK")


def ensure_tools() -> None:
    """dockerd, docker, debootstrap and ip on PATH; installed with apt-get (as root) when missing."""
    missing = [pkg for tool, pkg in (("dockerd", "docker.io"), ("docker", "docker.io"),
                                     ("debootstrap", "debootstrap"), ("ip", "iproute2"))
               if not shutil.which(tool)]
    missing = list(dict.fromkeys(missing))
    if not missing:
        return
    if not shutil.which("apt-get"):
        raise Unavailable(f"{', '.join(missing)} missing and no apt-get to install them")
    say(f"installing {' '.join(missing)} with apt-get")
    started = time.monotonic()
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-q"],
                    ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing]):
        result = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
        if result.returncode != 0:
            tail = " | ".join((result.stdout + result.stderr).strip().splitlines()[-3:])
            raise Unavailable(f"`{' '.join(command)}` failed ({result.returncode}): {tail}")
    say(f"installed in {time.monotonic() - started:.1f} s")


def start_engine(state: Path) -> str:
    """Start dockerd under ``state``; return its DOCKER_HOST. overlay2 first, vfs if overlay2 fails."""
    state.mkdir(parents=True, exist_ok=True)
    bridge = _make_bridge(state)
    # dockerd makes /run/docker/plugins whatever its exec root: removed afterwards unless it was there.
    (state / "run_docker_existed").write_text("1" if _RUN_DOCKER.exists() else "0")
    sock = state / "docker.sock"
    failures: list[str] = []
    for driver in ("overlay2", "vfs"):
        started = time.monotonic()
        process = _spawn_dockerd(state, driver, bridge)
        while time.monotonic() - started < ENGINE_START_TIMEOUT_S:
            if engine_answers(sock):
                say(f"dockerd {driver} answered in {time.monotonic() - started:.1f} s at unix://{sock}")
                if failures:
                    say("NOTE: overlay2 storage failed, running on vfs (every container copies its "
                        f"whole image): {failures[0]}")
                return f"unix://{sock}"
            if process.poll() is not None:
                break
            time.sleep(0.1)
        log_tail = " | ".join(_tail(state / f"dockerd-{driver}.log", 3))
        failures.append(f"{driver}: dockerd exited ({process.poll()}) or did not answer within "
                        f"{ENGINE_START_TIMEOUT_S:.0f} s: {log_tail}")
        _stop_process(process.pid, state)
        _unmount_under(state)
        shutil.rmtree(state / "data", ignore_errors=True)
    raise Unavailable("dockerd did not start: " + "; ".join(failures))


def _make_bridge(state: Path) -> str:
    """A Linux bridge for this engine with an unused 172.31.N.1/24; its name is kept in the state dir."""
    if not shutil.which("ip"):
        raise Unavailable("no `ip` command (iproute2) to create the engine's bridge")
    taken = subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True, check=False).stdout
    digest = hashlib.sha256(str(state).encode()).hexdigest()
    # Searched from a point of the state dir's own, so two engines starting at once rarely collide.
    start = int(digest[:4], 16) % len(_BRIDGE_NETS)
    order = _BRIDGE_NETS[start:] + _BRIDGE_NETS[:start]
    net = next((n for n in order if f" {n}." not in taken), None)
    if net is None:
        raise Unavailable("no free 172.31.N.0/24 network for the engine's bridge")
    name = _BRIDGE_PREFIX + digest[:8]
    # A fixed (locally administered) MAC: a bridge left to itself takes its lowest port's MAC, so
    # when a container exits the gateway's MAC changes under the others, whose ARP entries then
    # send to a dead address until they go stale (connections to the host time out meanwhile).
    mac = "02:" + ":".join(digest[i:i + 2] for i in range(8, 18, 2))
    for command in (["ip", "link", "add", name, "address", mac, "type", "bridge"],
                    ["ip", "addr", "add", f"{net}.1/24", "dev", name],
                    ["ip", "link", "set", name, "up"]):
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            subprocess.run(["ip", "link", "delete", name], capture_output=True, check=False)
            raise Unavailable(f"`{' '.join(command)}` failed: {result.stderr.strip()}")
    (state / "bridge").write_text(name)
    return name


def _spawn_dockerd(state: Path, driver: str, bridge: str) -> subprocess.Popen[bytes]:
    # dockerd 20.10 writes its identity key to /etc/docker/key.json unless told otherwise.
    config = state / "daemon.json"
    config.write_text(json.dumps({"deprecated-key-path": str(state / "key.json")}))
    log = (state / f"dockerd-{driver}.log").open("wb")
    command = ["dockerd", "--config-file", str(config), "--host", f"unix://{state / 'docker.sock'}",
               "--data-root", str(state / "data"), "--exec-root", str(state / "exec"),
               "--pidfile", str(state / "dockerd.pid"), "--storage-driver", driver,
               "--bridge", bridge,
               # No iptables rules, no ip_forward: published ports reach containers through
               # docker-proxy on 127.0.0.1; containers get no route out (the network rule).
               "--iptables=false", "--ip-forward=false", "--ip-masq=false"]
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                               start_new_session=True)
    log.close()
    (state / "dockerd.pid.spawned").write_text(str(process.pid))
    return process


def stop_engine(state: Path) -> None:
    """Remove every container, stop dockerd (and its containerd), unmount, delete ``state``."""
    sock = state / "docker.sock"
    if engine_answers(sock):
        docker = _docker_cli()
        ids = subprocess.run([docker, "-H", f"unix://{sock}", "ps", "-aq"], capture_output=True, text=True,
                             check=False).stdout.split()
        if ids:
            subprocess.run([docker, "-H", f"unix://{sock}", "rm", "-f", "-v", *ids], capture_output=True,
                           check=False)
    pid_file = state / "dockerd.pid.spawned"
    if pid_file.exists():
        _stop_process(int(pid_file.read_text()), state)
    _unmount_under(state)
    marker = state / "run_docker_existed"
    if marker.exists() and marker.read_text() == "0":
        with contextlib.suppress(OSError):
            (_RUN_DOCKER / "plugins").rmdir()
            _RUN_DOCKER.rmdir()
    bridge = state / "bridge"
    if bridge.exists():
        subprocess.run(["ip", "link", "delete", bridge.read_text().strip()], capture_output=True, check=False)
    shutil.rmtree(state, ignore_errors=True)
    if state.exists():
        say(f"could not remove {state} entirely")


def _stop_process(pid: int, state: Path) -> None:
    """SIGTERM the dockerd session (dockerd, containerd, shims), SIGKILL what outlives the deadline."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + ENGINE_STOP_TIMEOUT_S
    while time.monotonic() < deadline and _group_alive(pid):
        time.sleep(0.2)
    if _group_alive(pid):
        say(f"dockerd (pid {pid}) outlived {ENGINE_STOP_TIMEOUT_S:.0f} s; killing its process group")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    # Reap it if it is our child (up's failure path); elsewhere it is not.
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    # containerd-shim processes leave dockerd's process group; find them by their bundle path.
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(state) in cmdline and int(proc.name) != os.getpid():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(proc.name), signal.SIGKILL)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie leader still counts for killpg; look at the state too.
    try:
        status = Path(f"/proc/{pgid}/stat").read_text().split(") ", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return status != "Z"


def _unmount_under(state: Path) -> None:
    """Lazily unmount every mount point under ``state`` (overlay layers, netns, shm), deepest first."""
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return
    prefix = str(state.resolve())
    points = [line.split()[4] for line in lines if len(line.split()) > 4]
    for point in sorted({p for p in points if p == prefix or p.startswith(prefix + "/")},
                        key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)


def _tail(path: Path, lines: int) -> list[str]:
    try:
        return path.read_text(errors="replace").strip().splitlines()[-lines:]
    except OSError:
        return ["(no log)"]


def _docker_cli() -> str:
    """The docker CLI shipped next to dockerd (same API version), else the one on PATH."""
    dockerd = shutil.which("dockerd")
    if dockerd:
        beside = Path(dockerd).resolve().parent.parent / "bin" / "docker"
        if beside.exists():
            return str(beside)
    return shutil.which("docker") or "docker"


# -- the images ----------------------------------------------------------------------------------


def cache_dir() -> Path:
    given = os.environ.get("DRILLBOOK_IMAGE_CACHE")
    if given:
        return Path(given)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "drillbook" / "docker-images"


def debian_source() -> tuple[str, str]:
    """(mirror URL, suite) from this machine's apt sources and os-release: no host name in code."""
    suite = ""
    with contextlib.suppress(OSError):
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("VERSION_CODENAME="):
                suite = line.split("=", 1)[1].strip().strip('"')
    texts: list[str] = []
    for path in [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]:
        with contextlib.suppress(OSError):
            texts.append(path.read_text())
    for text in texts:
        # deb822 stanzas: the URIs of a stanza whose Suites include the bare suite name.
        for stanza in re.split(r"\n\s*\n", text):
            fields = dict(re.findall(r"^(\w[\w-]*):\s*(.*)$", stanza, flags=re.M))
            if suite and suite in fields.get("Suites", "").split() and "URIs" in fields:
                return fields["URIs"].split()[0], suite
        # one-line format: deb [options] URI SUITE COMPONENTS...
        for line in text.splitlines():
            words = re.sub(r"\[[^]]*\]", " ", line.split("#", 1)[0]).split()
            if len(words) >= 3 and words[0] == "deb" and words[2] == suite:
                return words[1], suite
    raise Unavailable("no Debian mirror found in the apt sources (needed to build images)")


def prefetch_debs(recipes: Sequence[Recipe], mirror: str, suite: str, debs: Path) -> None:
    """``debootstrap --download-only`` for every recipe's packages at once, into the .deb cache."""
    started = time.monotonic()
    packages = sorted({package for recipe in recipes for package in recipe.packages})
    with tempfile.TemporaryDirectory(prefix="drillbook-debs-") as tmp:
        command = ["debootstrap", "--download-only", "--variant=minbase", f"--cache-dir={debs}",
                   f"--include={','.join(packages)}", suite, str(Path(tmp) / "rootfs"), mirror]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            tail = " | ".join((result.stdout + result.stderr).strip().splitlines()[-4:])
            raise Unavailable(f"debootstrap --download-only failed ({result.returncode}): {tail}")
        archives = Path(tmp) / "rootfs" / "var" / "cache" / "apt" / "archives"
        for deb in archives.glob("*.deb"):
            if not (debs / deb.name).exists():
                shutil.copy2(deb, debs / deb.name)
    say(f"fetched the packages in {time.monotonic() - started:.1f} s")


def build_rootfs_tar(recipe: Recipe, mirror: str, suite: str, out: Path, debs: Path) -> None:
    """debootstrap the recipe into a temp folder, customise it, and write it as ``out`` (a tar)."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="drillbook-rootfs-") as tmp:
        root = Path(tmp) / "rootfs"
        command = ["debootstrap", "--variant=minbase", f"--cache-dir={debs}",
                   f"--include={','.join(recipe.packages)}", suite, str(root), mirror]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            tail = " | ".join((result.stdout + result.stderr).strip().splitlines()[-4:])
            raise Unavailable(f"debootstrap for {recipe.image} failed ({result.returncode}): {tail}")
        for relative in (*recipe.remove, *_TRIM):
            target = root / relative
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            else:
                target.unlink(missing_ok=True)
        for relative in recipe.mkdirs:
            (root / relative).mkdir(parents=True, exist_ok=True)
        for relative, (text, mode) in recipe.files.items():
            path = root / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            path.chmod(mode)
        if recipe.pip:
            _pip_into(root / "opt" / "python", recipe.pip, recipe.image)
            _pins_file(out).write_text(json.dumps(_installed(root / "opt" / "python"), sort_keys=True))
        partial = out.with_suffix(".partial")
        result = subprocess.run(["tar", "--numeric-owner", "-C", str(root), "-cf", str(partial), "."],
                                capture_output=True, text=True, check=False)
        if result.returncode != 0:
            partial.unlink(missing_ok=True)
            raise Unavailable(f"tar of the {recipe.image} rootfs failed: {result.stderr.strip()[-300:]}")
        partial.rename(out)
    say(f"built {recipe.image} rootfs in {time.monotonic() - started:.1f} s "
        f"({out.stat().st_size / 1e6:.0f} MB, {out.name})")


def _pip_into(target: Path, requirements: Sequence[str], image: str) -> None:
    """Install wheels for the rootfs' Python with this interpreter's pip (same Debian, same 3.11)."""
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
               "--no-compile", "--target", str(target), "-c", str(REPO / "constraints.txt"), *requirements]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise Unavailable(f"pip install for {image} failed: {result.stderr.strip()[-400:]}")
    # Console scripts carry this interpreter's path: the image calls `python3 -m` instead.
    shutil.rmtree(target / "bin", ignore_errors=True)


def import_image(recipe: Recipe, tar: Path, docker_host: str) -> None:
    started = time.monotonic()
    command = [_docker_cli(), "-H", docker_host, "import"]
    for change in recipe.changes:
        command += ["--change", change]
    result = subprocess.run([*command, str(tar), recipe.image], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise Unavailable(f"docker import of {recipe.image} failed: {result.stderr.strip()[-300:]}")
    say(f"imported {recipe.image} in {time.monotonic() - started:.1f} s")


def provide_images(docker_host: str, recipes: Sequence[Recipe] = RECIPES) -> None:
    """Every recipe's image on the engine: built once (cached by recipe hash), then imported."""
    mirror, suite = debian_source()
    cache = cache_dir()
    debs = cache / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    tars = {recipe.image: cache / f"{_slug(recipe.image)}-{recipe.key(suite)}.tar" for recipe in recipes}
    to_build = [recipe for recipe in recipes if _stale(recipe, tars[recipe.image])]
    if to_build:
        say(f"building {', '.join(r.image for r in to_build)} from Debian {suite} ({mirror})")
        # Every .deb fetched once into the shared cache, then the builds run side by side
        # (each a debootstrap reading that cache: about as long together as the largest alone).
        prefetch_debs(to_build, mirror, suite, debs)
        with ThreadPoolExecutor(max_workers=len(to_build)) as pool:
            for future in [pool.submit(build_rootfs_tar, r, mirror, suite, tars[r.image], debs)
                           for r in to_build]:
                future.result()
        _prune(cache, keep=set(tars.values()))
    with ThreadPoolExecutor(max_workers=2) as pool:
        for future in [pool.submit(import_image, r, tars[r.image], docker_host) for r in recipes]:
            future.result()


def _prune(cache: Path, *, keep: set[Path]) -> None:
    """Tarballs of older recipes go: the cache holds one per image."""
    for path in cache.glob("*.tar"):
        if path not in keep:
            path.unlink(missing_ok=True)
            _pins_file(path).unlink(missing_ok=True)


def _stale(recipe: Recipe, tar: Path) -> bool:
    """No tarball yet, or one whose installed Python distributions constraints.txt now pins otherwise.

    Only the pins of what the image holds count: a new pin for an unrelated package
    (constraints.txt changes often) does not rebuild it.
    """
    if not tar.exists():
        return True
    if not recipe.pip:
        return False
    try:
        installed: dict[str, str] = json.loads(_pins_file(tar).read_text())
    except (OSError, ValueError):
        return True
    pinned = _constraints()
    return any(pinned.get(name, version) != version for name, version in installed.items())


def _pins_file(tar: Path) -> Path:
    return tar.with_suffix(".pins.json")


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _constraints() -> dict[str, str]:
    """``name==version`` lines of constraints.txt, by normalised name."""
    pins: dict[str, str] = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        match = re.match(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^]]*\])?\s*==\s*([^\s;#]+)", line)
        if match:
            pins[_normalise(match.group(1))] = match.group(3)
    return pins


def _installed(target: Path) -> dict[str, str]:
    """Distributions installed under ``target`` (``name-version.dist-info``), by normalised name."""
    found: dict[str, str] = {}
    for info in target.glob("*.dist-info"):
        name, _, version = info.name.removesuffix(".dist-info").rpartition("-")
        found[_normalise(name)] = version
    return found


def _slug(image: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", image).strip("-")


# -- command line --------------------------------------------------------------------------------


@contextlib.contextmanager
def _timed(what: str) -> Iterator[None]:
    started = time.monotonic()
    yield
    say(f"{what} in {time.monotonic() - started:.1f} s")


def up(state: Path) -> int:
    """Engine and images, or the reason in ``state/unavailable`` with nothing left running."""
    try:
        if os.geteuid() != 0:
            raise Unavailable("not root: starting dockerd needs root")
        with _timed("engine and images ready"):
            ensure_tools()
            try:
                docker_host = start_engine(state)
                provide_images(docker_host)
            except BaseException:
                stop_engine(state)
                raise
    except Unavailable as exc:
        state.mkdir(parents=True, exist_ok=True)
        (state / "unavailable").write_text(str(exc))
        say(f"no Docker engine for the tests: {exc}")
        return UNAVAILABLE
    (state / "docker_host").write_text(docker_host)
    print(docker_host)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="docker_engine.py", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="start an engine under STATE_DIR and provide the images").add_argument(
        "state", type=Path)
    sub.add_parser("down", help="stop that engine and remove STATE_DIR").add_argument("state", type=Path)
    sub.add_parser("images", help="build/load the images into the engine at $DOCKER_HOST")
    args = parser.parse_args(argv)
    if args.command == "up":
        return up(args.state.resolve())
    if args.command == "down":
        with _timed("engine stopped and removed"):
            stop_engine(args.state.resolve())
        return 0
    host = os.environ.get("DOCKER_HOST")
    if not host:
        parser.error("set DOCKER_HOST to the engine that should receive the images")
    try:
        provide_images(host)
    except Unavailable as exc:
        say(str(exc))
        return UNAVAILABLE
    return 0


if __name__ == "__main__":
    sys.exit(main())
