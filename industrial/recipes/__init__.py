"""Recipes: what a model family wires together (item side, user side, objectives)."""
