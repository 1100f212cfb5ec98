"""Recipes: typed schemas, YAML loading with overrides, and the shipped recipe files."""
