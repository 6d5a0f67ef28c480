"""Hosts for the tests: machines made of Linux namespaces on this one, joined by a switch.

- `Network`: the switch, a bridge in a network namespace of its own, one port (a veth) per host. Pulling a
  host's cable is `ip link set PORT nomaster` there: no reset, its packets simply vanish.
- `Host`: one machine: a network namespace (one address on the switch, no route anywhere else), a hostname,
  and a disk no one else sees (a tmpfs mounted at `home` in a mount namespace of its own: every host has the
  same path, each its own disk; outside the host the folder stays empty). A `keeper` process (`sleep`) holds
  its namespaces; commands enter them with nsenter. Killed whole, the host loses its disk, as a machine whose
  disk is memory would; `boot` gives it a fresh one.
- `HeadRedis`: the head's redis-server, append-only file on the head's disk. The test process itself reads it
  through a unix socket in the test's own folder, so this process needs no address on the switch.
- `Cluster`: the head, the worker hosts (each running `tensorq worker`) and a laptop that only runs the CLI.

Every name starts with PREFIX, and the addresses are SUBNET.0/24, of 198.18.0.0/15 (RFC 2544's benchmarking
range, routed nowhere), given only to these namespaces: the root namespace gets no address and no link.
`sweep_leftovers` removes what an earlier run that died left (its processes, namespaces, and with them their
links and mounts). Needs root; `unavailable` says why it cannot run here.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.vocab import READY_NODE_STATES
from tests.support.processes import FAST_LAPSE, REPO, _parent_of, redis_server_binary, tq_env, wait_until

PREFIX = "tqhosts-"  # every namespace these tests make; nothing else on the machine may use it
SUBNET = "198.18.93"  # SUBNET.0/24: head .1, workers .11 .. , laptop .100
NETNS_DIR = Path("/run/netns")  # where `ip netns` keeps the namespaces it names
REDIS_PORT = 6390  # the head's own port, in the head's namespace only
DISK_OPTIONS = "size=4g,mode=0700"  # a host's tmpfs: it takes memory only for what is written to it
LOCK = Path("/tmp/tqhosts.lock")  # one run of these tests at a time: a second waits, never sweeps the first's


def ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")


def unavailable() -> str | None:
    """Why hosts cannot be made here, or None."""
    if os.geteuid() != 0:
        return "hosts in namespaces need root (ip netns, veth, mount)"
    missing = [tool for tool in ("ip", "unshare", "nsenter") if shutil.which(tool) is None]
    if missing:
        return f"hosts in namespaces need {', '.join(missing)} (Debian: iproute2, util-linux)"
    return None


def pids_in(netns: str) -> list[int]:
    """Every process in the named network namespace (what `ip netns pids` says, without a process of its own)."""
    try:
        ns = os.stat(NETNS_DIR / netns)
    except FileNotFoundError:
        return []
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            st = os.stat(entry / "ns" / "net")
        except OSError:  # gone meanwhile, or a kernel thread
            continue
        if (st.st_ino, st.st_dev) == (ns.st_ino, ns.st_dev):
            found.append(int(entry.name))
    return found


def kill_everything_in(netns: str) -> None:
    """SIGKILL every process in the namespace, until none is left (a dying parent may have started one)."""
    deadline = time.monotonic() + 10
    while pids := pids_in(netns):
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"processes {pids} in {netns} outlived SIGKILL")
        time.sleep(0.05)


def remove_netns(netns: str) -> None:
    kill_everything_in(netns)
    if (NETNS_DIR / netns).exists():
        ip("netns", "delete", netns)  # its links go with it (a veth's peer too), and the bridge


def ours() -> list[str]:
    """The namespaces of these tests that exist now."""
    return sorted(p.name for p in NETNS_DIR.glob(f"{PREFIX}*")) if NETNS_DIR.is_dir() else []


def sweep_leftovers() -> list[str]:
    """Remove what an earlier run left (killed before its finalizers ran): the names it removed."""
    left = ours()
    for netns in left:
        remove_netns(netns)
    return left


class Network:
    """The switch: a bridge with no address in a namespace of its own, a port per host."""

    bridge = "br0"

    def __init__(self) -> None:
        self.netns = f"{PREFIX}net"

    def create(self) -> None:
        ip("netns", "add", self.netns)
        ip("-n", self.netns, "link", "add", self.bridge, "type", "bridge")
        ip("-n", self.netns, "link", "set", self.bridge, "up")

    def port(self, host: Host) -> str:
        return f"to-{host.name}"

    def plug(self, host: Host) -> None:
        """A cable from the host's eth0 to a port of the bridge, and the host's address on it."""
        port = self.port(host)
        ip("-n", self.netns, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", host.netns)
        ip("-n", self.netns, "link", "set", port, "master", self.bridge, "up")
        ip("-n", host.netns, "addr", "add", f"{host.address}/24", "dev", "eth0")
        ip("-n", host.netns, "link", "set", "eth0", "up")
        ip("-n", host.netns, "link", "set", "lo", "up")

    def cut(self, host: Host) -> None:
        """The host's cable pulled at the switch: its link stays up, its packets go nowhere."""
        ip("-n", self.netns, "link", "set", self.port(host), "nomaster")

    def heal(self, host: Host) -> None:
        ip("-n", self.netns, "link", "set", self.port(host), "master", self.bridge)

    def is_cut(self, host: Host) -> bool:
        done = subprocess.run(["ip", "-n", self.netns, "-o", "link", "show", self.port(host)],
                              capture_output=True, text=True, timeout=30)
        return f"master {self.bridge}" not in done.stdout

    def remove(self) -> None:
        remove_netns(self.netns)


