"""One broker host of the multi-host deployment: the apache/kafka image's environment -> a node.

docker-compose.yaml configures brokers kafka-1..3 the way the official ``apache/kafka`` image
reads its environment. Without Docker, each broker host runs orderlake's own broker jars
(jvm/kafka) with a server.properties derived from exactly that environment, by the image's own
rule (``kafka.docker.KafkaDockerWrapper`` in the broker jar, Kafka 4.3.1):

- every variable ``KAFKA_<NAME>`` becomes one property: ``KAFKA_`` dropped, lower case, then
  ``_`` -> ``.``, ``___`` -> ``-``, ``__`` -> ``_`` (``KAFKA_NODE_ID`` -> ``node.id``,
  ``KAFKA_LISTENER_NAME_SASL__SSL_SCRAM___SHA___512_SASL_JAAS_CONFIG`` ->
  ``listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config``); variables without the prefix are
  not properties.

Exceptions, as in the image unless marked (orderlake):

- ``CLUSTER_ID`` is the storage's cluster id, given to the format step, not a property.
- The launcher's variables are JVM settings, never properties: ``LAUNCHER_VARIABLES`` below.
  ``KAFKA_HEAP_OPTS``, ``KAFKA_JVM_PERFORMANCE_OPTS`` and ``KAFKA_OPTS`` reach the JVM's command
  line (``command``); the log4j ones are ignored (orderlake's log4j2 configuration is used).
- Without ``KAFKA_LISTENERS``, a broker listens on its advertised listeners' ports on every
  address (the image's configure script); a controller-only node has no advertised listeners.
- The image's TLS file convention: ``KAFKA_SSL_KEYSTORE_FILENAME``,
  ``KAFKA_SSL_TRUSTSTORE_FILENAME`` name files in the image's secrets directory
  (``/etc/kafka/secrets``) and ``KAFKA_SSL_KEYSTORE_CREDENTIALS``, ``KAFKA_SSL_KEY_CREDENTIALS``,
  ``KAFKA_SSL_TRUSTSTORE_CREDENTIALS`` name files there holding the passwords; they become
  ``ssl.keystore.location`` and the passwords. (The image applies this only when an advertised
  listener's name ends in SSL, and the truststore pair only with client authentication;
  orderlake applies it whenever the variables are set and drops the variables themselves,
  which the image would also pass on as unknown properties.)
- (orderlake) ``KAFKA_LOG_DIRS`` names a path inside a container: it becomes the host's own
  ``data_dir``; and the image's secrets directory in any value (``KAFKA_OPTS``' JAAS file, a
  truststore location) becomes the host's ``secrets_dir``.

Secrets never sit in the environment (it is in docker-compose.yaml and in ``ps e``): the
environment names files in the secrets directory (``secured_environment``), ``write_secrets``
makes them with mode 0600, and the rendered server.properties, which carries the keystore
password as the image's does, is written 0600 as well.

Example::

    env = {**compose_service.environment, **secured_environment("kafka-1")}
    write_secrets(secrets, "kafka-1", ["kafka-1"], broker_password)
    config = prepare(env, data_dir, {"broker": broker_password, "admin": admin_password},
                     secrets_dir=secrets)
    argv = command(env, config, secrets_dir=secrets)
"""

from __future__ import annotations

import json
import shlex
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from orderlake import jvm
from orderlake.cluster import tls
from orderlake.errors import OrderlakeError
from orderlake.private import write_private
from orderlake.stack.kafka import LOG4J2

PREFIX = "KAFKA_"
IMAGE_SECRETS_DIR = "/etc/kafka/secrets"
# the image's kafka.docker.Constants.ExcludeServerPropsEnv: read by its launcher, not properties
LAUNCHER_VARIABLES = frozenset(
    {
        "KAFKA_VERSION",
        "KAFKA_HEAP_OPTS",
        "KAFKA_LOG4J_OPTS",
        "KAFKA_OPTS",
        "KAFKA_JMX_OPTS",
        "KAFKA_JVM_PERFORMANCE_OPTS",
        "KAFKA_GC_LOG_OPTS",
        "KAFKA_LOG4J_ROOT_LOGLEVEL",
        "KAFKA_LOG4J_LOGGERS",
        "KAFKA_TOOLS_LOG4J_LOGLEVEL",
        "KAFKA_JMX_HOSTNAME",
    }
)
# the image's TLS convention: variable -> (property, True when the file's content is the value)
SECRET_FILE_VARIABLES = {
    "KAFKA_SSL_KEYSTORE_FILENAME": ("ssl.keystore.location", False),
    "KAFKA_SSL_KEYSTORE_CREDENTIALS": ("ssl.keystore.password", True),
    "KAFKA_SSL_KEY_CREDENTIALS": ("ssl.key.password", True),
    "KAFKA_SSL_TRUSTSTORE_FILENAME": ("ssl.truststore.location", False),
    "KAFKA_SSL_TRUSTSTORE_CREDENTIALS": ("ssl.truststore.password", True),
}
# kafka-server-start.sh's and kafka-run-class.sh's defaults, as the image runs them
DEFAULT_HEAP_OPTS = "-Xmx1G -Xms1G"
DEFAULT_JVM_PERFORMANCE_OPTS = (
    "-server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 "
    "-XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true"
)

