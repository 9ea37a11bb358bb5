"""Tests of av_model.data."""
