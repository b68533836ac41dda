"""The `digits` command, the top layer over core/, batch/, trainer/ and exporter/.

Installed, those are subpackages here (digits.core, ...: pyproject's package-dir), so no
top-level `core` lands in site-packages; in a clone they stay folders beside this one, and
this package's path reaches them there. The command's start-up is in cli.main.
"""

import os

_here = os.path.dirname(os.path.abspath(__file__))
if not os.path.isdir(os.path.join(_here, "core")):  # a clone: core/, batch/, ... sit beside digits/
    __path__.append(os.path.dirname(_here))
