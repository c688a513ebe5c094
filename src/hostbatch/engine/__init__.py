"""The engine: plan jobs, run them in worker processes, and fold the events they send back."""
