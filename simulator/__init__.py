"""dlscaler simulator."""
