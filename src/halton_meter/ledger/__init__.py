"""The SQLite ledger: schema and migrations, the batching writer, and read queries."""
