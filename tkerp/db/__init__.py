"""Database plumbing of the house framework (the embedded PostgreSQL backend)."""
