"""TIQA: self-supervised image quality assessment for X-ray tomography, in JAX."""
