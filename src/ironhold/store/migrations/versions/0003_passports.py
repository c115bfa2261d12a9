"""Agent passports: one row per issued passport, for revocation along delegation chains.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ironhold_passports",
        sa.Column("jti", sa.String(40), primary_key=True),
        sa.Column("parent", sa.String(40), nullable=True),
        sa.Column("subject", sa.String(300), nullable=False),
        sa.Column("agent", sa.String(300), nullable=False),
        sa.Column("chain", sa.Text, nullable=False),
        sa.Column("issued_at", sa.Float, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
        sa.Column("revoked_at", sa.Float, nullable=True),
    )
    op.create_index("ix_ironhold_passports_parent", "ironhold_passports", ["parent"])
    op.create_index("ix_ironhold_passports_subject", "ironhold_passports", ["subject"])


def downgrade() -> None:
    op.drop_index("ix_ironhold_passports_subject", "ironhold_passports")
    op.drop_index("ix_ironhold_passports_parent", "ironhold_passports")
    op.drop_table("ironhold_passports")
