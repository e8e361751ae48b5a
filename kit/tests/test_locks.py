import asyncio

from sidecart_kit.locks import KeyedLocks


async def test_one_key_at_a_time_and_nothing_kept_after() -> None:
    locks = KeyedLocks()
    order: list[str] = []

    async def work(key: str, name: str, pause: float) -> None:
        async with locks.hold(key):
            order.append(f"{name} in")
            await asyncio.sleep(pause)
            order.append(f"{name} out")

    await asyncio.gather(work("a", "first", 0.02), work("a", "second", 0), work("b", "other", 0))

    assert order.index("first out") < order.index("second in")
    assert order.index("other in") < order.index("first out")  # another key does not wait
    assert len(locks) == 0
