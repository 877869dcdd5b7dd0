"""arena battles and pairs, overlap copies, gold items

Revision ID: b7e2f4a81c3d
Revises: 9c3d7a1f2b60
Create Date: 2026-12-02 03:00:00.000000

"""
from contextlib import contextmanager

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = 'b7e2f4a81c3d'
down_revision = '9c3d7a1f2b60'
branch_labels = None
depends_on = None

# Literal copy of app/tables.py ARENA_VERDICTS as of this revision.
ARENA_VERDICT_CHECK = "verdict in ('choice','tie','both_bad')"


@contextmanager
def sqlite_foreign_keys_off():
    """SQLite changes a table by rebuilding it, and with foreign keys on it refuses to drop comparisons while
    candidates and preferences rows point at it. The pragma only takes effect outside a
    transaction, hence the autocommit blocks; the check afterwards proves no reference was broken."""
    if op.get_bind().dialect.name != 'sqlite':
        yield
        return
    with op.get_context().autocommit_block():
        op.execute('PRAGMA foreign_keys=OFF')
    try:
        yield
        broken = op.get_bind().exec_driver_sql('PRAGMA foreign_key_check').fetchall()
        if broken:
            raise RuntimeError(f'foreign keys broken by the table rebuild: {broken}')
    finally:
        with op.get_context().autocommit_block():
            op.execute('PRAGMA foreign_keys=ON')


