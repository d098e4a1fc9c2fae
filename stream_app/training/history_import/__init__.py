"""History files as users have them, for `stream-app train --data FILE [--outcomes FILE]`:
CSV and Parquet tables (tables.py) read in each stream's column layout (layouts.py), under the
user's own column names (`--map`, column_map.py), rows without an event id given one from their
content (event_ids.py). stream_app.training.data validates the rows and counts the bad ones."""
