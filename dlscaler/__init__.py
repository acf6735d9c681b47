"""dlscaler: a cloud-agnostic autoscaler for deep-learning GPU clusters."""

__version__ = "0.1.0"
