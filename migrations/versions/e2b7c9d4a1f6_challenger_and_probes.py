"""serving_state.challenger_version_id (PROMOTION=challenger), probe_revisions and probe_samples (issue 26)

Revision ID: e2b7c9d4a1f6
Revises: d8f3a5c1e9b2
Create Date: 2026-12-06 00:45:00.000000

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = 'e2b7c9d4a1f6'
down_revision = 'd8f3a5c1e9b2'
branch_labels = None
depends_on = None


def upgrade():
    # Batch mode: SQLite cannot add a column with a foreign key in place.
    with op.batch_alter_table('serving_state', schema=None) as batch_op:
        batch_op.add_column(sa.Column('challenger_version_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key('fk_serving_state_challenger', 'model_versions',
                                    ['challenger_version_id'], ['id'])
    op.create_table(
        'probe_revisions',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('inputs', sa.JSON(), nullable=False),
        sa.Column('author', sa.String(length=64), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_table(
        'probe_samples',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('version_id', sa.Integer(), nullable=False),
        sa.Column('revision_id', sa.Integer(), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('samples', sa.JSON(), nullable=False),
        sa.Column('settings', sa.JSON(), nullable=False),
        sa.Column('error', sa.Text(), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('finished_at', sa.DateTime(), nullable=True),
        sa.CheckConstraint("status in ('queued','running','ready','failed')", name='ck_probe_samples_status'),
        sa.ForeignKeyConstraint(['revision_id'], ['probe_revisions.id']),
        sa.ForeignKeyConstraint(['version_id'], ['model_versions.id']),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('version_id', 'revision_id', name='uq_probe_samples_version_revision'),
    )
    with op.batch_alter_table('probe_samples', schema=None) as batch_op:
        batch_op.create_index('ix_probe_samples_version_id', ['version_id'], unique=False)


def downgrade():
    with op.batch_alter_table('probe_samples', schema=None) as batch_op:
        batch_op.drop_index('ix_probe_samples_version_id')
    op.drop_table('probe_samples')
    op.drop_table('probe_revisions')
    with op.batch_alter_table('serving_state', schema=None) as batch_op:
        batch_op.drop_constraint('fk_serving_state_challenger', type_='foreignkey')
        batch_op.drop_column('challenger_version_id')
