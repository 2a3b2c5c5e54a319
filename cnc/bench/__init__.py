"""Benchmark commands: figures printed side by side, never timed tests."""
