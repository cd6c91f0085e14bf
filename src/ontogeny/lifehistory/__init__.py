"""lifehistory."""
