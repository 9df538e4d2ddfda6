"""All SQL of the coordinator, one module per aggregate.

``database`` owns the pool and translates asyncpg's errors; ``migrations`` applies the
numbered files in ``coordinator/migrations``; ``workflows`` and ``steps`` hold the
statements about each table; ``rows`` turns rows into records.
"""
