"""one-edit and partial lookups enumerate the reading's neighbours: only records whose key holds
characters outside the key alphabet keep stored deletion keys; on PostgreSQL a hash index on the
confusable key serves the hundreds of equality probes of such a lookup

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30 12:50:00
"""
from alembic import op


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

# tracing.markings.keys.KEY_ALPHABET when this revision was written.
KEY_ALPHABET = '0123456789ACDEFHJKMNPQRTUVWXY'
MIN_FUZZY_LENGTH = 4


def _enumerable(column: str) -> str:
    if op.get_bind().dialect.name == 'postgresql':
        return f"{column} ~ '^[{KEY_ALPHABET}]*$'"
    return f"{column} NOT GLOB '*[^{KEY_ALPHABET}]*'"


def upgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        op.create_index(
            'ix_registry_record_confusable_hash',
            'registry_record',
            ['confusable_key'],
            unique=False,
            postgresql_using='hash',
        )
    op.execute(
        f"""
        DELETE FROM registry_record_key
        WHERE EXISTS (
            SELECT 1 FROM registry_record AS record
            WHERE record.registry_id = registry_record_key.registry_id
              AND record.record_no = registry_record_key.record_no
              AND {_enumerable('record.confusable_key')}
        )
        """
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        op.drop_index('ix_registry_record_confusable_hash', table_name='registry_record')
    op.execute(
        f"""
        WITH RECURSIVE pos(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM pos WHERE i < 64)
        INSERT INTO registry_record_key (registry_id, deletion, record_no)
        SELECT DISTINCT record.registry_id,
            substr(record.confusable_key, 1, pos.i - 1) || substr(record.confusable_key, pos.i + 1),
            record.record_no
        FROM registry_record AS record JOIN pos ON pos.i <= record.key_length
        WHERE record.key_length >= {MIN_FUZZY_LENGTH} AND {_enumerable('record.confusable_key')}
        """
    )
