"""dlscaler providers."""
