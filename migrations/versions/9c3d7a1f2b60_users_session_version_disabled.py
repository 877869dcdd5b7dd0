"""users: session_version and disabled

Revision ID: 9c3d7a1f2b60
Revises: 5b1e0c9d4f2a
Create Date: 2026-12-01 20:00:00.000000

"""
from contextlib import contextmanager

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '9c3d7a1f2b60'
down_revision = '5b1e0c9d4f2a'
branch_labels = None
depends_on = None


@contextmanager
def sqlite_foreign_keys_off():
    """SQLite drops a column by rebuilding the table, and with foreign keys on it refuses to drop users while
    comparisons and preferences point at it (as in 5b1e0c9d4f2a); the check afterwards proves nothing broke."""
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
    # Existing users start at version 1 and enabled; their sessions from before (a bare id) end: log in again.
    with sqlite_foreign_keys_off():
        with op.batch_alter_table('users', schema=None) as batch_op:
            batch_op.add_column(sa.Column('session_version', sa.Integer(), nullable=False, server_default='1'))
            batch_op.add_column(sa.Column('disabled', sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade():
    with sqlite_foreign_keys_off():
        with op.batch_alter_table('users', schema=None) as batch_op:
            batch_op.drop_column('disabled')
            batch_op.drop_column('session_version')
