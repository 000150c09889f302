"""forced token version

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 04:00:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable without a default: adding it rewrites nothing and locks the table only briefly.
    op.add_column("accounts", sa.Column("forced_token_version", sa.Integer(), nullable=True))


def downgrade() -> None:
    op.drop_column("accounts", "forced_token_version")
