"""API keys gain a tenant, tool scopes, an expiry and per-key limits.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_COLUMNS = [
    sa.Column("tenant", sa.String(200), nullable=True),
    sa.Column("tools", sa.Text, nullable=True),
    sa.Column("expires_at", sa.Float, nullable=True),
    sa.Column("rpm", sa.Integer, nullable=True),
    sa.Column("tpm", sa.Integer, nullable=True),
    sa.Column("concurrency", sa.Integer, nullable=True),
    sa.Column("budget_usd_daily", sa.Float, nullable=True),
    sa.Column("budget_usd_monthly", sa.Float, nullable=True),
]


def upgrade() -> None:
    with op.batch_alter_table("ironhold_api_keys") as batch:
        for column in _COLUMNS:
            batch.add_column(column)


def downgrade() -> None:
    with op.batch_alter_table("ironhold_api_keys") as batch:
        for column in reversed(_COLUMNS):
            batch.drop_column(column.name)
