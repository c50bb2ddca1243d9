"""The team server: machines pair with it and push ledger metadata; it keeps one team ledger in
PostgreSQL and serves team rollups. Optional (`pip install '.[server]'` in a checkout): nothing
here is imported by the local meter, which works with no server at all.
"""
