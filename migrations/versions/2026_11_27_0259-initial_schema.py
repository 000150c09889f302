"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-27 02:59:08.424461+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "account_events",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("account_id", sa.UUID(), nullable=False),
        sa.Column("owner_id", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=True),
        sa.Column("reason", sa.String(length=32), nullable=True),
        sa.Column("actor", sa.String(length=200), nullable=True),
        sa.Column(
            "details",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_account_events")),
    )
    op.create_index("ix_account_events_account_id_id", "account_events", ["account_id", "id"], unique=False)
    op.create_table(
        "accounts",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("owner_id", sa.String(length=200), nullable=False),
        sa.Column("allegro_user_id", sa.String(length=64), nullable=True),
        sa.Column("login", sa.String(length=200), nullable=True),
        sa.Column(
            "status",
            sa.Enum(
                "active",
                "relogin_required",
                name="account_status",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column(
            "relogin_reason",
            sa.Enum(
                "legacy_account",
                "refresh_token_expired",
                "grant_revoked",
                "refresh_rejected",
                name="relogin_reason",
                native_enum=False,
                create_constraint=True,
                length=32,
            ),
            nullable=True,
        ),
        sa.Column("status_changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("linked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_refreshed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("access_token_ciphertext", sa.LargeBinary(), nullable=True),
        sa.Column("access_token_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("refresh_token_ciphertext", sa.LargeBinary(), nullable=True),
        sa.Column("refresh_token_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("scope", sa.Text(), nullable=True),
        sa.Column("token_version", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint(
            "(status = 'active') = (relogin_reason IS NULL)",
            name=op.f("ck_accounts_relogin_reason_iff_relogin_required"),
        ),
        sa.CheckConstraint(
            "(access_token_ciphertext IS NULL) = (access_token_expires_at IS NULL)",
            name=op.f("ck_accounts_access_token_has_expiry"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_accounts")),
    )
    op.create_index("ix_accounts_owner_id_id", "accounts", ["owner_id", "id"], unique=False)
    op.create_index(
        "ix_accounts_owner_id_lower_login",
        "accounts",
        ["owner_id", sa.literal_column("lower(login)")],
        unique=False,
    )
    op.create_index(
        "ix_accounts_refresh_token_expires_at_active",
        "accounts",
        ["refresh_token_expires_at"],
        unique=False,
        postgresql_where=sa.text("status = 'active'"),
    )
    op.create_index(
        "uq_accounts_owner_id_allegro_user_id",
        "accounts",
        ["owner_id", "allegro_user_id"],
        unique=True,
        postgresql_where=sa.text("allegro_user_id IS NOT NULL"),
    )
    op.create_index(
        "uq_accounts_owner_id_legacy_login",
        "accounts",
        ["owner_id", sa.literal_column("lower(login)")],
        unique=True,
        postgresql_where=sa.text("allegro_user_id IS NULL"),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("prefix", sa.String(length=32), nullable=False),
        sa.Column("secret_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("scopes", postgresql.ARRAY(sa.String(length=32)), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("name", name=op.f("uq_api_keys_name")),
        sa.UniqueConstraint("prefix", name=op.f("uq_api_keys_prefix")),
    )
    op.create_table(
        "link_sessions",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("state_hash", sa.LargeBinary(length=32), nullable=False),
        sa.Column("owner_id", sa.String(length=200), nullable=False),
        sa.Column("account_id", sa.UUID(), nullable=True),
        sa.Column("return_to", sa.Text(), nullable=False),
        sa.Column("code_verifier_ciphertext", sa.LargeBinary(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("callback_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.String(length=32), nullable=True),
        sa.Column("completion_hash", sa.LargeBinary(length=32), nullable=True),
        sa.Column("completion_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("allegro_user_id", sa.String(length=64), nullable=True),
        sa.Column("login", sa.String(length=200), nullable=True),
        sa.Column("access_token_ciphertext", sa.LargeBinary(), nullable=True),
        sa.Column("access_token_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("refresh_token_ciphertext", sa.LargeBinary(), nullable=True),
        sa.Column("refresh_token_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("scope", sa.Text(), nullable=True),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_link_sessions_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_link_sessions")),
        sa.UniqueConstraint("completion_hash", name=op.f("uq_link_sessions_completion_hash")),
        sa.UniqueConstraint("state_hash", name=op.f("uq_link_sessions_state_hash")),
    )
    op.create_index("ix_link_sessions_expires_at", "link_sessions", ["expires_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_link_sessions_expires_at", table_name="link_sessions")
    op.drop_table("link_sessions")
    op.drop_table("api_keys")
    op.drop_index(
        "uq_accounts_owner_id_legacy_login",
        table_name="accounts",
        postgresql_where=sa.text("allegro_user_id IS NULL"),
    )
    op.drop_index(
        "uq_accounts_owner_id_allegro_user_id",
        table_name="accounts",
        postgresql_where=sa.text("allegro_user_id IS NOT NULL"),
    )
    op.drop_index(
        "ix_accounts_refresh_token_expires_at_active",
        table_name="accounts",
        postgresql_where=sa.text("status = 'active'"),
    )
    op.drop_index("ix_accounts_owner_id_lower_login", table_name="accounts")
    op.drop_index("ix_accounts_owner_id_id", table_name="accounts")
    op.drop_table("accounts")
    op.drop_index("ix_account_events_account_id_id", table_name="account_events")
    op.drop_table("account_events")
