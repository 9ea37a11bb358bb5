"""audio_codec."""
