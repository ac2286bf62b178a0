"""Flume agents: configuration files rendered from flume_conf/ templates, command lines, metrics.

Two tiers as in the paper's figure 2: one edge agent per host (tail source -> file channel -> Avro)
and one collector (Avro -> one Kafka channel per topic). Each agent serves Flume's HTTP
monitoring JSON, which `orderlake status` reads for channel fill and event counts.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from string import Template

from orderlake import contracts, jvm
from orderlake.kafka_client import java_properties
from orderlake.private import write_private
from orderlake.settings import PROJECT_ROOT, Settings
from orderlake.stack.kafka import log4j2_config

CONF_DIR = PROJECT_ROOT / "flume_conf"
COLLECTOR = "collector"
# the collector's Kafka channels (flume_conf/collector.conf.template), one per topic
COLLECTOR_CHANNELS = ("actions", "profiles", "rejects")


def agent_names(settings: Settings) -> list[str]:
    """Agent names in start order: the collector first, then one edge agent per host."""
    return [COLLECTOR, *settings.host_names]


def component_name(agent: str) -> str:
    """Supervisor/status name of an agent: flume-collector, flume-edge-host-1, ..."""
    return "flume-collector" if agent == COLLECTOR else f"flume-edge-{agent}"


def render(settings: Settings, agent: str) -> str:
    """Fill the agent's template; edge agents tail <spool>/<host>/ and send to the collector at
    ORDERLAKE_FLUME_COLLECTOR_HOST, whose Avro source listens on ORDERLAKE_BIND_HOST."""
    template = "collector.conf.template" if agent == COLLECTOR else "edge.conf.template"
    values = {
        "agent": _flume_id(agent),
        "state_dir": settings.flume_dir / agent,
        "bind_host": settings.bind_host,
        "collector_host": settings.flume_collector_host,
        "collector_port": settings.flume_collector_port,
        "bootstrap": settings.bootstrap,
        "topic_actions": contracts.TOPIC_ACTIONS,
        "topic_profiles": contracts.TOPIC_PROFILES,
        "topic_rejects": contracts.TOPIC_REJECTS,
        "max_line_bytes": settings.max_line_bytes,
        "host": agent,
        "spool_dir": settings.spool_dir / agent,
        "kafka_security": _channel_security(settings, agent) if agent == COLLECTOR else "",
    }
    return Template((CONF_DIR / template).read_text()).substitute(values)


def _channel_security(settings: Settings, agent: str) -> str:
    """The Kafka client's security settings for every Kafka channel's producer."""
    return "\n".join(
        f"{_flume_id(agent)}.channels.{channel}.kafka.producer.{key} = {value}"
        for channel in COLLECTOR_CHANNELS
        for key, value in java_properties(settings.kafka_auth()).items()
    )


def write_config(settings: Settings, agent: str) -> Path:
    (settings.flume_dir / agent).mkdir(parents=True, exist_ok=True)
    if agent != COLLECTOR:
        (settings.spool_dir / agent).mkdir(parents=True, exist_ok=True)
    path = settings.flume_dir / agent / "agent.conf"
    write_private(path, render(settings, agent))  # the Kafka password, when secured
    return path


def command(settings: Settings, agent: str, config: Path) -> list[str]:
    return [
        jvm.java_executable(settings.java_home),
        f"-Xmx{settings.flume_heap}",
        "-XX:+UseG1GC",
        "-Dflume.monitoring.type=http",
        f"-Dflume.monitoring.port={settings.flume_monitor_port_for(agent)}",
        f"-Dlog4j2.configurationFile={log4j2_config(settings)}",
        *jvm.class_archive_options("flume"),
        "-cp",
        jvm.classpath("flume"),
        "org.apache.flume.node.Application",
        "--no-reload-conf",
        "-n",
        _flume_id(agent),
        "-f",
        str(config),
    ]


def metrics(settings: Settings, agent: str, timeout: float = 2.0) -> dict | None:
    """Flume's monitoring JSON ({"CHANNEL.ch": {...}, ...}), or None when the agent is down."""
    url = f"http://127.0.0.1:{settings.flume_monitor_port_for(agent)}/metrics"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return json.load(resp)
    except (urllib.error.URLError, OSError, ValueError):
        return None


def summarize(raw: dict | None) -> dict:
    """The numbers `orderlake status` shows for one agent: what its sources accepted, what left
    for the next hop, and what its durable file channel holds (an edge agent's)."""
    if not raw:
        return {}
    sources = [v for k, v in raw.items() if k.startswith("SOURCE.")]
    sinks = [v for k, v in raw.items() if k.startswith("SINK.")]
    channels = {k.removeprefix("CHANNEL."): v for k, v in raw.items() if k.startswith("CHANNEL.")}
    # a Kafka channel has no sink: a put that succeeded is a record Kafka acknowledged
    kafka_channels = [v for v in channels.values() if "KafkaEventSendTimer" in v]
    summary: dict = {
        "events_in": sum(int(s.get("EventAcceptedCount", 0)) for s in sources),
        "events_out": sum(int(s.get("EventDrainSuccessCount", 0)) for s in sinks)
        + sum(int(c.get("EventPutSuccessCount", 0)) for c in kafka_channels),
        "sink_rollbacks": sum(int(s.get("RollbackCount", 0)) for s in sinks),
    }
    channel = channels.get("ch")
    if channel is not None:
        summary["channel_size"] = int(channel.get("ChannelSize", 0))
        summary["channel_fill_percent"] = float(channel.get("ChannelFillPercentage", 0.0))
    return summary


def _flume_id(agent: str) -> str:
    # Flume agent names are property-key prefixes: keep them to [a-z0-9_]
    return agent.replace("-", "_")
