"""event feed without a lock shared by writers: an event gets its feed position from the first
feed reader that sees it committed, instead of from a per-agency counter every writer had to lock

Revision ID: 0006
Revises: 0003
Create Date: 2026-11-30 09:50:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('event', schema=None) as batch_op:
        batch_op.alter_column('seq', existing_type=sa.Integer(), nullable=True)
        batch_op.create_index(
            'ix_event_unplaced',
            ['agency', 'number'],
            unique=False,
            postgresql_where=sa.text('seq IS NULL'),
            sqlite_where=sa.text('seq IS NULL'),
        )


def downgrade() -> None:
    # Place the events no reader has placed yet after each agency's others, in insertion order.
    op.execute(
        "UPDATE event SET seq = placed.seq FROM ("
        " SELECT e.number, COALESCE((SELECT h.seq FROM event_feed_head h WHERE h.agency = e.agency), 0)"
        "  + row_number() OVER (PARTITION BY e.agency ORDER BY e.number) AS seq"
        " FROM event e WHERE e.seq IS NULL) AS placed"
        " WHERE event.number = placed.number"
    )
    op.execute(
        "UPDATE event_feed_head SET seq = (SELECT max(e.seq) FROM event e WHERE e.agency = event_feed_head.agency)"
    )
    op.execute(
        "INSERT INTO event_feed_head (agency, seq) SELECT agency, max(seq) FROM event"
        " WHERE agency NOT IN (SELECT agency FROM event_feed_head) GROUP BY agency"
    )
    with op.batch_alter_table('event', schema=None) as batch_op:
        batch_op.drop_index('ix_event_unplaced')
        batch_op.alter_column('seq', existing_type=sa.Integer(), nullable=False)
