"""Synthetic Medicare data: a deterministic, vectorized data source for stores."""

from .dataset import (
    AS_OF, CHUNK, FFS_RATES, PRESETS, RATES, Preset, SynthData, SynthOrg,
    chunks, generate, organizations, write, write_orgs,
)

__all__ = [
    "SynthOrg", "SynthData", "Preset", "PRESETS", "AS_OF", "CHUNK", "RATES", "FFS_RATES",
    "generate", "organizations", "chunks", "write", "write_orgs",
]
