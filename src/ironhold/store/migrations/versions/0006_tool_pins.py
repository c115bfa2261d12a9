"""Tool pins: the approved definition of every MCP tool the gateway has seen, and a changed
one waiting for approval (quarantined).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ironhold_tool_pins",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("server", sa.String(64), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("definition", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("pending_digest", sa.String(64), nullable=True),
        sa.Column("pending_definition", sa.Text, nullable=True),
        sa.Column("first_seen", sa.Float, nullable=False),
        sa.Column("changed_at", sa.Float, nullable=False),
        sa.Column("approved_by", sa.String(256), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("ironhold_tool_pins")
