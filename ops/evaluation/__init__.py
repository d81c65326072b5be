"""`s2st eval`: the system's quality and latency on a speech set, measured end to end.

manifest.py (which clips) -> run.py (through the real stack) -> latency.py, quality.py and
score.py (the figures) -> report.py (JSON, Markdown, plot); cli.py ties them together.
"""
