"""One file name per QuPath project entry, shared by ``histoclick qupath export`` and the Groovy scripts.

Image names repeat within a project (``slide.svs`` and ``slide.ndpi`` share a stem, ``a/slide.tif``
and ``b/slide.tif`` share a name, a multi-series file gives one entry per series), but entry ids do
not. The rule, in Python and in ``qupath_scripts/*.groovy`` alike::

    <image name without the characters QuPath strips from file names>-<entry id>

e.g. ``slide.svs-1``, ``slide.ndpi-2``, ``CMU-1.czi - Series 1-3``. The stripped characters are
those of QuPath's ``GeneralTools.stripInvalidFilenameChars`` (the same in 0.5 and 0.6), so the
Groovy scripts call that method and tests/test_qupath_scripts.py checks both sides agree.
"""

from __future__ import annotations

import re

# QuPath's GeneralTools.stripInvalidFilenameChars: name.replaceAll("[\\\\/:\"*?<>|\\n\\r]+", "")
_INVALID_IN_FILE_NAMES = re.compile(r'[\\/:"*?<>|\n\r]+')


def entry_file_stem(image_name: str, entry_id: str | int) -> str:
    """The file stem for one project entry: its image name made file-safe, a hyphen, its entry id."""
    return f"{_INVALID_IN_FILE_NAMES.sub('', image_name)}-{entry_id}"
