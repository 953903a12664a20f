"""Durable records on disk: per-job result files and step logs, and the run summary.

Results are written atomically (temp file, fsync, rename, fsync of the directory); step logs
are append-only JSONL, flushed per record. Directories are created 0700 and files 0600: step
logs hold command output and model text that may be private.
"""
