"""Automation: export to Airflow, cron schedules and continuous training (nbops export/schedule/retrain)."""
