"""Tiny dual-era MCP stdio server (PyPI mcp==2.3.0) used as a 2026-07-28 peer.

server-everything (TS SDK 1.x) only speaks the 2025 handshake era; this server
answers BOTH `initialize` (2024-11-05..2025-11-25) and the 2026-07-28
per-request `_meta` envelope + `server/discover`, so compare.py can be
exercised in --era 2026.

Tools mirror server-everything names where possible:
  echo, get-sum, trigger-long-running-operation (progress),
  trigger-elicitation-request (elicitation: standalone request in 2025,
  MRTR InputRequiredResult in 2026), trigger-sampling-request (sampling).
Run: venv/bin/python peer_server.py
"""

from typing import Annotated

import anyio
from mcp_types import CreateMessageResult, SamplingMessage, TextContent
from pydantic import BaseModel

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.resolve import Elicit, Resolve, Sample

mcp = MCPServer("interop-peer", version="0.1.0")


@mcp.tool(name="echo")
def echo(message: str) -> str:
    """Echoes back the input string."""
    return f"Echo: {message}"


@mcp.tool(name="get-sum")
def get_sum(a: float, b: float) -> str:
    """Returns the sum of two numbers."""
    return f"The sum of {a} and {b} is {a + b}."


@mcp.tool(name="trigger-long-running-operation")
async def long_op(ctx: Context, duration: float = 1.0, steps: int = 5) -> str:
    """Sends notifications/progress for each step."""
    for i in range(1, steps + 1):
        await anyio.sleep(duration / steps)
        await ctx.report_progress(i, steps)
    return f"Long running operation completed. Duration: {duration} seconds, Steps: {steps}."


class NameForm(BaseModel):
    name: str


def ask_name() -> Elicit[NameForm]:
    return Elicit("Please provide your name", NameForm)


@mcp.tool(name="trigger-elicitation-request")
def elicit_tool(form: Annotated[NameForm, Resolve(ask_name)]) -> str:
    """Elicits a name from the user."""
    return f"User provided: {form.name}"


def ask_llm(prompt: str) -> Sample:
    return Sample(
        [SamplingMessage(role="user", content=TextContent(type="text", text=prompt))],
        max_tokens=50,
        system_prompt="You are a helpful test server.",
    )


@mcp.tool(name="trigger-sampling-request")
def sample_tool(prompt: str, reply: Annotated[CreateMessageResult, Resolve(ask_llm)]) -> str:
    """Samples the client's LLM."""
    text = reply.content.text if isinstance(reply.content, TextContent) else repr(reply.content)
    return f"LLM said: {text}"


if __name__ == "__main__":
    mcp.run("stdio")
