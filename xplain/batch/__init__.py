"""Running a method over many rows: the row-method registry, the bounded concurrent runner, data sources, reports.

Both `xplain batch` (a JSONL file as the durable record) and the server's jobs (a database) use this engine.
"""
