"""dlscaler controller."""
