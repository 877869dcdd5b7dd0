"""status checks, drop model_versions.note

Revision ID: 5b1e0c9d4f2a
Revises: 74cc6de37a22
Create Date: 2026-11-30 10:00:00.000000

"""
from contextlib import contextmanager

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '5b1e0c9d4f2a'
down_revision = '74cc6de37a22'
branch_labels = None
depends_on = None

# Literal copies of app/tables.py RUN_STATUSES and VERSION_STATUSES as of this revision: a migration must not
# change when the app's tuples do later.
RUN_STATUS_CHECK = "status in ('queued','running','succeeded','rejected','failed')"
VERSION_STATUS_CHECK = "status in ('ready','rejected')"


@contextmanager
def sqlite_foreign_keys_off():
    """SQLite changes a table by rebuilding it, and with foreign keys on it refuses to drop model_versions while
    serving_state, comparisons and training_runs rows point at it. The pragma only takes effect outside a
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
    with sqlite_foreign_keys_off():
        with op.batch_alter_table('training_runs', schema=None) as batch_op:
            batch_op.create_check_constraint('ck_training_runs_status', RUN_STATUS_CHECK)

        with op.batch_alter_table('model_versions', schema=None) as batch_op:
            batch_op.create_check_constraint('ck_model_versions_status', VERSION_STATUS_CHECK)
            batch_op.drop_column('note')


def downgrade():
    with sqlite_foreign_keys_off():
        with op.batch_alter_table('model_versions', schema=None) as batch_op:
            batch_op.add_column(sa.Column('note', sa.Text(), nullable=False, server_default=''))
            batch_op.drop_constraint('ck_model_versions_status', type_='check')

        with op.batch_alter_table('training_runs', schema=None) as batch_op:
            batch_op.drop_constraint('ck_training_runs_status', type_='check')
