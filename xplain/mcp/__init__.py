"""xplain over the Model Context Protocol: `xplain mcp` serves the method catalog to any MCP-speaking assistant."""
