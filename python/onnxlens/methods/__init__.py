"""Algorithms over model sessions: one module per method family."""
