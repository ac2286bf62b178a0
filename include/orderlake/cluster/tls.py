"""A per-cluster certificate authority and the keystores Kafka's brokers and clients use.

directory -> ca.p12 (the CA's key), ca.pem (its certificate, for librdkafka's ssl.ca.location),
<name>.keystore.p12 per broker host (its key and a certificate the CA signed for the host's
names), truststore.p12 (the CA certificate, for Java clients such as Flume and Spark), and for a
TLS server outside the JVM the same as PEM files (``server_pem``).

Keys and certificates are made with the JDK's keytool; only ``server_pem`` reads a store with
the cryptography package (an Airflow dependency), as keytool cannot export a private key.
Each store's password sits beside it in ``<store>.password``; the directory is 0700 and every
file in it 0600 (a key or a password in a file another local user can read is not a secret).
Existing material is reused: calling these functions again changes nothing, unless a broker's
host names changed or the CA was replaced, in which case that broker's keystore is made again.

Example::

    ca = make_ca(secrets)
    store = broker_keystore(secrets, ["kafka-1", "127.0.0.1"], ca=ca)
    trust = truststore(secrets, ca=ca)
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import os
import re
import secrets as random_secrets
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from orderlake import jvm
from orderlake.errors import OrderlakeError
from orderlake.private import MODE, write_private

CA_ALIAS = "orderlake-ca"
KEY_ALIAS = "broker"
VALIDITY_DAYS = 3650
# EC keys: generated in milliseconds (RSA keys take seconds on a busy core), and every client
# here (Java 17, librdkafka's OpenSSL) speaks ECDSA
KEY_OPTIONS = ["-keyalg", "EC", "-groupname", "secp256r1", "-sigalg", "SHA256withECDSA"]
# names of the variables that hand keytool its passwords (never on its command line)
PASSWORD_ENV = "ORDERLAKE_KEYTOOL_PASSWORD"  # noqa: S105
CA_PASSWORD_ENV = "ORDERLAKE_KEYTOOL_CA_PASSWORD"  # noqa: S105
KEYTOOL_TIMEOUT_S = 120.0
# a keytool run lives well under a second: the interpreter and the quick JIT serve it, and the
# optimising JIT's compiler threads only take CPU from the JVMs starting beside it
KEYTOOL_JVM_OPTIONS = ["-J-XX:TieredStopAtLevel=1", "-J-XX:+UseSerialGC"]


@dataclass(frozen=True)
class Store:
    """A PKCS12 store and the file holding its password."""

    path: Path
    password_file: Path

    @property
    def password(self) -> str:
        return self.password_file.read_text().strip()


@dataclass(frozen=True)
class CA:
    """The cluster's certificate authority: its key store and its certificate as PEM."""

    store: Store
    pem: Path


def secret(path: Path, nbytes: int = 24) -> str:
    """The secret kept in ``path``, generated (URL-safe characters) and written 0600 on first use.

    URL-safe characters need no quoting in JAAS, in Kafka's ``--add-scram`` syntax or in a
    properties file."""
    if path.exists():
        value = path.read_text().strip()
        if value:
            return value
    value = random_secrets.token_urlsafe(nbytes)
    write_private(path, value + "\n")
    return value


def make_ca(directory: Path, name: str = "orderlake Kafka CA") -> CA:
    """The cluster's CA in ``directory`` (made on first call, reused afterwards)."""
    _private_dir(directory)
    store = Store(directory / "ca.p12", directory / "ca.password")
    pem = directory / "ca.pem"
    if store.path.exists() and pem.exists():
        return CA(store, pem)
    for stale in (store.path, pem):
        stale.unlink(missing_ok=True)
    password = secret(store.password_file)
    _keytool(
        ["-genkeypair", "-alias", CA_ALIAS, *KEY_OPTIONS, "-dname", f"CN={name}"]
        + ["-ext", "BasicConstraints:critical=ca:true,pathlen:0"]
        + ["-ext", "KeyUsage:critical=keyCertSign,cRLSign"]
        + ["-validity", str(VALIDITY_DAYS), *_store_args(store.path)],
        password=password,
    )
    _chmod(store.path)
    text = _keytool(
        ["-exportcert", "-rfc", "-alias", CA_ALIAS, *_store_args(store.path)], password=password
    )
    write_private(pem, text)
    return CA(store, pem)


def broker_keystore(
    directory: Path, host_names: Sequence[str], *, ca: CA | None = None, name: str | None = None
) -> Store:
    """``<name>.keystore.p12``: a key and a certificate for ``host_names`` signed by the CA.

    ``host_names`` are every name and address clients use to reach the broker (a compose
    service's names, 127.0.0.1 in tests): clients check the name they dialled against the
    certificate's subject alternative names. ``name`` defaults to the first host name.
    The key's password is the store's (PKCS12 has one password for both)."""
    if not host_names:
        raise OrderlakeError("A broker keystore needs at least one host name for its certificate.")
    ca = ca or make_ca(directory)
    name = name or host_names[0]
    store = Store(directory / f"{name}.keystore.p12", directory / f"{name}.keystore.password")
    sans = _san_entries(host_names)
    if store.path.exists() and _is_current(store, sans, ca):
        return store
    store.path.unlink(missing_ok=True)
    password = secret(store.password_file)
    dname = f"CN={host_names[0]}"
    _keytool(
        ["-genkeypair", "-alias", KEY_ALIAS, *KEY_OPTIONS, "-dname", dname]
        + ["-validity", str(VALIDITY_DAYS), *_store_args(store.path)],
        password=password,
    )
    request = _keytool(["-certreq", "-alias", KEY_ALIAS, *_store_args(store.path)], password)
    extensions = ["-ext", "SAN=" + ",".join(sans), "-ext", "KeyUsage:critical=digitalSignature"]
    extensions += ["-ext", "ExtendedKeyUsage=serverAuth,clientAuth"]
    signed = _keytool(
        ["-gencert", "-rfc", "-alias", CA_ALIAS, *_store_args(ca.store.path)]
        + ["-validity", str(VALIDITY_DAYS), *extensions],
        password=ca.store.password,
        stdin=request,
    )
    # the chain: the CA first (trusted), then the broker's certificate replaces its self-signed one
    _keytool(
        ["-importcert", "-noprompt", "-alias", "ca", "-file", str(ca.pem)]
        + _store_args(store.path),
        password=password,
    )
    _keytool(
        ["-importcert", "-noprompt", "-alias", KEY_ALIAS, *_store_args(store.path)],
        password=password,
        stdin=signed,
    )
    _chmod(store.path)
    return store


