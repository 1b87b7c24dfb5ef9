"""Feature routers of the Telegram front end, composed by :func:`bot.telegram.app.build_dispatcher`."""
