"""The MCP tool gateway: upstream tool servers, the tool catalogue and its pins, and per-tool
decisions (policy, limits, guard, audit) on every call."""

from ironhold.mcp.gateway import ToolCall, ToolGateway

__all__ = ["ToolCall", "ToolGateway"]
