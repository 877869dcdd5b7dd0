"""answer_changes: an answer as it was before its annotator changed it

Revision ID: a9d3e5f7b2c4
Revises: f2c8d4e6a7b3
Create Date: 2026-12-05 16:30:00.000000

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = 'a9d3e5f7b2c4'
down_revision = 'f2c8d4e6a7b3'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'answer_changes',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('comparison_id', sa.Integer(), nullable=False),
        sa.Column('preference_id', sa.Integer(), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('verdict', sa.String(length=16), nullable=False),
        sa.Column('chosen_candidate_id', sa.Integer(), nullable=True),
        sa.Column('also_good', sa.JSON(), nullable=True),
        sa.Column('latency_ms', sa.Integer(), nullable=True),
        sa.Column('answered_at', sa.DateTime(), nullable=False),
        sa.Column('mode', sa.String(length=16), nullable=False),
        sa.Column('changed_at', sa.DateTime(), nullable=False),
        sa.CheckConstraint("mode in ('replaced','superseded')", name='ck_answer_changes_mode'),
        sa.ForeignKeyConstraint(['comparison_id'], ['comparisons.id'],
                                name='fk_answer_changes_comparison_id_comparisons'),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'], name='fk_answer_changes_user_id_users'),
        sa.PrimaryKeyConstraint('id', name='pk_answer_changes'),
    )
    op.create_index('ix_answer_changes_comparison_id', 'answer_changes', ['comparison_id'])
    op.create_index('ix_answer_changes_user_id', 'answer_changes', ['user_id'])


def downgrade():
    op.drop_table('answer_changes')
