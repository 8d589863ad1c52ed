"""Validated data models of the input files (spec §1–2)."""

from .book import Account, Book, Position, Venue
from .rules import Bracket, CollateralRule, Contract, HaircutTier, Rules

__all__ = ["Account", "Book", "Bracket", "CollateralRule", "Contract", "HaircutTier", "Position", "Rules", "Venue"]
