"""The study's machinery, out of the tutorial's reading path.

The model scripts (vae.py, gan.py, ddpm.py) never import this package: they call data.py, oracles.py and
ztest.py, which call it. Import order (no cycles): runs, morpho <- data <- robustness <- oracles <- the
other study modules <- ztest <- the model scripts. Nothing in study/ imports ztest or a model script.
"""
