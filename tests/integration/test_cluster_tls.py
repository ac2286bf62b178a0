"""The cluster's certificates (orderlake.cluster.tls) made by the JDK's keytool: a host's
keystore is reused while its names stay, and made again, private, when they change (a broker
moved to another address must not keep serving a certificate clients reject)."""

from __future__ import annotations

import pytest

from orderlake.cluster import tls

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def test_a_keystore_is_made_again_when_its_host_names_change(tmp_path):
    tls.make_ca(tmp_path)
    first = tls.broker_keystore(tmp_path, ["kafka-9"])
    made = first.path.stat().st_mtime_ns
    assert tls.broker_keystore(tmp_path, ["kafka-9"]).path.stat().st_mtime_ns == made
    again = tls.broker_keystore(tmp_path, ["kafka-9", "10.0.0.9"])
    assert again.path.stat().st_mtime_ns != made
    assert again.path.stat().st_mode & 0o077 == 0
    listing = tls._listing(again, tls.KEY_ALIAS)
    assert "DNSName: kafka-9" in listing and "IPAddress: 10.0.0.9" in listing
