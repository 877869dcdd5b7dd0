"""comparisons.shown_at: when a comparison was last handed to its annotator

Revision ID: e4b7c2a9d1f6
Revises: d8f3a5c1e9b2
Create Date: 2026-12-05 15:30:00.000000

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = 'e4b7c2a9d1f6'
down_revision = 'd8f3a5c1e9b2'
branch_labels = None
depends_on = None


def upgrade():
    # Nullable: comparisons from before were shown at a time nobody recorded (assigned_at is the nearest).
    op.add_column('comparisons', sa.Column('shown_at', sa.DateTime(), nullable=True))


def downgrade():
    with op.batch_alter_table('comparisons', schema=None) as batch_op:
        batch_op.drop_column('shown_at')
