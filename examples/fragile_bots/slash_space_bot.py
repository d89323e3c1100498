"""A fragile bot for the readiness suite's own tests: `examples/aiogram_bot.py` with one defect.

A message whose text starts with "/ " (a slash, then a space: "/ привет") takes the whole process
down, as an unguarded parser once did. aiogram catches exceptions raised in handlers, so the
defect exits the process itself. `genbot bench faults --bot-cmd` must catch it in `bad_input`:

  genbot bench faults --quick --bot-cmd "python3 examples/fragile_bots/slash_space_bot.py"
"""

import os
import sys

sys.dont_write_bytecode = True  # no __pycache__ beside the example
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import asyncio  # noqa: E402

import aiogram_bot  # noqa: E402


@aiogram_bot.dispatcher.message.outer_middleware()
async def dies_on_slash_space(handler, message, data):
    if (message.text or "").startswith("/ "):
        print(f"fatal: cannot parse the command in {message.text!r}", file=sys.stderr, flush=True)
        os._exit(1)
    return await handler(message, data)


if __name__ == "__main__":
    asyncio.run(aiogram_bot.main())
