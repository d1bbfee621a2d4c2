"""Modelgate: a model-serving gateway for the Open Inference Protocol."""
