"""The math's named choices and defaults, torch-free so that the configs (and ``finelip --help``) can
name them without importing torch."""

STRETCH_MODES = ("kps", "linear", "none", "scratch")  # text position stretching (positional.py)
DEFAULT_CHUNK_BYTES = 256 * 2**20  # CLIM's similarity chunks (clim.py): the memory budget of one chunk
