"""Attention patterns: named predicates with exact counting methods."""
from .agent import Agent
from .base import AxisLayout, Flag, Pattern
from .library import Causal, Dense, Halo, Neighborhood, Sliding, SlidingTile, Swin
from .graph import Graph
from .hyper import Hyper
from .linear import Linear
from .mla import MLA
from .power import Power
from .sinks import Sinks
from .moba import MoBA

#: CLI name -> class. Patterns added here appear in ``attnsim predict --pattern``; a pattern
#: declaring ``flags``/``from_flags`` (and ``cli_flags`` for new flags) needs nothing else.
REGISTRY: dict[str, type[Pattern]] = {
    cls.name: cls for cls in (
        Dense, Causal, Sliding, Neighborhood, SlidingTile, MLA, MoBA, Linear, Graph, Agent, Swin, Halo, Sinks,
        Power, Hyper,
    )
}

__all__ = ["AxisLayout", "Flag", "Pattern", "Dense", "Causal", "Sliding", "Neighborhood", "MLA", "MoBA", "Linear", "Graph", "SlidingTile", "Agent", "Swin", "Halo", "Sinks", "Power", "Hyper", "REGISTRY"]
