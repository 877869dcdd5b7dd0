"""preferences: also_good (the other candidates the annotator marked acceptable)

Revision ID: c4a9e2d7b1f3
Revises: b7e2f4a81c3d
Create Date: 2026-12-04 19:15:00.000000

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = 'c4a9e2d7b1f3'
down_revision = 'b7e2f4a81c3d'
branch_labels = None
depends_on = None


def upgrade():
    # Nullable, no default: every answer stored before this said nothing about the other candidates.
    op.add_column('preferences', sa.Column('also_good', sa.JSON(), nullable=True))


def downgrade():
    with op.batch_alter_table('preferences', schema=None) as batch_op:
        batch_op.drop_column('also_good')
