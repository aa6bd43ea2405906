"""One sub-package per architecture family (configuration, modeling, processing, conversion)."""
