"""Structured pruning: channel groups with their dependencies, channel scores, network slimming, L1 filter
and neuron pruning, Gibbs pruning, and scratch baselines for the pruned architecture."""

from ..sparse.groups import ChannelGroup, Slice, channel_groups, dead_channels, group_mask, output_layer

__all__ = ["ChannelGroup", "Slice", "channel_groups", "dead_channels", "group_mask", "output_layer"]
