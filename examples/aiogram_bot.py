"""A small aiogram 3 image bot: the example `genbot bench --bot-cmd` measures as a black box.

It answers /start, /models and /balance, echoes a photo's caption, sells credits for Telegram
Stars (/buy → a package button → an invoice → pre-checkout → a receipt), and turns any other text
into an image through Replicate's HTTP API (create a prediction, poll it, send the output URL).
It reads the same variables as genbot, so the suite's default scenario and limits fit it:

  TELEGRAM_BOT_TOKEN, TELEGRAM_API_URL (default https://api.telegram.org),
  REPLICATE_API_TOKEN, REPLICATE_API_URL (default https://api.replicate.com),
  MAX_CONCURRENT_GENERATIONS (80), MAX_CONCURRENT_GENERATIONS_PER_USER (2),
  REPLICATE_RATE_LIMIT (600 creations a minute), REPLICATE_MODEL (black-forest-labs/flux-schnell).

Run it against the suite's mocks:  genbot bench all --quick --bot-cmd "python3 examples/aiogram_bot.py"
"""

import asyncio
import logging
import os
import sys
from collections import defaultdict

import aiohttp
from aiogram import Bot, Dispatcher, F
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.session.middlewares.base import BaseRequestMiddleware
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import TelegramRetryAfter
from aiogram.filters import Command
from aiogram.types import (
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    LabeledPrice,
    Message,
    PreCheckoutQuery,
)


def setting(name: str, default: str) -> str:
    return os.environ.get(name, default).strip() or default


def positive(name: str, default: int) -> int:
    text = setting(name, str(default))
    try:
        value = int(text)
    except ValueError:
        sys.exit(f"{name}={text!r} is not a whole number (give e.g. {default})")
    if value < 1:
        sys.exit(f"{name}={value} must be at least 1")
    return value


TOKEN = os.environ.get("TELEGRAM_BOT_TOKEN", "")
if not TOKEN:
    sys.exit("TELEGRAM_BOT_TOKEN is not set")
TELEGRAM_API_URL = setting("TELEGRAM_API_URL", "https://api.telegram.org").rstrip("/")
REPLICATE_API_URL = setting("REPLICATE_API_URL", "https://api.replicate.com").rstrip("/")
REPLICATE_TOKEN = os.environ.get("REPLICATE_API_TOKEN", "")
MODEL = setting("REPLICATE_MODEL", "black-forest-labs/flux-schnell")
MAX_CONCURRENT = positive("MAX_CONCURRENT_GENERATIONS", 80)
PER_USER = positive("MAX_CONCURRENT_GENERATIONS_PER_USER", 2)
RATE_PER_MIN = positive("REPLICATE_RATE_LIMIT", 600)


class Pacer:
    """Spaces prediction creations at least 60/RATE_PER_MIN seconds apart."""

    def __init__(self, per_minute: int) -> None:
        self.interval = 60.0 / per_minute
        self.next_at = 0.0
        self.lock = asyncio.Lock()

    async def wait(self) -> None:
        async with self.lock:
            loop = asyncio.get_running_loop()
            now = loop.time()
            if self.next_at > now:
                await asyncio.sleep(self.next_at - now)
            self.next_at = max(now, self.next_at) + self.interval


# Credits → price in Telegram Stars.
PACKAGES = {10: 50, 60: 250}
PAYLOAD_PREFIX = "credits:"

slots = asyncio.Semaphore(MAX_CONCURRENT)
user_slots: dict = defaultdict(lambda: asyncio.Semaphore(PER_USER))
pacer = Pacer(RATE_PER_MIN)
dispatcher = Dispatcher()
http: aiohttp.ClientSession | None = None


async def generate(prompt: str) -> str:
    """Creates a prediction, polls it to the end, returns the first output URL."""
    assert http is not None
    headers = {"Authorization": f"Bearer {REPLICATE_TOKEN}"}
    await pacer.wait()
    async with http.post(
        f"{REPLICATE_API_URL}/v1/models/{MODEL}/predictions",
        json={"input": {"prompt": prompt}},
        headers=headers,
    ) as response:
        if response.status >= 300:
            raise RuntimeError(f"Replicate answered {response.status}")
        prediction = await response.json()
    delay = 0.05
    while prediction.get("status") not in ("succeeded", "failed", "canceled"):
        await asyncio.sleep(delay)
        delay = min(delay * 1.5, 0.5)
        async with http.get(
            f"{REPLICATE_API_URL}/v1/predictions/{prediction['id']}", headers=headers
        ) as response:
            prediction = await response.json()
    if prediction["status"] != "succeeded":
        raise RuntimeError(prediction.get("error") or prediction["status"])
    output = prediction["output"]
    return output[0] if isinstance(output, list) else output


