"""The agent's home: its private key (0600), certificate, the coordinator's CA, settings.

The key is made here and never leaves this directory. The CA certificate, pinned at
enrolment by the fingerprint in the token, is the agent's only trust anchor: it checks
the coordinator's TLS certificate and its signatures on rounds and receipts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509

from fedpeer.errors import IdentityError
from fedpeer.identity import cert_from_pem
from fedpeer.policy import DisclosurePolicy
from fedpeer.private_files import private_dir, write_private

KEY_FILE = "agent.key"
CERT_FILE = "agent.crt"
CA_FILE = "ca.crt"
SETTINGS_FILE = "agent.json"
OUTBOX_FILE = "outbox.sqlite"


@dataclass(frozen=True)
class AgentIdentity:
    """What an enrolled agent needs to talk to its coordinator."""

    practice_id: str
    coordinator: str  # HOST:PORT of the mutual-TLS port
    key_pem: bytes
    cert_pem: bytes
    ca_pem: bytes
    server_name: str | None = None
    # The network's disclosure policy, pinned at enrolment: every round must carry it.
    network_policy: DisclosurePolicy = field(default_factory=DisclosurePolicy)

    @property
    def ca_cert(self) -> x509.Certificate:
        """The coordinator CA certificate."""
        return cert_from_pem(self.ca_pem)


@dataclass(frozen=True)
class AgentHome:
    """The directory holding one agent's identity and outbox."""

    root: Path

    @property
    def key_path(self) -> Path:
        """The private key, readable by its owner only."""
        return self.root / KEY_FILE

    @property
    def outbox_path(self) -> Path:
        """The durable outbox of submissions."""
        return self.root / OUTBOX_FILE

    def is_enrolled(self) -> bool:
        """True when the home holds a key, a certificate and settings."""
        return all((self.root / n).exists() for n in (KEY_FILE, CERT_FILE, CA_FILE, SETTINGS_FILE))

    def save(self, identity: AgentIdentity) -> None:
        """Write the identity; the key with mode 0600 from the moment it exists."""
        private_dir(self.root)
        write_private(self.key_path, identity.key_pem)
        (self.root / CERT_FILE).write_bytes(identity.cert_pem)
        (self.root / CA_FILE).write_bytes(identity.ca_pem)
        settings = {
            "practice_id": identity.practice_id,
            "coordinator": identity.coordinator,
            "server_name": identity.server_name,
            "network_policy": identity.network_policy.to_data(),
        }
        (self.root / SETTINGS_FILE).write_text(json.dumps(settings, indent=2) + "\n")

    def load(self) -> AgentIdentity:
        """The stored identity; IdentityError when the agent is not enrolled."""
        if not self.is_enrolled():
            raise IdentityError(
                f"{self.root} holds no enrolled agent: run `fedpeer-agent enrol` first"
            )
        settings = json.loads((self.root / SETTINGS_FILE).read_text())
        return AgentIdentity(
            practice_id=settings["practice_id"],
            coordinator=settings["coordinator"],
            key_pem=self.key_path.read_bytes(),
            cert_pem=(self.root / CERT_FILE).read_bytes(),
            ca_pem=(self.root / CA_FILE).read_bytes(),
            server_name=settings.get("server_name"),
            # An agent enrolled before the network policy was pinned has the defaults.
            network_policy=DisclosurePolicy.from_data(
                settings.get("network_policy", DisclosurePolicy().to_data())
            ),
        )