def truststore(directory: Path, *, ca: CA | None = None) -> Store:
    """``truststore.p12``: the CA certificate alone, for Java clients (ssl.truststore.*)."""
    ca = ca or make_ca(directory)
    store = Store(directory / "truststore.p12", directory / "truststore.password")
    if store.path.exists() and _fingerprints(store, "ca") == {pem_fingerprint(ca.pem)}:
        return store
    store.path.unlink(missing_ok=True)
    _keytool(
        ["-importcert", "-noprompt", "-alias", "ca", "-file", str(ca.pem)]
        + _store_args(store.path),
        password=secret(store.password_file),
    )
    _chmod(store.path)
    return store


def server_pem(directory: Path, host_names: Sequence[str], name: str) -> tuple[Path, Path]:
    """``<name>.crt.pem`` (the certificate the CA signed for ``host_names``, then the CA's) and
    ``<name>.key.pem`` (its key, unencrypted, 0600): for a TLS server outside the JVM (the
    Spark Connect gate, stack/connect_gate.py). Made from ``broker_keystore``'s store, so
    they are made again exactly when it is."""
    from cryptography.hazmat.primitives.serialization import (
        Encoding,
        NoEncryption,
        PrivateFormat,
        pkcs12,
    )

    store = broker_keystore(directory, host_names, name=name)
    cert, key = directory / f"{name}.crt.pem", directory / f"{name}.key.pem"
    if cert.exists() and key.exists() and cert.stat().st_mtime_ns >= store.path.stat().st_mtime_ns:
        return cert, key
    private, leaf, chain = pkcs12.load_key_and_certificates(
        store.path.read_bytes(), store.password.encode()
    )
    if private is None or leaf is None:
        raise OrderlakeError(f"{store.path} holds no key and certificate for {name}.")
    pem = [c.public_bytes(Encoding.PEM).decode() for c in (leaf, *chain)]
    write_private(cert, "".join(pem))
    key_pem = private.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    write_private(key, key_pem.decode())
    return cert, key


# --- keytool --------------------------------------------------------------------------------------
def keytool_executable() -> str:
    """The keytool beside the JDK's java (JAVA_HOME, then PATH)."""
    java = Path(jvm.java_executable()).resolve()
    keytool = java.parent / "keytool"
    if not keytool.exists():
        raise OrderlakeError(
            f"No keytool beside {java}; install a full JDK 17 "
            "(Debian: `apt-get install openjdk-17-jdk-headless`)."
        )
    return str(keytool)


def _store_args(path: Path) -> list[str]:
    # passwords travel in the environment, never on a command line other users can read
    return ["-keystore", str(path), "-storetype", "PKCS12", "-storepass:env", PASSWORD_ENV]


def _keytool(args: list[str], password: str, stdin: str | None = None) -> str:
    env = {**os.environ, PASSWORD_ENV: password}
    done = subprocess.run(
        [keytool_executable(), *KEYTOOL_JVM_OPTIONS, *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=KEYTOOL_TIMEOUT_S,
        check=False,
    )
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise OrderlakeError(f"keytool {args[0]} failed: {detail[0]}")
    return done.stdout


def _san_entries(host_names: Sequence[str]) -> list[str]:
    entries = []
    for host in dict.fromkeys(host_names):
        try:
            ipaddress.ip_address(host)
            entries.append(f"IP:{host}")
        except ValueError:
            entries.append(f"DNS:{host}")
    return entries


def _listing(store: Store, alias: str) -> str:
    try:
        return _keytool(["-list", "-v", "-alias", alias, *_store_args(store.path)], store.password)
    except (OrderlakeError, OSError):
        return ""  # unreadable or without that alias: made again


def _fingerprints(store: Store, alias: str) -> set[str]:
    if not store.path.exists():
        return set()
    return set(re.findall(r"SHA256: ([0-9A-F:]+)", _listing(store, alias)))


def pem_fingerprint(pem: Path) -> str:
    """SHA-256 of a PEM certificate, written as keytool writes it (AB:CD:...)."""
    body = "".join(line for line in pem.read_text().splitlines() if "-----" not in line)
    digest = hashlib.sha256(base64.b64decode(body)).hexdigest().upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def _is_current(store: Store, sans: list[str], ca: CA) -> bool:
    """The keystore's certificate names exactly ``sans`` and its chain ends at this CA."""
    listing = _listing(store, KEY_ALIAS)
    found = {f"DNS:{n}" for n in re.findall(r"DNSName: (\S+)", listing)}
    found |= {f"IP:{a}" for a in re.findall(r"IPAddress: (\S+)", listing)}
    chain_prints = set(re.findall(r"SHA256: ([0-9A-F:]+)", listing))
    return found == set(sans) and pem_fingerprint(ca.pem) in chain_prints


def _private_dir(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)


def _chmod(path: Path) -> None:
    # keytool creates its files with the umask's mode; a key store is as secret as its password
    path.chmod(MODE)
