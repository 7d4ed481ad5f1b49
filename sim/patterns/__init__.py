"""Attention patterns: named predicates with exact counting methods."""
from .agent import Agent
from .base import AxisLayout, Flag, Pattern
from .blocktopk import BlockTopK
from .library import Causal, Dense, Halo, Neighborhood, Sliding, SlidingTile, Swin
from .graph import Graph
from .hyper import Hyper
from .descriptor import Descriptor
from .linear import Linear
from .lla import LocalLinear
from .longvq import LongVQ
from .lowrank import LowRank
from .mla import MLA
from .power import Power
from .sinks import Sinks
from .moba import MoBA
from .combiner import Combiner
from .moa import MoA
from .routing import Routing
from .superlinear import Superlinear
from .heads import MoH, SQA
from .cca import CCA
from .select import DMA, TCA, HiP, Sparsifiner
from .layermix import LayerMix

#: CLI name -> class. Patterns added here appear in ``attnsim predict --pattern``; a pattern
#: declaring ``flags``/``from_flags`` (and ``cli_flags`` for new flags) needs nothing else.
REGISTRY: dict[str, type[Pattern]] = {
    cls.name: cls for cls in (
        Dense, Causal, Sliding, Neighborhood, SlidingTile, MLA, MoBA, Linear, Graph, Agent, Swin, Halo, Sinks,
        Power, Hyper, LowRank, Descriptor, LocalLinear, LongVQ, Routing, Superlinear, Combiner, MoA,
        SQA, MoH, CCA, HiP, Sparsifiner, DMA, TCA, LayerMix, BlockTopK,
    )
}

__all__ = ["AxisLayout", "Flag", "Pattern", "Dense", "Causal", "Sliding", "Neighborhood", "MLA", "MoBA", "Linear", "Graph", "SlidingTile", "Agent", "Swin", "Halo", "Sinks", "Power", "Hyper", "LowRank", "Descriptor", "LocalLinear", "LongVQ", "Routing", "Superlinear", "Combiner", "MoA", "SQA", "MoH", "CCA", "HiP", "Sparsifiner", "DMA", "TCA", "LayerMix", "BlockTopK", "REGISTRY"]
