"""Datasets: synthetic H&E data (``histoclick.datasets.synthetic``) and readers for real ones.

Import the submodule you need; this package imports nothing eagerly.
"""
