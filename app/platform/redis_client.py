"""The web's Redis connection: one client per process, None when no Redis is configured."""

from __future__ import annotations

from flask import current_app

ACTIVE_CHANNEL = "prefloop:active-version"


def get_redis():
    """Return a redis client for REDIS_URL, or None if Redis is not configured."""
    url = current_app.config.get("REDIS_URL")
    if not url:
        return None
    client = current_app.extensions.get("prefloop_redis")
    if client is None:
        import redis

        # Short timeouts: a dead Redis must produce a quick 503, not a hung request.
        client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=3)
        current_app.extensions["prefloop_redis"] = client
    return client


def publish_active(version_id: int | None) -> bool:
    """Tell every web process the active version changed; False if Redis is unavailable."""
    import redis

    client = get_redis()
    if client is None:
        return False
    try:
        client.publish(ACTIVE_CHANNEL, str(version_id or ""))
        return True
    except redis.RedisError:
        # The processes' periodic database check picks the change up anyway.
        current_app.logger.warning("could not publish the active version change; relying on polling")
        return False
