"""dlscaler predictors."""
