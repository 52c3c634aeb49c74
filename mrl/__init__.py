"""mrl: material representation learning for formulations.

One vector per raw material; a mixture is the content-weighted sum of its materials' vectors; one fixed regressor
predicts the mixture's property from it (plus measurement conditions).
"""
__version__ = "0.1.0"
