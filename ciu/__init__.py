"""CIU Twin: a geospatial digital twin of a city as a hierarchy of City Information Units."""

from ciu.domain import Variable
from ciu.errors import CiuError
from ciu.twin import Twin, Unit

__all__ = ["CiuError", "Twin", "Unit", "Variable"]
__version__ = "0.1.0"
