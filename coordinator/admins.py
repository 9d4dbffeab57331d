"""Admin certificates: each one the coordinator has seen, and the ones it refuses.

An admin certificate is recorded the first time it calls (``admin_seen``), so
``fedpeer-coordinator admin list`` shows who holds one. Revoking it by name or fingerprint
(``revoke_admins``) refuses it at its next call; a fingerprint never seen can be revoked
ahead of its first call, so a lost key is refused before it is used.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa

from coordinator.store import Store, utc
from coordinator.tables import admin_certificates
from fedpeer.errors import StoreError

FINGERPRINT_CHARS = set("0123456789abcdef")


@dataclass(frozen=True)
class AdminCertificate:
    """An admin certificate the coordinator knows of."""

    fingerprint: str
    name: str
    first_seen: dt.datetime
    revoked_at: dt.datetime | None = None
    revoked_by: str = ""


def _record(row: sa.Row) -> AdminCertificate:  # type: ignore[type-arg]
    return AdminCertificate(
        row.fingerprint,
        row.name,
        utc(row.first_seen),
        None if row.revoked_at is None else utc(row.revoked_at),
        row.revoked_by or "",
    )


def admin_seen(store: Store, fingerprint: str, name: str, now: dt.datetime) -> bool:
    """Record an admin certificate at its call; whether it is revoked."""
    with store.engine.begin() as conn:
        row = conn.execute(
            sa.select(admin_certificates.c.revoked_at).where(
                admin_certificates.c.fingerprint == fingerprint
            )
        ).first()
        if row is None:
            try:
                with conn.begin_nested():
                    conn.execute(
                        admin_certificates.insert().values(
                            fingerprint=fingerprint, name=name, first_seen=now
                        )
                    )
            except sa.exc.IntegrityError:  # a concurrent first call recorded it: not revoked
                pass
            return False
        return row.revoked_at is not None


def list_admins(store: Store) -> list[AdminCertificate]:
    """Every admin certificate known, by name then first use."""
    with store.engine.connect() as conn:
        rows = conn.execute(
            sa.select(admin_certificates).order_by(
                admin_certificates.c.name, admin_certificates.c.first_seen
            )
        ).all()
    return [_record(r) for r in rows]


def revoke_admins(
    store: Store, name_or_fingerprint: str, actor_fingerprint: str, actor: str, now: dt.datetime
) -> list[AdminCertificate]:
    """Revoke the admin certificates of a name, or one by fingerprint; those revoked."""
    target = name_or_fingerprint.strip().lower().replace(":", "")
    is_fingerprint = len(target) == 64 and set(target) <= FINGERPRINT_CHARS
    with store.engine.begin() as conn:
        match = (
            admin_certificates.c.fingerprint == target
            if is_fingerprint
            else admin_certificates.c.name == name_or_fingerprint.strip()
        )
        found = conn.execute(sa.select(admin_certificates.c.fingerprint).where(match)).scalars()
        fingerprints = list(found)
        if actor_fingerprint in fingerprints:
            raise StoreError("refusing to revoke the certificate this command runs with")
        if not fingerprints and is_fingerprint:
            conn.execute(
                admin_certificates.insert().values(fingerprint=target, name="", first_seen=now)
            )
            fingerprints = [target]
        if not fingerprints:
            raise StoreError(f"no admin certificate named {name_or_fingerprint.strip()}")
        conn.execute(
            admin_certificates.update()
            .where(
                admin_certificates.c.fingerprint.in_(fingerprints),
                admin_certificates.c.revoked_at.is_(None),
            )
            .values(revoked_at=now, revoked_by=actor)
        )
    return [a for a in list_admins(store) if a.fingerprint in fingerprints]
