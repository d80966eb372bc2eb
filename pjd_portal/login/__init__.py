"""Logging in with HelseID, the front page, the organisation chooser and logging out."""
