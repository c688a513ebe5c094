"""Inventory: the INI file of hosts and groups, read into plain data."""

from hostbatch.inventory.loader import load_inventory, locate_inventory
from hostbatch.inventory.model import Group, HostSpec, Inventory

__all__ = ["Group", "HostSpec", "Inventory", "load_inventory", "locate_inventory"]
