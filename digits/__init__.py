"""The `digits` command over core/, batch/, trainer/ and exporter/. Installed, those are subpackages
here (pyproject's package-dir), so no top-level `core` lands in site-packages; in a clone they are
folders beside this one, which this package's path reaches. The start-up is in cli.main.
"""

import os

_here = os.path.dirname(os.path.abspath(__file__))
if not os.path.isdir(os.path.join(_here, "core")):  # a clone: core/, batch/, ... sit beside digits/
    __path__.append(os.path.dirname(_here))
