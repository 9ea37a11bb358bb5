"""av_model."""
