"""Tools for people built on the pipeline: compare, search, draw, timm's model names."""
