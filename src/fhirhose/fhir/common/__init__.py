"""The mapping's shared vocabulary: systems, profiles and template pieces every resource uses.

Codes follow BFD's v2 output (Blue Button variables,
``https://bluebutton.cms.gov/resources/variables/<var>``) and, where v2 and
CARIN Blue Button 2.x disagree, the newer idr-out samples (C4BB 2.2.0).

Every helper returns template nodes (see `fhirhose.template`); a helper whose
name is plural or that documents "members" returns a tuple to splat into the
enclosing `Obj`/`Template`. Column arguments are column names of the table the
node is evaluated in (or "table.col" for an enclosing table).

Sequence counters: a resource has `MAX_COUNTERS` of them; these names keep
the families from colliding (`Seq(..., counter=SEQ_CARE_TEAM)`).

The pieces live in modules named for what they build; this package is the one name
templates import them by (`from . import common as c`):
- `systems`: profiles, code systems, naming systems, sequence counters (strings only);
- `datatypes`: Coding, CodeableConcept, extensions, Period, Money;
- `header`: meta and tags, status, identifiers, references, insurer, EOB type;
- `amounts`: adjudications, totals and payment, by C4BB category;
- `clinical`: supportingInfo, diagnoses, procedures, care team.
"""

from . import amounts, clinical, datatypes, header, systems
from .amounts import *
from .clinical import *
from .datatypes import *
from .header import *
from .systems import *

__all__ = [*systems.__all__, *datatypes.__all__, *header.__all__, *amounts.__all__, *clinical.__all__]
