"""An index on the audit log's target and sequence: catalog show reads a version's last records without a scan.

Revision ID: 0007
Revises: 0006
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_audit_log_target_seq", "audit_log", ["target", "seq"])


def downgrade() -> None:
    op.drop_index("ix_audit_log_target_seq", table_name="audit_log")
