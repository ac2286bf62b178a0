"""orderlake.cluster.netns without touching the machine: names, subnet choice, the hosts file and
the state file. The namespaces themselves are tested in tests/cluster/."""

from __future__ import annotations

import os
from ipaddress import IPv4Address, IPv4Network

import pytest

from orderlake import procs
from orderlake.cluster import netns
from orderlake.errors import OrderlakeError, UsageError

# `ip -j -4 addr` and `ip -j -4 route show table all` of a machine with a VPN on 10.213.0.0/23
ADDRESSES = [
    {"ifname": "lo", "addr_info": [{"family": "inet", "local": "127.0.0.1", "prefixlen": 8}]},
    {"ifname": "eth0", "addr_info": [{"family": "inet", "local": "192.0.2.2", "prefixlen": 24}]},
    {"ifname": "tun0", "addr_info": [{"family": "inet", "local": "10.213.1.7", "prefixlen": 23}]},
    {"ifname": "eth1", "addr_info": []},
]
ROUTES = [
    {"dst": "default", "gateway": "192.0.2.1", "dev": "eth0"},
    {"dst": "10.213.2.0/24", "gateway": "10.213.1.1", "dev": "tun0"},
    {"type": "local", "dst": "127.0.0.1", "dev": "lo", "table": "local"},
]


def plan(**hosts: list[str]) -> netns.Network:
    return netns.Network.plan(
        "a1b2c3",
        IPv4Network("10.213.5.0/24"),
        {name.replace("_", "-"): aliases for name, aliases in hosts.items()},
        owner_pid=4242,
        owner_start=123456,
        label="orderlake",
    )


# --- names ------------------------------------------------------------------------------------
def test_names_carry_the_prefix_and_the_run_and_fit_linux():
    run = netns.new_run_id()
    assert netns.check_run_id(run) == run and len(run) == 6
    assert netns.bridge_name("a1b2c3") == "ol-a1b2c3-br"
    assert netns.veth_name("a1b2c3", 7) == "ol-a1b2c3-v7"
    assert netns.namespace_name("a1b2c3", "airflow-dag-processor") == (
        "ol-a1b2c3-airflow-dag-processor"
    )
    # the longest run id with a three-digit host index (a /24 holds 253 hosts) just fits
    assert len(netns.veth_name("abcdefg", 252)) == 15


def test_a_name_beyond_fifteen_characters_is_refused():
    with pytest.raises(UsageError, match=r"'ol-abcdefg-v1000' has 16 characters, more than"):
        netns.veth_name("abcdefg", 1000)
    with pytest.raises(UsageError, match="1 to 7 lowercase letters or digits"):
        netns.check_run_id("abcdefgh")
    with pytest.raises(UsageError, match="longer than 63 characters"):
        netns.host_table(["h" * 64])


@pytest.mark.parametrize(
    "name, run",
    [
        ("ol-a1b2c3-br", "a1b2c3"),
        ("ol-a1b2c3-v12", "a1b2c3"),
        ("ol-x-flume-edge-host-1", "x"),
        ("eth0", None),
        ("olive", None),
        ("ol-Bad-br", None),
        ("ol-a1b2c3-", None),
        ("docker0", None),
    ],
)
def test_the_run_is_read_back_from_a_name(name, run):
    assert netns.run_of(name) == run


def test_host_names_and_aliases_are_checked():
    assert netns.host_table({"flume-edge-host-1": ["host-1", "flume-edge-host-1"]}) == {
        "flume-edge-host-1": ("host-1",)
    }
    assert netns.host_table(["kafka-1", "kafka-2"]) == {"kafka-1": (), "kafka-2": ()}
    with pytest.raises(UsageError, match="The name 'HOST-1' is given to both a and b"):
        netns.host_table({"a": ["host-1"], "b": ["HOST-1"]})
    with pytest.raises(UsageError, match="may hold only"):
        netns.host_table(["bad/name"])
    with pytest.raises(UsageError, match="at least one host"):
        netns.host_table([])


# --- subnets ----------------------------------------------------------------------------------
def test_addresses_and_routes_in_use_are_read_from_ip_json():
    taken = netns.networks_in_use(ADDRESSES, ROUTES)
    assert taken[IPv4Network("10.213.0.0/23")] == "tun0 (10.213.1.7/23)"
    assert taken[IPv4Network("10.213.2.0/24")] == "a route on tun0 (10.213.2.0/24)"
    assert IPv4Network("192.0.2.0/24") in taken and IPv4Network("127.0.0.0/8") in taken
    assert not any(n.prefixlen == 0 for n in taken), "the default route is no conflict"


def test_the_first_free_slice_is_chosen():
    taken = netns.networks_in_use(ADDRESSES, ROUTES)
    assert netns.choose_subnet(taken, hosts=17) == IPv4Network("10.213.3.0/24")
    assert netns.choose_subnet({}, hosts=17) == IPv4Network("10.213.0.0/24")
    # the whole first pool taken (e.g. by a /16 VPN): the next pool
    assert netns.choose_subnet({IPv4Network("10.0.0.0/8"): "wg0"}, hosts=3) == IPv4Network(
        "172.29.0.0/24"
    )