# --- security: listener names, mechanism, principals ---------------------------------------------
# The client and inter-broker listener is named after its protocol, as in the image's examples:
# the image's configure script switches its TLS convention on for listener names ending in SSL.
LISTENER = "SASL_SSL"
CONTROLLER_LISTENER = "CONTROLLER"
MECHANISM = "SCRAM-SHA-512"
# The controller listener authenticates with PLAIN over TLS, not SCRAM: a KRaft quorum keeps
# SCRAM credentials in its metadata log, which no voter holds before the first leader election,
# so SCRAM between voters never elects a leader (KAFKA-15513; seen here with Kafka 4.3.1: every
# Vote request fails authentication). PLAIN's credential is static in each node's JAAS file
# (0600) and travels only inside TLS.
CONTROLLER_MECHANISM = "PLAIN"
BROKER_USER = "broker"
ADMIN_USER = "admin"
AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
SCRAM_LOGIN_MODULE = "org.apache.kafka.common.security.scram.ScramLoginModule"
PLAIN_LOGIN_MODULE = "org.apache.kafka.common.security.plain.PlainLoginModule"
FORMAT_TIMEOUT_S = 120.0


def property_name(variable: str) -> str:
    """The image's rule for one ``KAFKA_`` variable: ``KAFKA_NODE_ID`` -> ``node.id``."""
    name = variable.removeprefix(PREFIX).lower().replace("_", ".")
    return name.replace("...", "-").replace("..", "_")


def properties(env: Mapping[str, str], data_dir: Path, secrets_dir: Path | None = None) -> str:
    """server.properties for the node ``env`` describes (the rule and exceptions above)."""
    env = _with_listeners(env)
    lines = [
        "# Generated by orderlake.cluster.kafka_node from the broker's KAFKA_* environment",
        "# (docker-compose.yaml, the apache/kafka image's convention); edit that, not this file.",
    ]
    for variable in sorted(env):
        if not variable.startswith(PREFIX) or variable in LAUNCHER_VARIABLES:
            continue
        value = env[variable]
        if variable == "KAFKA_LOG_DIRS":
            name, value = "log.dirs", str(data_dir)
        elif variable in SECRET_FILE_VARIABLES:
            name, is_content = SECRET_FILE_VARIABLES[variable]
            path = _secrets(secrets_dir, variable) / value
            if is_content:
                if not path.is_file():
                    raise OrderlakeError(
                        f"{variable} names {path}, which does not exist; create the broker's "
                        "secrets first (orderlake.cluster.kafka_node.write_secrets)."
                    )
                value = path.read_text().strip()
            else:
                value = str(path)
        else:
            name = property_name(variable)
            value = _host_paths(value, secrets_dir, variable)
        if "\n" in value or "\r" in value:
            raise OrderlakeError(f"{variable} holds a line break; a property is one line.")
        lines.append(f"{name}={value}")
    return "\n".join(lines) + "\n"


