"""Django's Redis cache, with one Redis client per connection pool.

Django's `RedisCacheClient` builds a new `redis.Redis` on every call, which costs more than
the round trip itself; the delivery workers touch their marks several times per drain.
"""

from typing import Any

from django.core.cache.backends import redis as django_redis


class _PooledClient(django_redis.RedisCacheClient):
    def get_client(self, key: Any = None, *, write: bool = False) -> Any:
        pool = self._get_connection_pool(write)
        clients: dict[int, Any] = self.__dict__.setdefault("_clients", {})
        client = clients.get(id(pool))
        if client is None:
            client = clients[id(pool)] = self._client(connection_pool=pool)
        return client


class RedisCache(django_redis.RedisCache):
    def __init__(self, server: str, params: dict[str, Any]) -> None:
        super().__init__(server, params)
        self._class = _PooledClient

    def redis_client(self) -> Any:
        """The client under the cache, for what the cache API cannot say (lists, scripts)."""
        return self._cache.get_client(write=True)
