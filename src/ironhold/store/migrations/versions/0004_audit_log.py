"""The audit log: records (the Merkle tree's leaves, with the perfect subtrees each completed)
and signed checkpoints of the tree's root.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# On SQLite an INTEGER PRIMARY KEY is the rowid: rows are stored in sequence order.
_SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "ironhold_audit_records",
        sa.Column("seq", _SEQ, primary_key=True, autoincrement=False),
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("recorded_at", sa.Float, nullable=False),
        sa.Column("leaf_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("nodes", sa.LargeBinary, nullable=False),
        sa.Column("record", sa.Text, nullable=False),
    )
    op.create_index("ix_ironhold_audit_records_request_id", "ironhold_audit_records",
                    ["request_id"])
    op.create_table(
        "ironhold_audit_checkpoints",
        sa.Column("size", _SEQ, primary_key=True, autoincrement=False),
        sa.Column("root", sa.LargeBinary(32), nullable=False),
        sa.Column("origin", sa.String(200), nullable=False),
        sa.Column("signed_at", sa.Float, nullable=False),
        sa.Column("key_id", sa.String(64), nullable=False),
        sa.Column("signature", sa.LargeBinary(64), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("ironhold_audit_checkpoints")
    op.drop_index("ix_ironhold_audit_records_request_id", "ironhold_audit_records")
    op.drop_table("ironhold_audit_records")
