"""Physical backups restored into scratch and recovered: one generic driver, one source per tool.

``PhysicalRestore`` (recovery.py) is the entry point; it picks the store's source by kind
(``SOURCES``): basebackup.py today. The seam is drills/physical/source.py.
"""

from .basebackup import list_base_backups
from .recovery import SOURCES, PhysicalRestore, PhysicalResult, is_physical, restore_script, source_for
from .source import Chosen, Source, WalCopy
from .tars import extract_tar

__all__ = ["SOURCES", "Chosen", "PhysicalRestore", "PhysicalResult", "Source", "WalCopy", "extract_tar",
           "is_physical", "list_base_backups", "restore_script", "source_for"]
