"""The shape pass: a validated blueprint -> per-block contexts (widths, strides, grids, tokens)."""
