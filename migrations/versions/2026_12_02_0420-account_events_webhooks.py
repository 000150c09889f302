"""account events as a product: typed events, commit-order sequence, webhook endpoints and outbox

Revision ID: 0005
Revises: 0002
Create Date: 2026-12-02 04:20:00.000000+00:00
"""

import json
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Old `kind` words and the event types they become; `refreshed` was never written and has no type.
_KIND_TO_TYPE = {
    "imported": "account.imported",
    "linked": "account.linked",
    "relinked": "account.relinked",
    "status_changed": "account.relogin_required",
    "deleted": "account.deleted",
    "relink_mismatch": "account.relink_mismatch",
}


def upgrade() -> None:
    op.add_column("account_events", sa.Column("event_id", sa.UUID(), nullable=True))
    op.add_column("account_events", sa.Column("seq", sa.BigInteger(), nullable=True))
    op.add_column("account_events", sa.Column("type", sa.String(length=64), nullable=True))
    op.add_column(
        "account_events", sa.Column("account", postgresql.JSONB(astext_type=sa.Text()), nullable=True)
    )
    op.add_column(
        "account_events",
        sa.Column(
            "data",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
    )
    op.alter_column("account_events", "created_at", new_column_name="occurred_at")

    # Existing rows become events of the new types. The account snapshot takes login and Allegro user
    # from the account row when it still exists (deleted accounts keep nulls there); a status change
    # of the old log was always a flip to relogin_required, with its reason.
    mapping = {"mapping": json.dumps(_KIND_TO_TYPE)}
    op.execute(
        sa.text("DELETE FROM account_events WHERE NOT CAST(:mapping AS jsonb) ? kind").bindparams(**mapping)
    )
    op.execute(
        sa.text(
            """
        UPDATE account_events AS e SET
            event_id = gen_random_uuid(),
            type = CAST(:mapping AS jsonb) ->> e.kind,
            account = jsonb_build_object(
                'id', e.account_id::text, 'owner_id', e.owner_id,
                'allegro_user_id', a.allegro_user_id, 'login', a.login,
                'status', e.status, 'relogin_reason', e.reason
            ),
            data = CASE
                WHEN e.kind = 'status_changed' THEN jsonb_build_object('reason', e.reason)
                WHEN e.kind = 'relinked' THEN jsonb_build_object('previous_status', NULL, 'previous_reason', NULL)
                WHEN e.kind = 'relink_mismatch' THEN jsonb_build_object('expected_login', a.login, 'actual_login', NULL)
                ELSE '{}'::jsonb
            END
        FROM (SELECT e2.id, acc.allegro_user_id, acc.login
              FROM account_events e2 LEFT JOIN accounts acc ON acc.id = e2.account_id) AS a
        WHERE a.id = e.id
        """
        ).bindparams(**mapping)
    )
    # Everything already in the table has committed: its feed order is its insertion order.
    op.execute(
        "UPDATE account_events AS e SET seq = n.rn "
        "FROM (SELECT id, row_number() OVER (ORDER BY id) AS rn FROM account_events) AS n WHERE n.id = e.id"
    )
    op.alter_column("account_events", "event_id", nullable=False)
    op.alter_column("account_events", "type", nullable=False)
    op.alter_column("account_events", "account", nullable=False)
    op.drop_column("account_events", "kind")
    op.drop_column("account_events", "status")
    op.drop_column("account_events", "reason")
    op.drop_column("account_events", "details")
    op.create_unique_constraint(op.f("uq_account_events_event_id"), "account_events", ["event_id"])
    op.create_index(
        "uq_account_events_seq",
        "account_events",
        ["seq"],
        unique=True,
        postgresql_where=sa.text("seq IS NOT NULL"),
    )
    op.create_index(
        "ix_account_events_unsequenced",
        "account_events",
        ["id"],
        unique=False,
        postgresql_where=sa.text("seq IS NULL"),
    )
    op.create_index("ix_account_events_occurred_at", "account_events", ["occurred_at"], unique=False)

    op.create_table(
        "webhook_endpoints",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column(
            "event_types",
            postgresql.ARRAY(sa.String(length=64)),
            server_default=sa.text("'{}'::varchar[]"),
            nullable=False,
        ),
        sa.Column("enabled", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("disabled_reason", sa.String(length=200), nullable=True),
        sa.Column("secret_ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column("previous_secret_ciphertext", sa.LargeBinary(), nullable=True),
        sa.Column("previous_secret_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_success_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.String(length=300), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_endpoints")),
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("endpoint_id", sa.UUID(), nullable=False),
        sa.Column("event_pk", sa.BigInteger(), nullable=False),
        sa.Column("account_id", sa.UUID(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column(
            "next_attempt_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column("last_error", sa.String(length=300), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "state IN ('pending', 'delivered', 'failed')", name=op.f("ck_webhook_deliveries_state_known")
        ),
        sa.ForeignKeyConstraint(
            ["endpoint_id"],
            ["webhook_endpoints.id"],
            name=op.f("fk_webhook_deliveries_endpoint_id_webhook_endpoints"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_deliveries")),
    )
    op.create_index(
        "ix_webhook_deliveries_chain",
        "webhook_deliveries",
        ["endpoint_id", "account_id", "event_pk"],
        unique=False,
        postgresql_where=sa.text("state = 'pending'"),
    )
    op.create_index(
        "ix_webhook_deliveries_pending",
        "webhook_deliveries",
        ["next_attempt_at"],
        unique=False,
        postgresql_where=sa.text("state = 'pending'"),
    )
    op.create_index(
        "uq_webhook_deliveries_endpoint_id_event_pk",
        "webhook_deliveries",
        ["endpoint_id", "event_pk"],
        unique=True,
    )


def downgrade() -> None:
    op.drop_index("uq_webhook_deliveries_endpoint_id_event_pk", table_name="webhook_deliveries")
    op.drop_index(
        "ix_webhook_deliveries_pending",
        table_name="webhook_deliveries",
        postgresql_where=sa.text("state = 'pending'"),
    )
    op.drop_index(
        "ix_webhook_deliveries_chain",
        table_name="webhook_deliveries",
        postgresql_where=sa.text("state = 'pending'"),
    )
    op.drop_table("webhook_deliveries")
    op.drop_table("webhook_endpoints")

    op.drop_index("ix_account_events_occurred_at", table_name="account_events")
    op.drop_index("ix_account_events_unsequenced", table_name="account_events")
    op.drop_index("uq_account_events_seq", table_name="account_events")
    op.drop_constraint(op.f("uq_account_events_event_id"), "account_events", type_="unique")
    op.add_column("account_events", sa.Column("kind", sa.String(length=64), nullable=True))
    op.add_column("account_events", sa.Column("status", sa.String(length=32), nullable=True))
    op.add_column("account_events", sa.Column("reason", sa.String(length=32), nullable=True))
    op.add_column(
        "account_events",
        sa.Column(
            "details",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
    )
    # relogin_soon has no old kind; the other types map back.
    op.execute("DELETE FROM account_events WHERE type = 'account.relogin_soon'")
    reverse = json.dumps({type_: kind for kind, type_ in _KIND_TO_TYPE.items()})
    op.execute(
        sa.text(
            "UPDATE account_events SET kind = CAST(:mapping AS jsonb) ->> type, "
            "status = account->>'status', reason = account->>'relogin_reason'"
        ).bindparams(mapping=reverse)
    )
    op.alter_column("account_events", "kind", nullable=False)
    op.alter_column("account_events", "occurred_at", new_column_name="created_at")
    op.drop_column("account_events", "data")
    op.drop_column("account_events", "account")
    op.drop_column("account_events", "type")
    op.drop_column("account_events", "seq")
    op.drop_column("account_events", "event_id")