def upgrade():
    op.create_table(
        'gold_items',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('input_text', sa.Text(), nullable=False),
        sa.Column('candidates', sa.JSON(), nullable=False),
        sa.Column('expected', sa.String(length=16), nullable=False),
        sa.Column('item_hash', sa.String(length=64), nullable=False),
        sa.Column('source', sa.String(length=128), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_gold_items')),
        sa.UniqueConstraint('item_hash', name=op.f('uq_gold_items_item_hash')),
    )
    with sqlite_foreign_keys_off():
        with op.batch_alter_table('comparisons', schema=None) as batch_op:
            batch_op.alter_column('model_version_id', existing_type=sa.Integer(), nullable=True)
            batch_op.add_column(sa.Column('root_id', sa.Integer(), nullable=True))
            batch_op.add_column(sa.Column('copies', sa.Integer(), server_default='0', nullable=False))
            batch_op.add_column(sa.Column('gold_item_id', sa.Integer(), nullable=True))
            batch_op.create_foreign_key(op.f('fk_comparisons_root_id_comparisons'), 'comparisons', ['root_id'], ['id'])
            batch_op.create_foreign_key(op.f('fk_comparisons_gold_item_id_gold_items'), 'gold_items',
                                        ['gold_item_id'], ['id'])
            batch_op.create_index(batch_op.f('ix_comparisons_root_id'), ['root_id'], unique=False)
            batch_op.create_index(batch_op.f('ix_comparisons_gold_item_id'), ['gold_item_id'], unique=False)
            batch_op.create_unique_constraint('uq_comparisons_root_user', ['root_id', 'user_id'])
            batch_op.create_unique_constraint('uq_comparisons_gold_user', ['gold_item_id', 'user_id'])

    op.create_table(
        'arena_battles',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('prompt_id', sa.Integer(), nullable=True),
        sa.Column('input_text', sa.Text(), nullable=False),
        sa.Column('settings', sa.JSON(), nullable=False),
        sa.Column('seed', sa.Integer(), nullable=False),
        sa.Column('state', sa.String(length=16), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=True),
        sa.Column('verdict', sa.String(length=16), nullable=True),
        sa.Column('winner_candidate_id', sa.Integer(), nullable=True),
        sa.Column('latency_ms', sa.Integer(), nullable=True),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('assigned_at', sa.DateTime(), nullable=True),
        sa.Column('voted_at', sa.DateTime(), nullable=True),
        sa.CheckConstraint(ARENA_VERDICT_CHECK, name=op.f('ck_arena_battles_verdict')),
        sa.CheckConstraint("(verdict = 'choice') = (winner_candidate_id IS NOT NULL)",
                           name=op.f('ck_arena_battles_choice_has_winner')),
        sa.ForeignKeyConstraint(['prompt_id'], ['prompts.id'], name=op.f('fk_arena_battles_prompt_id_prompts')),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_arena_battles_user_id_users')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_arena_battles')),
    )
    for column in ('prompt_id', 'state', 'user_id', 'voted_at'):
        op.create_index(op.f(f'ix_arena_battles_{column}'), 'arena_battles', [column], unique=False)
    op.create_table(
        'arena_candidates',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('battle_id', sa.Integer(), nullable=False),
        sa.Column('position', sa.Integer(), nullable=False),
        sa.Column('version_id', sa.Integer(), nullable=False),
        sa.Column('model_prompt', sa.Text(), nullable=False),
        sa.Column('text', sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(['battle_id'], ['arena_battles.id'], ondelete='CASCADE',
                                name=op.f('fk_arena_candidates_battle_id_arena_battles')),
        sa.ForeignKeyConstraint(['version_id'], ['model_versions.id'],
                                name=op.f('fk_arena_candidates_version_id_model_versions')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_arena_candidates')),
        sa.UniqueConstraint('battle_id', 'position', name='uq_arena_candidates_position'),
    )
    for column in ('battle_id', 'version_id'):
        op.create_index(op.f(f'ix_arena_candidates_{column}'), 'arena_candidates', [column], unique=False)
    op.create_table(
        'arena_pairs',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('low_version_id', sa.Integer(), nullable=False),
        sa.Column('high_version_id', sa.Integer(), nullable=False),
        sa.Column('created_by', sa.String(length=64), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.CheckConstraint('low_version_id < high_version_id', name=op.f('ck_arena_pairs_order')),
        sa.ForeignKeyConstraint(['low_version_id'], ['model_versions.id'],
                                name=op.f('fk_arena_pairs_low_version_id_model_versions')),
        sa.ForeignKeyConstraint(['high_version_id'], ['model_versions.id'],
                                name=op.f('fk_arena_pairs_high_version_id_model_versions')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_arena_pairs')),
        sa.UniqueConstraint('low_version_id', 'high_version_id', name='uq_arena_pairs_versions'),
    )


def downgrade():
    op.drop_table('arena_pairs')
    for column in ('battle_id', 'version_id'):
        op.drop_index(op.f(f'ix_arena_candidates_{column}'), table_name='arena_candidates')
    op.drop_table('arena_candidates')
    for column in ('prompt_id', 'state', 'user_id', 'voted_at'):
        op.drop_index(op.f(f'ix_arena_battles_{column}'), table_name='arena_battles')
    op.drop_table('arena_battles')
    # Gold comparisons have no model version and go with their items: the column becomes NOT NULL again.
    gold = "SELECT id FROM comparisons WHERE gold_item_id IS NOT NULL"
    op.execute(f"DELETE FROM preferences WHERE comparison_id IN ({gold})")
    op.execute(f"DELETE FROM candidates WHERE comparison_id IN ({gold})")
    op.execute("DELETE FROM comparisons WHERE gold_item_id IS NOT NULL")
    with sqlite_foreign_keys_off():
        with op.batch_alter_table('comparisons', schema=None) as batch_op:
            batch_op.drop_constraint('uq_comparisons_gold_user', type_='unique')
            batch_op.drop_constraint('uq_comparisons_root_user', type_='unique')
            batch_op.drop_index(batch_op.f('ix_comparisons_gold_item_id'))
            batch_op.drop_index(batch_op.f('ix_comparisons_root_id'))
            batch_op.drop_constraint(op.f('fk_comparisons_gold_item_id_gold_items'), type_='foreignkey')
            batch_op.drop_constraint(op.f('fk_comparisons_root_id_comparisons'), type_='foreignkey')
            batch_op.drop_column('gold_item_id')
            batch_op.drop_column('copies')
            batch_op.drop_column('root_id')
            batch_op.alter_column('model_version_id', existing_type=sa.Integer(), nullable=False)
    op.drop_table('gold_items')
