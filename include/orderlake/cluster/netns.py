"""Hosts as Linux network namespaces on a private bridge: one ``Network`` per cluster run.

host names (compose services and their aliases) -> for each host a namespace ``ol-<run>-<host>``
whose ``eth0`` is one end of a veth pair; the other end, ``ol-<run>-v<i>``, sits on the bridge
``ol-<run>-br``. The run gets one private /24 that overlaps no address or route on the machine
(first free slice of 10.213.0.0/16, then 172.29.0.0/16, then 192.168.213.0/24): the bridge holds
.1, so the root namespace (the CLI) reaches every host; the hosts get .2, .3, ... in the order
given. Nothing is routed or NATed off the machine: the namespaces have no default route.
``ip netns exec`` bind-mounts ``/etc/netns/<namespace>/hosts`` over /etc/hosts, so each host
resolves every other one by name.

Everything carries the prefix ``ol-<run>-`` (interface names stay within Linux's 15
characters), so runs and their leftovers can be told apart. A run is recorded, before anything is
created, in ``/run/orderlake/netns/<run>.json`` (a tmpfs, emptied at boot like the namespaces
themselves): subnet, bridge, host -> (namespace, address, veth), and the owner's pid with its
start time from /proc (so a reused pid is not mistaken for the owner). ``clean_stale()`` removes
every run whose owner is gone, and every ``ol-<run>-`` namespace, link or /etc/netns directory
that no live run claims. Uses the ``ip`` command (``-j`` JSON where it reads), not netlink.

One module because the run's state file, the ``ip`` calls that build and remove a run and the
stale-run sweep are one lifecycle: each must know every name the others create.

Example::

    net = Network.create({"kafka-1": [], "flume-edge-host-1": ["host-1"]})
    subprocess.run(net.exec_argv("host-1", ["python", "-c", "..."]))
    net.cut("kafka-1"); net.restore("kafka-1")
    net.partition(["spark-worker-1"], ["kafka-1"]); net.heal(["spark-worker-1"], ["kafka-1"])
    net.teardown()
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

from orderlake.errors import OrderlakeError, UsageError
from orderlake.procs import process_start, still_running

PREFIX = "ol"  # every namespace, link and /etc/netns directory orderlake creates starts "ol-"
STATE_DIR = Path("/run/orderlake/netns")
ETC_NETNS = Path("/etc/netns")
IFNAMSIZ = 15  # longest interface name Linux accepts (IFNAMSIZ - 1)
HOST_NAME_MAX = 63  # one DNS label
SUBNET_POOLS = ("10.213.0.0/16", "172.29.0.0/16", "192.168.213.0/24")
PREFIXLEN = 24
STOP_GRACE_S = 3.0  # SIGTERM, then SIGKILL, for processes left in a namespace at teardown

_RUN_ID = re.compile(r"[a-z0-9]{1,7}")
_HOST = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_OURS = re.compile(rf"{PREFIX}-([a-z0-9]{{1,7}})-.+")


# --- names --------------------------------------------------------------------------------------
def new_run_id() -> str:
    """Six random hex digits: short enough for interface names, unlikely to repeat."""
    return secrets.token_hex(3)


def check_run_id(run_id: str) -> str:
    if not _RUN_ID.fullmatch(run_id):
        raise UsageError(f"The run id {run_id!r} must be 1 to 7 lowercase letters or digits.")
    return run_id


def link_name(run_id: str, suffix: str) -> str:
    """``ol-<run>-<suffix>``, refused when longer than an interface name may be."""
    name = f"{PREFIX}-{run_id}-{suffix}"
    if len(name) > IFNAMSIZ:
        raise UsageError(
            f"The interface name {name!r} has {len(name)} characters, more than Linux's "
            f"{IFNAMSIZ}; use a shorter run id."
        )
    return name


def bridge_name(run_id: str) -> str:
    return link_name(run_id, "br")


def veth_name(run_id: str, index: int) -> str:
    """The bridge-side end of host ``index``'s veth pair (the host's own end is ``eth0``)."""
    return link_name(run_id, f"v{index}")


def namespace_name(run_id: str, host: str) -> str:
    return f"{PREFIX}-{run_id}-{host}"


def run_of(name: str) -> str | None:
    """The run id an orderlake namespace, link or /etc/netns directory belongs to, else None."""
    match = _OURS.fullmatch(name)
    return match.group(1) if match else None


def host_table(hosts: Mapping[str, Iterable[str]] | Iterable[str]) -> dict[str, tuple[str, ...]]:
    """{host: its other names}, checked: valid, not too long, each name on one host only."""
    if isinstance(hosts, str):
        hosts = [hosts]
    table = (
        {h: tuple(a) for h, a in hosts.items()}
        if isinstance(hosts, Mapping)
        else {h: () for h in hosts}
    )
    if not table:
        raise UsageError("A cluster network needs at least one host.")
    owner: dict[str, str] = {}
    for host, aliases in table.items():
        for name in (host, *aliases):
            if not _HOST.fullmatch(name):
                raise UsageError(f"The host name {name!r} may hold only letters, digits, '.-_'.")
            if len(name) > HOST_NAME_MAX:
                raise UsageError(
                    f"The host name {name!r} is longer than {HOST_NAME_MAX} characters; shorten it."
                )
            if owner.setdefault(name.lower(), host) != host:
                raise UsageError(
                    f"The name {name!r} is given to both {owner[name.lower()]} and {host}."
                )
    return {h: tuple(dict.fromkeys(a for a in aliases if a != h)) for h, aliases in table.items()}


# --- subnets ------------------------------------------------------------------------------------
def networks_in_use(
    addresses: Sequence[Mapping[str, Any]], routes: Sequence[Mapping[str, Any]]
) -> dict[IPv4Network, str]:
    """{network: what holds it} from ``ip -j -4 addr`` and ``ip -j -4 route show table all``;
    the default route is no conflict (every private subnet would overlap it)."""
    taken: dict[IPv4Network, str] = {}
    for link in addresses:
        for info in link.get("addr_info") or []:
            if info.get("family") == "inet":
                iface = ipaddress.IPv4Interface(f"{info['local']}/{info['prefixlen']}")
                taken.setdefault(iface.network, f"{link.get('ifname')} ({iface})")
    for route in routes:
        dst = route.get("dst", "default")
        if dst == "default":
            continue
        with contextlib.suppress(ValueError):
            where = f"a route on {route['dev']}" if route.get("dev") else "a route"
            taken.setdefault(IPv4Network(dst, strict=False), f"{where} ({dst})")
    return taken


def choose_subnet(
    in_use: Mapping[IPv4Network, str], hosts: int, requested: str | None = None
) -> IPv4Network:
    """The requested subnet, checked; else the first /24 of SUBNET_POOLS overlapping nothing."""
    if requested is not None:
        try:
            subnet = IPv4Network(requested)
        except ValueError as exc:
            raise UsageError(f"The subnet {requested!r} is not an IPv4 network ({exc}).") from None
        if not subnet.is_private:
            raise UsageError(f"The subnet {subnet} is not private; use an RFC 1918 range.")
        if subnet.num_addresses - 3 < hosts:  # network, broadcast, the bridge's .1
            raise UsageError(f"The subnet {subnet} has no room for {hosts} hosts and a bridge.")
        for network, where in in_use.items():
            if subnet.overlaps(network):
                raise OrderlakeError(
                    f"The subnet {subnet} is already in use by {where}; choose another one."
                )
        return subnet
    if hosts > 2 ** (32 - PREFIXLEN) - 3:
        raise UsageError(f"{hosts} hosts do not fit in one /{PREFIXLEN}.")
    for pool in SUBNET_POOLS:
        for subnet in IPv4Network(pool).subnets(new_prefix=PREFIXLEN):
            if not any(subnet.overlaps(network) for network in in_use):
                return subnet
    raise OrderlakeError(
        f"No free /{PREFIXLEN} for the cluster network: every one in {', '.join(SUBNET_POOLS)} "
        "overlaps an address or route of this machine; remove leftovers or pass a subnet."
    )


# --- the run's model and its state file ---------------------------------------------------------
@dataclass(frozen=True)
class Host:
    """One simulated machine: its namespace, address on the bridge and bridge-side veth."""

    name: str
    aliases: tuple[str, ...]
    namespace: str
    address: IPv4Address
    veth: str


@dataclass(frozen=True)
class Network:
    """One cluster run's bridge and hosts. ``create`` builds it; ``load``/``runs`` read it back
    in another process from the state file."""

    run_id: str
    subnet: IPv4Network
    bridge: str
    hosts: dict[str, Host]
    owner_pid: int
    owner_start: int | None  # /proc/<pid>/stat start time: a reused pid is another process
    label: str = ""  # free text for status output, e.g. the compose project
    state_dir: Path = field(default=STATE_DIR, compare=False)

    @property
    def gateway(self) -> IPv4Address:
        """The bridge's own address: the root namespace's way into the hosts."""
        return self.subnet.network_address + 1

    @property
    def state_file(self) -> Path:
        return self.state_dir / f"{self.run_id}.json"

    @classmethod
    def plan(
        cls,
        run_id: str,
        subnet: IPv4Network,
        hosts: Mapping[str, Iterable[str]] | Iterable[str],
        *,
        owner_pid: int,
        owner_start: int | None,
        label: str = "",
        state_dir: Path = STATE_DIR,
    ) -> Network:
        """The names and addresses of a run, without touching the machine."""
        check_run_id(run_id)
        table = host_table(hosts)
        return cls(
            run_id=run_id,
            subnet=subnet,
            bridge=bridge_name(run_id),
            hosts={
                name: Host(
                    name=name,
                    aliases=aliases,
                    namespace=namespace_name(run_id, name),
                    address=subnet.network_address + 2 + index,
                    veth=veth_name(run_id, index),
                )
                for index, (name, aliases) in enumerate(table.items())
            },
            owner_pid=owner_pid,
            owner_start=owner_start,
            label=label,
            state_dir=state_dir,
        )

    # state file ---------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return {
            "version": 1,
            "run_id": self.run_id,
            "label": self.label,
            "owner": {"pid": self.owner_pid, "start_time": self.owner_start},
            "subnet": str(self.subnet),
            "gateway": str(self.gateway),
            "bridge": self.bridge,
            "hosts": [
                {
                    "name": h.name,
                    "aliases": list(h.aliases),
                    "namespace": h.namespace,
                    "address": str(h.address),
                    "veth": h.veth,
                }
                for h in self.hosts.values()
            ],
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any], state_dir: Path = STATE_DIR) -> Network:
        return cls(
            run_id=doc["run_id"],
            subnet=IPv4Network(doc["subnet"]),
            bridge=doc["bridge"],
            hosts={
                h["name"]: Host(
                    name=h["name"],
                    aliases=tuple(h["aliases"]),
                    namespace=h["namespace"],
                    address=IPv4Address(h["address"]),
                    veth=h["veth"],
                )
                for h in doc["hosts"]
            },
            owner_pid=doc["owner"]["pid"],
            owner_start=doc["owner"]["start_time"],
            label=doc.get("label", ""),
            state_dir=state_dir,
        )

    def write_state(self) -> None:
        """Atomically (rename), so a reader never sees half a file."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        partial = self.state_file.with_suffix(".tmp")
        partial.write_text(json.dumps(self.to_json(), indent=2) + "\n")
        partial.replace(self.state_file)

    @classmethod
    def load(cls, run_id: str, state_dir: Path = STATE_DIR) -> Network:
        path = state_dir / f"{check_run_id(run_id)}.json"
        try:
            return cls.from_json(json.loads(path.read_text()), state_dir)
        except FileNotFoundError:
            raise OrderlakeError(
                f"No cluster network {run_id!r} is recorded in {state_dir}."
            ) from None

    def owner_alive(self) -> bool:
        return still_running(self.owner_pid, self.owner_start)

    # building and removing ----------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        hosts: Mapping[str, Iterable[str]] | Iterable[str],
        *,
        subnet: str | None = None,
        run_id: str | None = None,
        owner_pid: int | None = None,
        label: str = "",
        state_dir: Path = STATE_DIR,
    ) -> Network:
        """Build the bridge and one namespace per host (``{host: aliases}`` or host names).

        The run is owned by ``owner_pid`` (default: this process); once the owner is gone,
        ``clean_stale`` may remove it. A failure half-way removes what was built.
        """
        require_tools()
        run_id = check_run_id(run_id or new_run_id())
        pid = owner_pid or os.getpid()
        if process_start(pid) is None:
            raise UsageError(f"The owner process {pid} of the cluster network is not running.")
        with _locked(state_dir):
            if (state_dir / f"{run_id}.json").exists() or run_id in _runs_on_machine():
                raise UsageError(
                    f"The cluster network {run_id!r} exists already; tear it down first."
                )
            table = host_table(hosts)
            in_use = dict(
                networks_in_use(
                    _ip_json("-4", "addr"), _ip_json("-4", "route", "show", "table", "all")
                )
            )
            for other in runs(state_dir):  # recorded, maybe not built yet
                in_use.setdefault(other.subnet, f"orderlake run {other.run_id}")
            network = cls.plan(
                run_id,
                choose_subnet(in_use, len(table), subnet),
                table,
                owner_pid=pid,
                owner_start=process_start(pid),
                label=label,
                state_dir=state_dir,
            )
            network.write_state()  # before anything exists: clean_stale sees the owner
        try:
            network._build()
        except BaseException:
            network.teardown()
            raise
        return network

    def _build(self) -> None:
        prefix = f"/{self.subnet.prefixlen}"
        _ip("link", "add", self.bridge, "type", "bridge")
        _ip("addr", "add", f"{self.gateway}{prefix}", "brd", "+", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        hosts_file = render_hosts(self)
        for host in self.hosts.values():
            etc = ETC_NETNS / host.namespace
            etc.mkdir(parents=True, exist_ok=True)
            (etc / "hosts").write_text(hosts_file)
            _ip("netns", "add", host.namespace)
            _ip(
                "link",
                "add",
                host.veth,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                host.namespace,
            )
            _ip("link", "set", host.veth, "master", self.bridge, "up")
            ns = ("-n", host.namespace)
            _ip(*ns, "addr", "add", f"{host.address}{prefix}", "brd", "+", "dev", "eth0")
            _ip(*ns, "link", "set", "eth0", "up")
            _ip(*ns, "link", "set", "lo", "up")

    def teardown(self) -> None:
        """Kill what still runs in the hosts, remove namespaces, links, /etc/netns dirs and the
        state file. Idempotent."""
        remove_run(self.run_id, self.state_dir)

    # using the hosts ----------------------------------------------------------------------------
    def host(self, name: str) -> Host:
        try:
            return self.hosts[name]
        except KeyError:
            known = ", ".join(self.hosts)
            raise UsageError(
                f"No host {name!r} in cluster network {self.run_id}: {known}."
            ) from None

    def exec_argv(self, host: str, argv: Sequence[str] = ()) -> list[str]:
        """``argv`` run inside ``host``, for subprocess: ``ip netns exec <namespace> ...``."""
        return [_ip_path(), "netns", "exec", self.host(host).namespace, *argv]

    def cut(self, host: str) -> None:
        """Unplug the host: its bridge-side veth goes down; its processes keep running."""
        _ip("link", "set", self.host(host).veth, "down")

    def restore(self, host: str) -> None:
        _ip("link", "set", self.host(host).veth, "up")

    def partition(self, side_a: Iterable[str], side_b: Iterable[str]) -> None:
        """Cut every host of ``side_a`` from every host of ``side_b``, each side still whole:
        each host's neighbour entry for the other side's addresses points at a MAC no port
        has, so frames are dropped silently, as across a failed switch (no netfilter or tc
        actions needed); connections time out instead of being refused."""
        for here, there in self._pairs(side_a, side_b):
            _ip("-n", self.host(here).namespace, "neigh", "replace", str(self.host(there).address),
                "lladdr", NOWHERE_MAC, "dev", "eth0", "nud", "permanent")  # fmt: skip

    def heal(self, side_a: Iterable[str], side_b: Iterable[str]) -> None:
        """Undo ``partition``: the hosts resolve each other's addresses again (ARP)."""
        for here, there in self._pairs(side_a, side_b):
            _ip("-n", self.host(here).namespace, "neigh", "del", str(self.host(there).address),
                "dev", "eth0", missing_ok=True)  # fmt: skip

    def _pairs(self, side_a: Iterable[str], side_b: Iterable[str]) -> list[tuple[str, str]]:
        a, b = list(side_a), list(side_b)
        return [(x, y) for x in a for y in b] + [(y, x) for x in a for y in b]

    def link_up(self, host: str) -> bool:
        (link,) = _ip_json("link", "show", self.host(host).veth)
        return "UP" in link.get("flags", [])

    def pids(self, host: str) -> list[int]:
        """Processes running in the host's namespace."""
        return namespace_pids(self.host(host).namespace)


# a locally administered unicast address no interface of a run has: frames sent to it are
# flooded by the bridge and dropped by every host
NOWHERE_MAC = "02:00:00:0d:ea:d0"


def render_hosts(network: Network) -> str:
    """The /etc/hosts every namespace of ``network`` sees: localhost, then each host's names."""
    lines = [
        f"# orderlake cluster network {network.run_id} ({network.subnet}); written by orderlake",
        "127.0.0.1\tlocalhost",
        "::1\tlocalhost ip6-localhost ip6-loopback",
    ]
    lines += [f"{h.address}\t{' '.join((h.name, *h.aliases))}" for h in network.hosts.values()]
    return "\n".join(lines) + "\n"


def runs(state_dir: Path = STATE_DIR) -> list[Network]:
    """Every run recorded in ``state_dir`` (unreadable files are skipped)."""
    found = []
    for path in sorted(state_dir.glob("*.json")) if state_dir.is_dir() else []:
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            found.append(Network.from_json(json.loads(path.read_text()), state_dir))
    return found


def remove_run(run_id: str, state_dir: Path = STATE_DIR) -> None:
    """Remove everything of ``run_id`` found on the machine, state file or not (after a crash
    the state may be missing or older than what was built). Idempotent."""
    require_tools()
    namespaces = [n for n in _namespaces() if run_of(n) == run_id]
    for namespace in namespaces:
        _stop_processes(namespace)
    links = [n for n in _links() if run_of(n) == run_id]
    # veths first (deleting one end deletes the pair), then the bridge they hung on
    for name in sorted(links, key=lambda n: n == bridge_name(run_id)):
        _ip("link", "del", name, missing_ok=True)
    for namespace in namespaces:
        _ip("netns", "del", namespace, missing_ok=True)
    if ETC_NETNS.is_dir():
        for etc in ETC_NETNS.iterdir():
            if run_of(etc.name) == run_id:
                shutil.rmtree(etc, ignore_errors=True)
    (state_dir / f"{run_id}.json").unlink(missing_ok=True)


def clean_stale(state_dir: Path = STATE_DIR) -> list[str]:
    """Remove every run whose owner is gone, and every ``ol-<run>-`` namespace, link or
    /etc/netns directory no live run claims. Returns the removed run ids."""
    require_tools()
    with _locked(state_dir):
        # the machine first, the records second: whatever exists now was recorded before it was
        # built (create writes the state first), so a live run is never mistaken for a leftover
        found = _runs_on_machine()
        recorded = {n.run_id: n for n in runs(state_dir)}
        recorded_ids = {p.stem for p in state_dir.glob("*.json")} if state_dir.is_dir() else set()
        live = {run for run, network in recorded.items() if network.owner_alive()}
        stale = sorted((found | recorded_ids) - live)
        for run_id in stale:
            remove_run(run_id, state_dir)
    return stale


# --- processes ----------------------------------------------------------------------------------
def namespace_pids(namespace: str) -> list[int]:
    done = _run_ip(["netns", "pids", namespace])
    if done.returncode != 0:
        return []
    return [int(p) for p in done.stdout.split()]


def _stop_processes(namespace: str) -> None:
    """SIGTERM every process in the namespace, SIGKILL what is left after STOP_GRACE_S."""
    deadline = time.monotonic() + STOP_GRACE_S
    sig = signal.SIGTERM
    while pids := [p for p in namespace_pids(namespace) if p != os.getpid()]:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        if time.monotonic() > deadline:
            if sig == signal.SIGKILL and time.monotonic() > deadline + STOP_GRACE_S:
                return  # unkillable (uninterruptible sleep): deleting the name still works
            sig = signal.SIGKILL
        time.sleep(0.1)


# --- the ip command -----------------------------------------------------------------------------
def require_tools() -> None:
    """Root and iproute2's ``ip``, or one sentence saying which is missing."""
    if os.geteuid() != 0:
        raise OrderlakeError("Network namespaces need root: run this command as root (sudo).")
    _ip_path()


def _ip_path() -> str:
    path = shutil.which("ip") or shutil.which("ip", path="/usr/sbin:/sbin:/usr/bin:/bin")
    if path is None:
        raise OrderlakeError(
            "The `ip` command (iproute2) is missing; install it with `apt-get install iproute2`."
        )
    return path


def _run_ip(args: Sequence[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_ip_path(), *args], capture_output=True, text=True, timeout=30, check=False
    )


_MISSING = ("Cannot find device", "No such file or directory", "does not exist")


def _ip(*args: str, missing_ok: bool = False) -> str:
    done = _run_ip(args)
    if done.returncode != 0:
        message = done.stderr.strip().replace("\n", "; ")
        if missing_ok and any(m in message for m in _MISSING):
            return ""
        raise OrderlakeError(f"`ip {' '.join(args)}` failed: {message}")
    return done.stdout


def _ip_json(*args: str) -> list[dict[str, Any]]:
    out = _ip("-j", *args).strip()
    return json.loads(out) if out else []


def _namespaces() -> list[str]:
    return [n["name"] for n in _ip_json("netns", "list")]


def _links() -> list[str]:
    return [link["ifname"] for link in _ip_json("link", "show")]


def _runs_on_machine() -> set[str]:
    """Run ids of every orderlake namespace, link and /etc/netns directory on the machine."""
    names = [*_namespaces(), *_links()]
    if ETC_NETNS.is_dir():
        names += [p.name for p in ETC_NETNS.iterdir()]
    return {run for run in map(run_of, names) if run}


@contextlib.contextmanager
def _locked(state_dir: Path) -> Iterator[None]:
    """One process at a time chooses a subnet or cleans up (an flock, released on death)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    with open(state_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield
