"""A real MCP client (the official Python SDK) for the proxy tests.

    python3 client.py [--tool NAME] [--duration S] [--steps N] -- CMD [ARGS...]

Starts CMD as a stdio MCP server, initializes, lists the tools, calls `echo`, then calls the long
running tool twice: once with a progress callback (so the SDK sends a progressToken) and once without
(first with `--without-first`; the screenshot script uses that).
Prints one JSON object on stdout: what the client got back (tool names, call results, the progress it
received and every notification the session surfaced). The tests compare these reports with and
without the proxy in between.
"""

import argparse
import json
import sys

import anyio
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client


async def run(options, command):
    report = {"notifications": [], "progress": []}

    async def on_message(message):
        if isinstance(message, Exception):
            report["notifications"].append({"exception": repr(message)})
        else:
            report["notifications"].append(message.model_dump(mode="json", by_alias=True, exclude_none=True))

    async def on_progress(progress, total, message):
        report["progress"].append([progress, total, message])

    params = StdioServerParameters(command=command[0], args=command[1:])
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write, message_handler=on_message) as session:
            init = await session.initialize()
            report["server"] = init.server_info.name
            tools = await session.list_tools()
            report["tools"] = sorted(tool.name for tool in tools.tools)
            echo = await session.call_tool("echo", {"message": "hello through the proxy"})
            report["echo"] = echo.model_dump(mode="json", by_alias=True, exclude_none=True)
            arguments = {"duration": options.duration, "steps": options.steps}

            async def with_token():
                result = await session.call_tool(options.tool, arguments, progress_callback=on_progress)
                report["with_token"] = result.model_dump(mode="json", by_alias=True, exclude_none=True)

            async def without_token():
                result = await session.call_tool(options.tool, arguments)
                report["without_token"] = result.model_dump(mode="json", by_alias=True, exclude_none=True)

            for call in [without_token, with_token] if options.without_first else [with_token, without_token]:
                await call()
    print(json.dumps(report, sort_keys=True))


def main():
    argv = sys.argv[1:]
    if "--" not in argv:
        sys.exit("usage: client.py [options] -- CMD [ARGS...]")
    split = argv.index("--")
    parser = argparse.ArgumentParser()
    parser.add_argument("--tool", default="trigger-long-running-operation")
    parser.add_argument("--duration", type=float, default=1.0)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--without-first", action="store_true", help="make the call without a token first")
    options = parser.parse_args(argv[:split])
    anyio.run(run, options, argv[split + 1 :])


if __name__ == "__main__":
    main()
