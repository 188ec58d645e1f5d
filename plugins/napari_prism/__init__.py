"""napari_prism: the napari plugin of prism-science, a thin Qt layer over ``prism_science``."""

__version__ = "0.1.0"
