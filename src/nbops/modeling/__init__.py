"""Model development: training and evaluation."""