@dispatcher.message(Command("start"))
async def start(message: Message) -> None:
    await message.answer("Hello! Send me a prompt and I will draw it.")


@dispatcher.message(Command("models"))
async def models(message: Message) -> None:
    await message.answer(f"Model: {MODEL}")


@dispatcher.message(Command("balance"))
async def balance(message: Message) -> None:
    await message.answer("This example bot does not count credits.")


@dispatcher.message(Command("buy"))
async def buy(message: Message) -> None:
    keyboard = InlineKeyboardMarkup(
        inline_keyboard=[
            [InlineKeyboardButton(text=f"{credits} credits · {stars} ⭐", callback_data=f"buy:{credits}")]
            for credits, stars in PACKAGES.items()
        ]
    )
    await message.answer("Buy credits with Telegram Stars. Choose a package:", reply_markup=keyboard)


@dispatcher.callback_query(F.data.startswith("buy:"))
async def package(query: CallbackQuery) -> None:
    credits = int(query.data.removeprefix("buy:") or 0)
    stars = PACKAGES.get(credits)
    if stars is None or query.message is None:
        await query.answer("This package is no longer offered")
        return
    await query.message.answer_invoice(
        title=f"{credits} credits",
        description=f"{credits} credits for image generation",
        payload=f"{PAYLOAD_PREFIX}{credits}",
        currency="XTR",
        prices=[LabeledPrice(label=f"{credits} credits", amount=stars)],
        provider_token="",  # empty for Telegram Stars
    )
    await query.answer()


def package_of(payload: str, currency: str, amount: int) -> int | None:
    """The credits an invoice sells, if it is still offered at the price paid."""
    if currency != "XTR" or not payload.startswith(PAYLOAD_PREFIX):
        return None
    text = payload.removeprefix(PAYLOAD_PREFIX)
    credits = int(text) if text.isdigit() else 0
    return credits if PACKAGES.get(credits) == amount else None


@dispatcher.pre_checkout_query()
async def checkout(query: PreCheckoutQuery) -> None:
    # Telegram cancels the payment unless this is answered within 10 seconds.
    if package_of(query.invoice_payload, query.currency, query.total_amount) is None:
        await query.answer(ok=False, error_message="This package is no longer offered")
    else:
        await query.answer(ok=True)


@dispatcher.message(F.successful_payment)
async def paid(message: Message) -> None:
    payment = message.successful_payment
    credits = package_of(payment.invoice_payload, payment.currency, payment.total_amount) or 0
    # An example: a real bot records telegram_payment_charge_id once, with the credits.
    await message.answer(
        f"Thank you! +{credits} credits.\nPayment id: {payment.telegram_payment_charge_id}"
    )


@dispatcher.message(F.photo)
async def photo(message: Message) -> None:
    await message.answer(f"Nice photo: {message.caption or '(no caption)'}")


@dispatcher.message(F.text)
async def prompt(message: Message) -> None:
    async with user_slots[message.from_user.id], slots:
        try:
            url = await generate(message.text)
        except Exception as error:  # a failed generation is told, not raised
            await message.answer(f"Sorry, that failed: {error}")
            return
    await message.answer_photo(url, caption=message.text[:200])


class WaitOutFloodControl(BaseRequestMiddleware):
    """Telegram answers 429 with retry_after when a bot sends too fast (about 30 a second, one
    a second per chat after a short burst); aiogram raises it. Wait and send again, a few
    times, instead of losing the answer."""

    async def __call__(self, make_request, bot, method):
        for _ in range(4):
            try:
                return await make_request(bot, method)
            except TelegramRetryAfter as refused:
                await asyncio.sleep(refused.retry_after)
        return await make_request(bot, method)


async def main() -> None:
    global http
    logging.basicConfig(level=logging.WARNING)
    session = AiohttpSession(api=TelegramAPIServer.from_base(TELEGRAM_API_URL))
    session.middleware(WaitOutFloodControl())
    bot = Bot(TOKEN, session=session)
    http = aiohttp.ClientSession()
    try:
        await dispatcher.start_polling(bot, handle_signals=True)
    finally:
        await http.close()
        await bot.session.close()


if __name__ == "__main__":
    asyncio.run(main())
