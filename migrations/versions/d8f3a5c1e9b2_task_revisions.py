"""task revisions (editable question, guidelines, system prompt), comparisons.task_revision_id and shown_at,
users.pseudonym, flags, prompts.removed_at, answer_changes (issues 25 and 29, in one revision)

Revision ID: d8f3a5c1e9b2
Revises: c4a9e2d7b1f3
Create Date: 2026-12-05 14:40:00.000000

"""
import secrets
from contextlib import contextmanager
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = 'd8f3a5c1e9b2'
down_revision = 'c4a9e2d7b1f3'
branch_labels = None
depends_on = None

# Revision 1 is the text the annotation page showed before it could be edited (a copy: migrations never import the
# app, whose defaults may change later).
QUESTION = "Which rewrite is best?"
GUIDELINES = """The input is a blunt or rude message. Pick the rewrite that:

1. **is polite**: no insults, no commands barked at the reader;
2. **keeps the meaning**: same request, same object, same deadline;
3. **reads well**: fluent, no repetition, no off-topic text.

Mark **✓ also fine** on every other rewrite you would accept, then pick the best: only the ones you did not mark \
are learnt as worse. **Tie** when two or more are equally best. **All bad** when none is acceptable. **Skip** when \
you cannot judge.
"""
# Literal copies of app/tables.py FLAG_REASONS and FLAG_STATUSES as of this revision.
REASON_CHECK = "reason in ('unclear','offensive','broken','other')"
STATUS_CHECK = "status in ('open','cleared','removed')"
SYSTEM_PROMPT = ("Rewrite the user's message so that it is polite and keeps its meaning. "
                 "Answer with the rewrite only.")


@contextmanager
def sqlite_foreign_keys_off():
    """As in b7e2f4a81c3d: SQLite changes a table by rebuilding it, which foreign keys refuse (or cascade) while
    rows point at it; the check afterwards proves no reference was broken."""
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
    with sqlite_foreign_keys_off():
        change_tables()


def downgrade():
    with sqlite_foreign_keys_off():
        restore_tables()


def change_tables():
    revisions = op.create_table(
        'task_revisions',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('question', sa.Text(), nullable=False),
        sa.Column('guidelines', sa.Text(), nullable=False),
        sa.Column('system_prompt', sa.Text(), nullable=False),
        sa.Column('author', sa.String(length=64), nullable=False),
        sa.Column('restored_from', sa.Integer(), nullable=True),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    op.bulk_insert(revisions, [{
        'id': 1, 'question': QUESTION, 'guidelines': GUIDELINES, 'system_prompt': SYSTEM_PROMPT,
        'author': 'prefloop', 'restored_from': None, 'created_at': datetime.now(UTC).replace(tzinfo=None),
    }])
    if op.get_bind().dialect.name == 'postgresql':
        # The row above was given its id: move the sequence past it, or the first save would collide.
        op.execute("SELECT setval(pg_get_serial_sequence('task_revisions', 'id'), 1)")
    with op.batch_alter_table('comparisons', schema=None) as batch_op:
        batch_op.add_column(sa.Column('task_revision_id', sa.Integer(), nullable=True))
        # When it was last handed to its annotator; nullable: nobody recorded it before.
        batch_op.add_column(sa.Column('shown_at', sa.DateTime(), nullable=True))
        batch_op.create_foreign_key('fk_comparisons_task_revision_id_task_revisions', 'task_revisions',
                                    ['task_revision_id'], ['id'])
    op.add_column('prompts', sa.Column('removed_at', sa.DateTime(), nullable=True))
    create_flags()
    create_answer_changes()
    # Nullable first, filled with a random pseudonym per user, then required and unique.
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('pseudonym', sa.String(length=32), nullable=True))
    users = sa.table('users', sa.column('id', sa.Integer()), sa.column('pseudonym', sa.String()))
    bind = op.get_bind()
    for (user_id,) in bind.execute(sa.select(users.c.id)).all():
        bind.execute(users.update().where(users.c.id == user_id).values(pseudonym="a-" + secrets.token_hex(6)))
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.alter_column('pseudonym', existing_type=sa.String(length=32), nullable=False)
        batch_op.create_unique_constraint('uq_users_pseudonym', ['pseudonym'])


def create_flags():
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
    for column in ('comparison_id', 'prompt_id', 'user_id', 'status'):
        op.create_index(f'ix_flags_{column}', 'flags', [column])


def create_answer_changes():
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


def restore_tables():
    op.drop_table('answer_changes')
    op.drop_table('flags')
    with op.batch_alter_table('prompts', schema=None) as batch_op:
        batch_op.drop_column('removed_at')
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_constraint('uq_users_pseudonym', type_='unique')
        batch_op.drop_column('pseudonym')
    with op.batch_alter_table('comparisons', schema=None) as batch_op:
        batch_op.drop_constraint('fk_comparisons_task_revision_id_task_revisions', type_='foreignkey')
        batch_op.drop_column('shown_at')
        batch_op.drop_column('task_revision_id')
    op.drop_table('task_revisions')
