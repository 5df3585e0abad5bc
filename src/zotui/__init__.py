"""zotui: the Textual terminal app for zoengine (configure, watch live, control, compare, export).

    zotui                      # Setup screen on the offline default
    zotui --config run.toml    # Setup pre-filled from a TOML file
    zotui --run RUN_DIR        # open a past run (replay its curves)
    zotui --demo               # the real engine on a tiny model built on the spot (no download)

All training logic lives in ``zoengine``; this package only displays and controls it.
"""

from zoengine import __version__  # one distribution, one version string

__all__ = ["__version__"]