@dataclass
class Host:
    """One machine: its network namespace, hostname and private disk at `home`, held by its keeper."""

    name: str
    address: str
    home: Path  # the same path on every host, each its own tmpfs there
    keeper: subprocess.Popen[bytes] | None = None
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)  # started here: reaped when killed

    @property
    def netns(self) -> str:
        return f"{PREFIX}{self.name}"

    @property
    def up(self) -> bool:
        return self.keeper is not None and self.keeper.poll() is None

    def create(self) -> None:
        ip("netns", "add", self.netns)

    def boot(self) -> None:
        """Start the keeper: a mount and UTS namespace of the host's own (a fresh tmpfs at `home`, the host's
        name as hostname), inside its network namespace."""
        self.home.mkdir(parents=True, exist_ok=True)
        script = 'mount -t tmpfs -o "$3" tmpfs "$1" && hostname "$2" && echo up && exec sleep infinity'
        keeper = subprocess.Popen(
            ["ip", "netns", "exec", self.netns, "unshare", "--mount", "--uts", "--propagation", "private",
             "sh", "-c", script, "sh", str(self.home), self.name, DISK_OPTIONS],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert keeper.stdout is not None and keeper.stderr is not None
        if keeper.stdout.readline() != b"up\n":
            _, why = keeper.communicate(timeout=10)
            raise RuntimeError(f"host {self.name} did not boot: {why.decode().strip()}")
        self.keeper = keeper

    def command(self, argv: list[str]) -> list[str]:
        """`argv` run inside the host (its network, disk and hostname), from the repository."""
        assert self.up, f"host {self.name} is down"
        assert self.keeper is not None
        return ["nsenter", f"--target={self.keeper.pid}", "--mount", "--net", "--uts", f"--wd={REPO}", "--", *argv]

    def popen(self, argv: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
        with open(log, "ab") as out:
            proc = subprocess.Popen(self.command(argv), env=env, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT)
        self.procs.append(proc)
        return proc

    def run(self, argv: list[str], env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.command(argv), env=env, capture_output=True, text=True, timeout=timeout)

    def disk(self, path: Path) -> Path:
        """Where this process reads and writes the host's own `path` (through its keeper's root)."""
        assert self.keeper is not None
        return Path(f"/proc/{self.keeper.pid}/root") / path.relative_to("/")

    def kill(self) -> None:
        """Every process of the host SIGKILLed at once, its keeper too (its disk goes with it)."""
        kill_everything_in(self.netns)
        for proc in self.procs:
            proc.wait(10)
        if self.keeper is not None:
            self.keeper.communicate(timeout=10)  # reaped, its pipes closed
        self.procs.clear()
        self.keeper = None

    def remove(self) -> None:
        self.kill()
        remove_netns(self.netns)


@dataclass
class HeadRedis:
    """The head's redis-server: on the head's address, append-only file on the head's disk; and on a unix socket
    in the test's folder, for this process."""

    head: Host
    socket: Path
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    _client: Any = None

    @property
    def url(self) -> str:
        """What the hosts use."""
        return f"redis://{self.head.address}:{REDIS_PORT}/0"

    @property
    def local_url(self) -> str:
        """What this process uses."""
        return f"unix://{self.socket}"

    def client(self) -> Any:
        """A redis-py client of this process's (it reconnects by itself after a restart)."""
        import redis

        if self._client is None:
            self._client = redis.Redis(unix_socket_path=str(self.socket), socket_timeout=10)
        return self._client

    def start(self) -> None:
        data = self.head.home / "redis"
        self.head.disk(data).mkdir(exist_ok=True)
        self.proc = self.head.popen(
            [redis_server_binary(), "--bind", self.head.address, "--port", str(REDIS_PORT), "--dir", str(data),
             "--unixsocket", str(self.socket), "--unixsocketperm", "700", "--appendonly", "yes",
             "--appendfsync", "always", "--save", ""], self.log, {"PATH": os.environ.get("PATH", "")})
        wait_until(self.answers, 30, "the head's redis-server")

    def answers(self) -> bool:
        try:
            return bool(self.client().ping())
        except Exception:
            return False

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)


@dataclass
class Cluster:
    """A head with Redis, worker hosts each running `tensorq worker --gpus none`, and a laptop for the CLI."""

    folder: Path  # the test's own (logs, the Redis socket): no host's disk
    network: Network
    head: Host
    workers: list[Host]
    laptop: Host
    redis: HeadRedis
    launchers: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)  # by host name
    _client: Any = None

    @property
    def hosts(self) -> list[Host]:
        return [self.head, *self.workers, self.laptop]

    def env(self, host: Host, **extra: str) -> dict[str, str]:
        # leases lapse in 5 s (FAST_LAPSE); TENSORQ_LEASE_TTL_S in the test's environment sets another (15, the
        # default, to measure the takeover time docs/BENCHMARKS.md gives)
        lease = os.environ.get("TENSORQ_LEASE_TTL_S") or FAST_LAPSE["TENSORQ_LEASE_TTL_S"]
        return tq_env(self.redis.url, host.home, TENSORQ_LEASE_TTL_S=lease, **extra)

    def tq(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """`tensorq ARGS` on the laptop."""
        return self.laptop.run([sys.executable, "-m", "producer", *args], self.env(self.laptop), timeout)

    @property
    def client(self) -> Any:
        """A Python client in this process, on the head's Redis through its unix socket (reading the store only:
        jobs are sent from the laptop)."""
        if self._client is None:
            from producer.client import Client

            self._client = Client(self.redis.local_url)
        return self._client

    def start_worker(self, host: Host) -> None:
        self.launchers[host.name] = host.popen(
            [sys.executable, "-m", "producer", "worker", "--gpus", "none", "--cpu-threads", "1"],
            self.folder / f"{host.name}.log", self.env(host))

    def node(self, host: Host) -> dict[str, Any] | None:
        """The heartbeat of the host's worker, the one its launcher now runs (None: none is live). A worker killed
        with its host still heartbeats for HEARTBEAT_TTL_S: its successor on the host gets another name."""
        launcher = self.launchers.get(host.name)
        return next((n for n in self.client.registry.live() if str(n.get("name", "")).endswith(f"@{host.name}")
                     and launcher is not None and _parent_of(int(n.get("pid") or 0)) == launcher.pid), None)

    def serving(self, host: Host) -> bool:
        launcher = self.launchers.get(host.name)
        assert launcher is not None and launcher.poll() is None, \
            f"{host.name}'s worker exited; log:\n{self.log_of(host)[-3000:]}"
        node = self.node(host)
        return node is not None and node.get("state") in READY_NODE_STATES

    def host_of(self, worker: str | None) -> Host:
        """The host a node name (`cpu@w1`) runs on (the hostname is the host's name)."""
        [host] = [h for h in self.workers if str(worker).endswith(f"@{h.name}")]
        return host

    def log_of(self, host: Host) -> str:
        log = self.folder / f"{host.name}.log"
        return log.read_text(errors="replace") if log.exists() else ""

    def reset(self) -> None:
        """What a test leaves is put back: every cable in, Redis up, every worker host up and serving, no job
        left queued or running."""
        for host in self.hosts:
            if self.network.is_cut(host):
                self.network.heal(host)
        if self.redis.proc is None or self.redis.proc.poll() is not None:
            self.redis.start()
        for host in self.workers:
            if not host.up or self.launchers[host.name].poll() is not None:
                if host.up:
                    host.kill()
                host.boot()
                self.start_worker(host)
        left = [r.id for state in ("queued", "running") for r in self.client.jobs(state=state, limit=1000)]
        if left:
            self.client.cancel([self.client.job(j) for j in left], wait_s=30)
        wait_until(lambda: all(self.serving(h) for h in self.workers), 120, "every worker host serving")

    @classmethod
    def planned(cls, folder: Path, workers: int) -> Cluster:
        home = folder / "home"  # each host's own disk, at the same path on every host
        head = Host("head", f"{SUBNET}.1", home)
        return cls(folder, Network(), head, [Host(f"w{k}", f"{SUBNET}.{10 + k}", home) for k in range(1, workers + 1)],
                   Host("laptop", f"{SUBNET}.100", home), HeadRedis(head, folder / "redis.sock", folder / "redis.log"))

    def build(self) -> None:
        self.network.create()
        for host in self.hosts:
            host.create()
            self.network.plug(host)
            host.boot()
        self.redis.start()
        for host in self.workers:
            self.start_worker(host)
        self.reset()

    def remove(self) -> None:
        """Every process of every host, their namespaces (their links and disks with them), the switch."""
        for host in self.hosts:
            host.remove()
        self.network.remove()


@contextmanager
def built(folder: Path, workers: int = 3) -> Iterator[Cluster]:
    """The hosts, built and every worker serving; on the way out (also after a failure) every process,
    namespace, link and mount removed."""
    with open(LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        sweep_leftovers()
        cluster = Cluster.planned(folder, workers)
        try:
            cluster.build()
            yield cluster
        finally:
            try:
                cluster.remove()
            finally:
                sweep_leftovers()  # whatever a failing removal left
