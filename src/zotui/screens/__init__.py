"""Screens of the app, one module each: setup, fetch, dashboard, runs (+ compare), export, help."""
