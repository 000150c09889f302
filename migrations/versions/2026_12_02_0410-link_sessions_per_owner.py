"""link sessions per owner: the index the pending-state cap reads

Revision ID: 0004
Revises: 0002
Create Date: 2026-12-02 04:10:00.000000+00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_link_sessions_owner_id_created_at", "link_sessions", ["owner_id", "created_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_link_sessions_owner_id_created_at", table_name="link_sessions")
