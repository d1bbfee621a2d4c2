"""Governance: the append-only journal, identities, roles and approvals."""
