"""Maintainer-facing converters; installed as ``r21d_zoo.conversion`` so the on-the-fly loader uses the same code."""
