"""token issues audit

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 03:15:32.178063+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "token_issues",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("account_id", sa.UUID(), nullable=False),
        sa.Column("api_key_id", sa.UUID(), nullable=False),
        sa.Column("api_key_name", sa.String(length=100), nullable=False),
        sa.Column("token_version", sa.Integer(), nullable=False),
        sa.Column("refreshed", sa.Boolean(), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_token_issues")),
    )
    op.create_index(
        "ix_token_issues_account_id_issued_at", "token_issues", ["account_id", "issued_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_token_issues_account_id_issued_at", table_name="token_issues")
    op.drop_table("token_issues")
