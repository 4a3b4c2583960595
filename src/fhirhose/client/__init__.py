"""The bulk client (`fhirhose pull`): a resumable FHIR Bulk Data Access client.

    from fhirhose.client import BulkClient, SecretAuth

    async with BulkClient("https://host/api/v2", auth=SecretAuth(client_id, secret)) as c:
        result = await c.export("group", "all", out_dir="export", types=["ExplanationOfBenefit"])
"""

from .auth import JwkAuth, SecretAuth
from .client import LEVELS, BulkClient, PullResult
from .progress import Progress, TqdmProgress
from .state import FileState, PullState, SinceState

__all__ = ["BulkClient", "PullResult", "LEVELS", "SecretAuth", "JwkAuth", "Progress", "TqdmProgress",
           "FileState", "PullState", "SinceState"]
