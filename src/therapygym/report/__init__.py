"""Reports, exports and the viewer."""
