"""each registry keeps the characters seen at each position of its records' confusable keys, by key
length, so lookups skip probe keys that fit no record; filled in here from the stored records

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30 16:15:00
"""
import json

import sqlalchemy as sa

from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('registry', sa.Column('key_shape', sa.Text(), nullable=True))
    connection = op.get_bind()
    # Every (registry, length, position, character) present, from the stored keys (positions up to
    # the longest key, 64).
    triples = connection.execute(
        sa.text(
            """
            WITH RECURSIVE pos(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM pos WHERE i < 64)
            SELECT DISTINCT record.registry_id, record.key_length, pos.i,
                substr(record.confusable_key, pos.i, 1)
            FROM registry_record AS record JOIN pos ON pos.i <= record.key_length
            """
        )
    )
    shapes: dict[str, dict[int, list[set[str]]]] = {}
    for registry_id, length, position, char in triples:
        columns = shapes.setdefault(str(registry_id), {}).setdefault(length, [set() for _ in range(length)])
        columns[position - 1].add(char)
    registries = connection.execute(sa.text('SELECT id FROM registry')).scalars().all()
    for registry_id in registries:
        shape = shapes.get(str(registry_id), {})
        text = json.dumps(
            {str(n): [''.join(sorted(column)) for column in columns] for n, columns in sorted(shape.items())},
            ensure_ascii=False,
            separators=(',', ':'),
        )
        connection.execute(
            sa.text('UPDATE registry SET key_shape = :shape WHERE id = :id'),
            {'shape': text, 'id': registry_id},
        )


def downgrade() -> None:
    op.drop_column('registry', 'key_shape')  # SQLite 3.35 and later drop a column in place
