"""flags (an annotator's report on a comparison) and prompts.removed_at

Revision ID: f2c8d4e6a7b3
Revises: e4b7c2a9d1f6
Create Date: 2026-12-05 16:00:00.000000

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = 'f2c8d4e6a7b3'
down_revision = 'e4b7c2a9d1f6'
branch_labels = None
depends_on = None

# Literal copies of app/tables.py FLAG_REASONS and FLAG_STATUSES as of this revision.
REASON_CHECK = "reason in ('unclear','offensive','broken','other')"
STATUS_CHECK = "status in ('open','cleared','removed')"


def upgrade():
    op.add_column('prompts', sa.Column('removed_at', sa.DateTime(), nullable=True))
    op.create_table(
        'flags',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('comparison_id', sa.Integer(), nullable=False),
        sa.Column('prompt_id', sa.Integer(), nullable=True),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('reason', sa.String(length=16), nullable=False),
        sa.Column('comment', sa.Text(), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('resolved_by', sa.String(length=64), nullable=True),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('resolved_at', sa.DateTime(), nullable=True),
        sa.CheckConstraint(REASON_CHECK, name='ck_flags_reason'),
        sa.CheckConstraint(STATUS_CHECK, name='ck_flags_status'),
        sa.ForeignKeyConstraint(['comparison_id'], ['comparisons.id'], name='fk_flags_comparison_id_comparisons'),
        sa.ForeignKeyConstraint(['prompt_id'], ['prompts.id'], name='fk_flags_prompt_id_prompts'),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'], name='fk_flags_user_id_users'),
        sa.PrimaryKeyConstraint('id', name='pk_flags'),
        sa.UniqueConstraint('comparison_id', 'user_id', name='uq_flags_comparison_user'),
    )
    op.create_index('ix_flags_comparison_id', 'flags', ['comparison_id'])
    op.create_index('ix_flags_prompt_id', 'flags', ['prompt_id'])
    op.create_index('ix_flags_user_id', 'flags', ['user_id'])
    op.create_index('ix_flags_status', 'flags', ['status'])


def downgrade():
    op.drop_table('flags')
    with op.batch_alter_table('prompts', schema=None) as batch_op:
        batch_op.drop_column('removed_at')
