"""Resource templates: a resource's JSON shape declared once, run by two interpreters.

A template is a tree of nodes (`K`, `Val`, `Map`, `Obj`, `Arr`, `Each`, `If`,
`IfHas`, `IfMissing`, `Seq`, `Tick`: module `nodes`). `Template.bind(tables)`
(module `plan`) flattens it into a `Plan`: an int32 op array, one blob of pre-escaped
JSON fragments, and column descriptors. The compiled core (`fhirhose._core.Writer`) and its pure-Python twin
(`fhirhose._core_py.Writer`) both execute a Plan; the shape of every resource
lives only here, in `fhirhose.fhir.*`, so the two can never drift apart.

Emission rules, shared by both interpreters:
- A member or element is preceded by "," unless the previous byte is "{" or "[".
- Missing values (empty string, NO_DATE, NO_NUM, Cat code 0) emit nothing.
- `Obj`/`Arr` groups are dropped whole (key included) when nothing *strong*
  was emitted inside them. Values are strong; constants are strong unless
  declared `weak` (a coding's "system" is decoration of its "code").
- `Seq` numbers (weak unless `strong`) and `Tick`s are rolled back with a
  dropped group.

Cross-references (item.careTeamSequence → careTeam.sequence) are kept in step
by running a second counter over the same conditions: strong `Seq`s keep the
referring array alive, `Tick`s advance a counter past entries emitted
elsewhere (e.g. header diagnoses before the line ones).
"""

from . import nodes
from .nodes import *
from .plan import Plan, Template

__all__ = [*nodes.__all__, "Template", "Plan"]
