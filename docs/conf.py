"""Sphinx configuration for the syncserver documentation."""

project = "syncserver"
author = "syncserver developers"
extensions = []
exclude_patterns = ["_build", "examples"]
html_theme = "alabaster"
