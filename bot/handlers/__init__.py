"""Telegram update handlers, one small job each (registered in `bot.app`)."""
