"""task revisions (editable question, guidelines, system prompt), comparisons.task_revision_id, users.pseudonym

Revision ID: d8f3a5c1e9b2
Revises: c4a9e2d7b1f3
Create Date: 2026-12-05 14:40:00.000000

"""
import secrets
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
SYSTEM_PROMPT = ("Rewrite the user's message so that it is polite and keeps its meaning. "
                 "Answer with the rewrite only.")


def upgrade():
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
        batch_op.create_foreign_key('fk_comparisons_task_revision_id_task_revisions', 'task_revisions',
                                    ['task_revision_id'], ['id'])
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


def downgrade():
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_constraint('uq_users_pseudonym', type_='unique')
        batch_op.drop_column('pseudonym')
    with op.batch_alter_table('comparisons', schema=None) as batch_op:
        batch_op.drop_constraint('fk_comparisons_task_revision_id_task_revisions', type_='foreignkey')
        batch_op.drop_column('task_revision_id')
    op.drop_table('task_revisions')
