"""A worked example of a custom fst-agent tool environment: SQL over an SQLite database in the sandbox."""

from fst_env_sql.env import SqlConfig, SqlEnvironment

__all__ = ["SqlConfig", "SqlEnvironment"]
