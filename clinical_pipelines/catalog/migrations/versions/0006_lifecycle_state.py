"""Lifecycle state of each curated version (hot, warm, frozen, archived, expired), when and why it last changed.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("versions") as batch:
        batch.add_column(sa.Column("lifecycle_state", sa.String(length=16), nullable=False, server_default="warm"))
        batch.add_column(sa.Column("state_changed_at", sa.DateTime(), nullable=True))
        batch.add_column(sa.Column("state_reason", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("versions") as batch:
        batch.drop_column("state_reason")
        batch.drop_column("state_changed_at")
        batch.drop_column("lifecycle_state")
