"""Conversations rebuilt from packets: the flow table, Zeek's vocabulary, payload sniffing."""

from analyzer.flows.table import FlowTable, build_conversation

__all__ = ["FlowTable", "build_conversation"]