def test_no_free_subnet_is_one_sentence():
    everything = {IPv4Network("10.0.0.0/8"): "a", IPv4Network("172.16.0.0/12"): "b"}
    everything[IPv4Network("192.168.0.0/16")] = "c"
    with pytest.raises(OrderlakeError, match=r"^No free /24 for the cluster network: .*subnet\.$"):
        netns.choose_subnet(everything, hosts=3)
    with pytest.raises(UsageError, match="do not fit"):
        netns.choose_subnet({}, hosts=254)


def test_a_requested_subnet_is_checked():
    taken = netns.networks_in_use(ADDRESSES, ROUTES)
    assert netns.choose_subnet(taken, 3, "10.99.0.0/28") == IPv4Network("10.99.0.0/28")
    with pytest.raises(OrderlakeError, match=r"10.213.1.0/24 is already in use by tun0 \("):
        netns.choose_subnet(taken, 3, "10.213.1.0/24")
    with pytest.raises(UsageError, match="not private"):
        netns.choose_subnet(taken, 3, "8.8.8.0/24")
    with pytest.raises(UsageError, match="no room for 14 hosts"):
        netns.choose_subnet(taken, 14, "10.99.0.0/28")
    with pytest.raises(UsageError, match="not an IPv4 network"):
        netns.choose_subnet(taken, 3, "10.99.0.1/24")


# --- the plan, the hosts file and the state file ----------------------------------------------
def test_a_plan_gives_each_host_its_namespace_address_and_veth():
    network = plan(kafka_1=[], flume_edge_host_1=["host-1"])
    assert network.gateway == IPv4Address("10.213.5.1")
    assert network.bridge == "ol-a1b2c3-br"
    edge = network.hosts["flume-edge-host-1"]
    assert edge == netns.Host(
        "flume-edge-host-1",
        ("host-1",),
        "ol-a1b2c3-flume-edge-host-1",
        IPv4Address("10.213.5.3"),
        "ol-a1b2c3-v1",
    )
    assert network.hosts["kafka-1"].address == IPv4Address("10.213.5.2")


def test_the_hosts_file_lists_every_name():
    text = netns.render_hosts(plan(kafka_1=[], flume_edge_host_1=["host-1"]))
    lines = [line for line in text.splitlines() if not line.startswith("#")]
    assert lines == [
        "127.0.0.1\tlocalhost",
        "::1\tlocalhost ip6-localhost ip6-loopback",
        "10.213.5.2\tkafka-1",
        "10.213.5.3\tflume-edge-host-1 host-1",
    ]


def test_the_state_file_round_trips(tmp_path):
    network = netns.Network.plan(
        "a1b2c3",
        IPv4Network("10.213.5.0/24"),
        {"kafka-1": [], "flume-edge-host-1": ["host-1"]},
        owner_pid=4242,
        owner_start=123456,
        label="orderlake",
        state_dir=tmp_path,
    )
    network.write_state()
    assert [p.name for p in tmp_path.iterdir()] == ["a1b2c3.json"]
    again = netns.Network.load("a1b2c3", tmp_path)
    assert again == network and list(again.hosts) == ["kafka-1", "flume-edge-host-1"]
    assert netns.runs(tmp_path) == [network]
    (tmp_path / "broken.json").write_text("{")  # half a file from elsewhere: skipped
    assert netns.runs(tmp_path) == [network]
    with pytest.raises(OrderlakeError, match="No cluster network 'ffffff' is recorded"):
        netns.Network.load("ffffff", tmp_path)


def test_the_owner_is_this_process_not_just_its_pid():
    mine = procs.process_start(os.getpid())
    assert mine is not None
    network = plan(kafka_1=[])
    assert not network.owner_alive()  # pid 4242 with another start time, or no such process
    same = netns.Network.plan(
        "a1b2c3",
        network.subnet,
        ["kafka-1"],
        owner_pid=os.getpid(),
        owner_start=mine,
    )
    assert same.owner_alive()
    reused = netns.Network.plan(
        "a1b2c3",
        network.subnet,
        ["kafka-1"],
        owner_pid=os.getpid(),
        owner_start=mine - 1,
    )
    assert not reused.owner_alive()


# --- the errors a person sees before anything is touched --------------------------------------
def test_not_root_and_no_ip_are_one_sentence_each(monkeypatch):
    monkeypatch.setattr(netns.os, "geteuid", lambda: 1000)
    with pytest.raises(OrderlakeError, match=r"^Network namespaces need root: .*\.$"):
        netns.Network.create(["kafka-1"])
    monkeypatch.setattr(netns.os, "geteuid", lambda: 0)
    monkeypatch.setattr(netns.shutil, "which", lambda *args, **kwargs: None)
    with pytest.raises(OrderlakeError, match=r"^The `ip` command \(iproute2\) is missing; .*\.$"):
        netns.clean_stale()
