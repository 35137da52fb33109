"""Conduit delivery tool: version, pack, render, cluster, deploy and smoke commands."""
