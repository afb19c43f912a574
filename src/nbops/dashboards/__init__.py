"""Voila dashboards for stakeholders: monitoring and the model, as ipywidgets built from the latest
pipeline outputs. The notebooks in dashboards/ only call these functions."""
