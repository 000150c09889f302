"""relogin deadline: last use, keep-alive claims and failures, warning state

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 04:30:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Existing rows keep last_used_at NULL (no use known): the keep-alive calls them first.
    op.add_column("accounts", sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("accounts", sa.Column("keepalive_claimed_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("accounts", sa.Column("keepalive_failed_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column(
        "accounts",
        sa.Column("relogin_warned_stage", sa.SmallInteger(), server_default=sa.text("0"), nullable=False),
    )
    op.add_column("accounts", sa.Column("relogin_warned_deadline", sa.DateTime(timezone=True), nullable=True))
    op.create_index(
        "ix_accounts_last_used_at_active",
        "accounts",
        [sa.text("last_used_at NULLS FIRST")],
        unique=False,
        postgresql_where=sa.text("status = 'active'"),
    )
    op.create_index(
        "ix_accounts_id_relogin_required",
        "accounts",
        ["id"],
        unique=False,
        postgresql_where=sa.text("status = 'relogin_required'"),
    )
    op.create_index(
        "ix_accounts_id_relogin_warned",
        "accounts",
        ["id"],
        unique=False,
        postgresql_where=sa.text("relogin_warned_stage > 0"),
    )
    op.create_index(
        "ix_accounts_keepalive_failed_at",
        "accounts",
        ["keepalive_failed_at"],
        unique=False,
        postgresql_where=sa.text("keepalive_failed_at IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_accounts_keepalive_failed_at", table_name="accounts")
    op.drop_index("ix_accounts_id_relogin_warned", table_name="accounts")
    op.drop_index("ix_accounts_id_relogin_required", table_name="accounts")
    op.drop_index("ix_accounts_last_used_at_active", table_name="accounts")
    for column in (
        "relogin_warned_deadline",
        "relogin_warned_stage",
        "keepalive_failed_at",
        "keepalive_claimed_at",
        "last_used_at",
    ):
        op.drop_column("accounts", column)