def prepare(
    env: Mapping[str, str],
    data_dir: Path,
    scram_users: Mapping[str, str],
    *,
    secrets_dir: Path | None = None,
    config: Path | None = None,
    java_home: Path | None = None,
) -> Path:
    """Write the node's server.properties (0600) and format its storage once; return the config.

    ``scram_users`` ({name: password}) become SCRAM-SHA-512 credentials in the cluster's first
    metadata (``--add-scram``): the broker principal must exist before any broker can reach
    another, and the admin principal before anyone can create the other users. Formatting a
    node that is already formatted changes nothing (``--ignore-formatted``), so these are
    bootstrap values only; later users come from ``kafka_acls.ensure_users``.
    ``config`` defaults to ``server.properties`` beside ``data_dir``."""
    cluster_id = env.get("CLUSTER_ID", "").strip()
    if not cluster_id:
        raise OrderlakeError(
            "CLUSTER_ID is not set in the broker's environment; every node of one cluster needs "
            "the same id (docker-compose.yaml sets it in x-kafka-env)."
        )
    config = config or data_dir.parent / "server.properties"
    write_private(config, properties(env, data_dir, secrets_dir))
    (config.parent / "log4j2.properties").write_text(LOG4J2)
    data_dir.mkdir(parents=True, exist_ok=True)
    cmd = [jvm.java_executable(java_home), "-Xmx256m", *jvm.class_archive_options("kafka")]
    cmd += ["-cp", jvm.classpath("kafka")]
    cmd += ["kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(config)]
    cmd.append("--ignore-formatted")
    for name, password in scram_users.items():
        # the storage tool takes credentials only as arguments: visible in the process table
        # for the second the format runs, once per node
        cmd += ["--add-scram", f"{MECHANISM}=[name={name},password={password}]"]
    try:
        done = subprocess.run(
            cmd, capture_output=True, text=True, timeout=FORMAT_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise OrderlakeError(
            f"Formatting Kafka storage in {data_dir} did not finish in {FORMAT_TIMEOUT_S:.0f} s."
        ) from exc
    if done.returncode != 0:
        last = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise OrderlakeError(f"Formatting Kafka storage in {data_dir} failed: {last[0]}")
    return config


def command(
    env: Mapping[str, str],
    config: Path,
    *,
    secrets_dir: Path | None = None,
    java_home: Path | None = None,
) -> list[str]:
    """The broker's JVM command line: heap from ``KAFKA_HEAP_OPTS`` (the image's default 1 GB
    otherwise), ``KAFKA_JVM_PERFORMANCE_OPTS``, ``KAFKA_OPTS`` (the JAAS file), orderlake's log4j2
    configuration (written by ``prepare``), the broker jars."""
    heap = shlex.split(env.get("KAFKA_HEAP_OPTS") or DEFAULT_HEAP_OPTS)
    perf = shlex.split(env.get("KAFKA_JVM_PERFORMANCE_OPTS") or DEFAULT_JVM_PERFORMANCE_OPTS)
    opts = shlex.split(_host_paths(env.get("KAFKA_OPTS", ""), secrets_dir, "KAFKA_OPTS"))
    return [
        jvm.java_executable(java_home),
        *heap,
        *perf,
        f"-Dlog4j2.configurationFile={config.parent / 'log4j2.properties'}",
        *opts,
        *jvm.class_archive_options("kafka"),
        "-cp",
        jvm.classpath("kafka"),
        "kafka.Kafka",
        str(config),
    ]


# --- securing a node -----------------------------------------------------------------------------
def secured_environment(
    host: str,
    *,
    super_users: Sequence[str] = (BROKER_USER, ADMIN_USER),
    secrets: str = IMAGE_SECRETS_DIR,
) -> dict[str, str]:
    """The ``KAFKA_*`` variables that put one broker host behind SASL_SSL, for the image.

    Every listener speaks SASL over TLS: SCRAM-SHA-512 for clients and between brokers, PLAIN
    on the controller listener (see ``CONTROLLER_MECHANISM``), both as the broker principal; the
    ``StandardAuthorizer`` allows nothing without an ACL except to ``super_users`` (the broker
    principal, which brokers and controllers use between themselves, and the admin principal,
    which creates users and ACLs). The node's ``KAFKA_LISTENERS``, ``KAFKA_ADVERTISED_LISTENERS``
    and ``KAFKA_CONTROLLER_QUORUM_VOTERS`` stay the deployment's; they must use the listener
    names ``SASL_SSL`` and ``CONTROLLER``. Only file names are here; ``write_secrets`` makes
    the files."""
    files = secret_files(host)
    return {
        "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": (
            f"{LISTENER}:SASL_SSL,{CONTROLLER_LISTENER}:SASL_SSL"
        ),
        "KAFKA_INTER_BROKER_LISTENER_NAME": LISTENER,
        "KAFKA_CONTROLLER_LISTENER_NAMES": CONTROLLER_LISTENER,
        "KAFKA_SASL_ENABLED_MECHANISMS": MECHANISM,
        "KAFKA_SASL_MECHANISM_INTER_BROKER_PROTOCOL": MECHANISM,
        "KAFKA_LISTENER_NAME_CONTROLLER_SASL_ENABLED_MECHANISMS": CONTROLLER_MECHANISM,
        "KAFKA_SASL_MECHANISM_CONTROLLER_PROTOCOL": CONTROLLER_MECHANISM,
        "KAFKA_AUTHORIZER_CLASS_NAME": AUTHORIZER,
        "KAFKA_SUPER_USERS": ";".join(f"User:{user}" for user in super_users),
        "KAFKA_ALLOW_EVERYONE_IF_NO_ACL_FOUND": "false",
        "KAFKA_SSL_KEYSTORE_TYPE": "PKCS12",
        "KAFKA_SSL_KEYSTORE_FILENAME": files["keystore"],
        "KAFKA_SSL_KEYSTORE_CREDENTIALS": files["keystore_password"],
        "KAFKA_SSL_KEY_CREDENTIALS": files["keystore_password"],
        # the CA as PEM: a certificate needs no password, so none is in the environment
        "KAFKA_SSL_TRUSTSTORE_TYPE": "PEM",
        "KAFKA_SSL_TRUSTSTORE_LOCATION": f"{secrets}/{files['ca']}",
        "KAFKA_SSL_CLIENT_AUTH": "none",
        "KAFKA_OPTS": f"-Djava.security.auth.login.config={secrets}/{files['jaas']}",
    }


def secret_files(host: str) -> dict[str, str]:
    """File names of one host's secrets inside the secrets directory."""
    return {
        "keystore": f"{host}.keystore.p12",
        "keystore_password": f"{host}.keystore.password",
        "jaas": f"{host}.jaas.conf",
        "ca": "ca.pem",
    }


def write_secrets(
    secrets_dir: Path, host: str, host_names: Sequence[str], broker_password: str
) -> None:
    """Make the files ``secured_environment(host)`` names (reused when they exist): the
    cluster's CA, the host's keystore for ``host_names``, and its JAAS file, all 0600."""
    ca = tls.make_ca(secrets_dir)
    tls.broker_keystore(secrets_dir, host_names, ca=ca, name=host)
    write_private(secrets_dir / secret_files(host)["jaas"], jaas(BROKER_USER, broker_password))


def jaas(username: str, password: str) -> str:
    """The broker's JAAS file. ``KafkaServer``: the SCRAM principal it presents to other brokers
    (what clients present is checked against the credentials in the cluster's metadata).
    ``controller.KafkaServer`` (the controller listener's own section): the PLAIN principal it
    presents to controllers, and the one user a controller accepts."""
    return (
        "KafkaServer {\n"
        f"  {SCRAM_LOGIN_MODULE} required\n"
        f'  username="{username}"\n'
        f'  password="{password}";\n'
        "};\n"
        f"{CONTROLLER_LISTENER.lower()}.KafkaServer {{\n"
        f"  {PLAIN_LOGIN_MODULE} required\n"
        f'  username="{username}"\n'
        f'  password="{password}"\n'
        f'  user_{username}="{password}";\n'
        "};\n"
    )


# --- helpers -------------------------------------------------------------------------------------
def _with_listeners(env: Mapping[str, str]) -> dict[str, str]:
    """The image's configure script: a controller-only node has no advertised listeners, and a
    broker without KAFKA_LISTENERS listens on its advertised ports on every address."""
    env = dict(env)
    roles = env.get("KAFKA_PROCESS_ROLES", "")
    if roles.strip() == "controller":
        if env.get("KAFKA_ADVERTISED_LISTENERS"):
            raise OrderlakeError(
                "KAFKA_ADVERTISED_LISTENERS is set on a controller-only node; the image refuses "
                "it, remove it from that node's environment."
            )
        env.pop("KAFKA_ADVERTISED_LISTENERS", None)
    elif not env.get("KAFKA_LISTENERS") and env.get("KAFKA_ADVERTISED_LISTENERS"):
        endpoints = (
            p.strip().partition("://") for p in env["KAFKA_ADVERTISED_LISTENERS"].split(",")
        )
        env["KAFKA_LISTENERS"] = ",".join(
            f"{name}://0.0.0.0:{address.rpartition(':')[2]}" for name, _, address in endpoints
        )
    return env


def _secrets(secrets_dir: Path | None, variable: str) -> Path:
    if secrets_dir is None:
        raise OrderlakeError(
            f"{variable} refers to the image's secrets directory {IMAGE_SECRETS_DIR}; give the "
            "host's secrets directory (secrets_dir) to render this broker's configuration."
        )
    return secrets_dir


def _host_paths(value: str, secrets_dir: Path | None, variable: str) -> str:
    """The image's secrets directory in ``value`` -> the host's ``secrets_dir``."""
    if IMAGE_SECRETS_DIR + "/" not in value:
        return value
    return value.replace(IMAGE_SECRETS_DIR + "/", f"{_secrets(secrets_dir, variable)}/")


def active_controller(data_dirs: Mapping[int, Path]) -> int | None:
    """The KRaft quorum's leader (node id) from the voters' own quorum-state files
    ({node id: data directory}): the leader named at the highest epoch; a voter in an election
    names none. None while no voter knows a leader."""
    known = []
    for data_dir in data_dirs.values():
        path = data_dir / "__cluster_metadata-0" / "quorum-state"
        if path.exists():
            state = json.loads(path.read_text())
            if state.get("leaderId") in data_dirs:
                known.append(state)
    return max(known, key=lambda s: s.get("leaderEpoch", -1))["leaderId"] if known else None
